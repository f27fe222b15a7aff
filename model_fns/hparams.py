"""Hyperparameters as frozen dataclasses: overrides from text or JSON, checked by field type.

Every model declares its hyperparameters as a frozen dataclass whose field defaults are the
documented defaults (see model_fns/registry.py). This module turns user input into instances:

  * `override(hp, "hidden_units=[256,128],dropout=0.2")`: the `--hparams` syntax;
  * `override(hp, {"dropout": 0.2})` and `from_json_dict(cls, d)`: config files;
  * `to_json_dict(hp)`: the resolved values, written beside the checkpoints.

Values are converted by the field's annotated type: int, float, bool, str, Tuple[X, ...] of
those (Sequence[X] and List[X] too, stored as tuples), and Optional[X] ("none" for None). A wrong key or value raises `HParamsError` naming the
key, the value and the expected type, and listing the valid keys; a mistyped key also gets
the nearest valid ones ("did you mean 'dropout'?").
"""

import collections.abc
import dataclasses
import typing
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

from input_fns import errors

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


class HParamsError(errors.UserInputError):
  """A hyperparameter override names an unknown key or carries a value of the wrong type."""


def _owner(cls) -> str:
  """A short name for messages: the model module's name (model_fns.dnn -> dnn)."""
  return cls.__module__.rsplit(".", 1)[-1]


def _check_class(cls) -> None:
  if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
    raise TypeError(f"{cls!r} is not a dataclass type")


def field_types(cls) -> Dict[str, Any]:
  """Field name -> resolved type annotation, in declaration order."""
  _check_class(cls)
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _optional_inner(tp):
  """X for Optional[X], else None."""
  if typing.get_origin(tp) is Union:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(tp)) == 2:
      return args[0]
  return None


def _tuple_elem(tp):
  """X for Tuple[X, ...] (and Sequence[X], List[X], which are read as tuples), else None."""
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
    return args[0]
  if origin in (list, collections.abc.Sequence) and len(args) == 1:
    return args[0]
  return None


def type_name(tp) -> str:
  """A readable name for an annotation: "int", "tuple of int like [1,2]", "float or none"."""
  inner = _optional_inner(tp)
  if inner is not None:
    return f"{type_name(inner)} or none"
  elem = _tuple_elem(tp)
  if elem is not None:
    return f"tuple of {type_name(elem)} like [1,2]" if elem in (int, float) else (
        f"tuple of {type_name(elem)} like [a,b]")
  return getattr(tp, "__name__", str(tp))


class _BadValue(Exception):
  pass


def _from_text(text: str, tp):
  """Converts override text to `tp`; raises _BadValue."""
  text = text.strip()
  inner = _optional_inner(tp)
  if inner is not None:
    return None if text.lower() in _NONE else _from_text(text, inner)
  elem = _tuple_elem(tp)
  if elem is not None:
    if text[:1] in "[(" and text[-1:] == {"[": "]", "(": ")"}.get(text[:1]):
      text = text[1:-1]
    items = [t for t in (s.strip() for s in text.split(",")) if t]
    return tuple(_from_text(t, elem) for t in items)
  if tp is bool:
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise _BadValue()
  if tp is int:
    try:
      return int(text)
    except ValueError:
      raise _BadValue() from None
  if tp is float:
    try:
      return float(text)
    except ValueError:
      raise _BadValue() from None
  if tp is str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
      text = text[1:-1]
    return text
  raise TypeError(f"unsupported hyperparameter type {tp!r}")


def _from_json(value, tp):
  """Checks/converts a JSON value (or a text override) to `tp`; raises _BadValue."""
  if isinstance(value, str) and tp is not str:
    return _from_text(value, tp)
  inner = _optional_inner(tp)
  if inner is not None:
    return None if value is None else _from_json(value, inner)
  elem = _tuple_elem(tp)
  if elem is not None:
    if not isinstance(value, (list, tuple)):
      value = [value]  # a lone number stands for a one-element tuple, as in the text syntax
    return tuple(_from_json(v, elem) for v in value)
  if tp is bool:
    if isinstance(value, bool):
      return value
    raise _BadValue()
  if tp is int:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
    raise _BadValue()
  if tp is float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    raise _BadValue()
  if tp is str:
    if isinstance(value, str):
      return value
    raise _BadValue()
  raise TypeError(f"unsupported hyperparameter type {tp!r}")


def split_overrides(text: str) -> List[Tuple[str, str]]:
  """Splits "a=1,b=[2,3]" into [("a", "1"), ("b", "[2,3]")]; commas inside [] or () stay.

  Raises:
    HParamsError: an item without "=", an empty key, or unbalanced brackets.
  """
  items, depth, start = [], 0, 0
  for i, ch in enumerate(text + ","):
    if ch in "[(":
      depth += 1
    elif ch in "])":
      depth -= 1
      if depth < 0:
        raise HParamsError(f"hparams {text!r}: unbalanced {ch!r} at position {i}")
    elif ch == "," and depth == 0:
      items.append(text[start:i])
      start = i + 1
  if depth != 0:
    raise HParamsError(f"hparams {text!r}: unbalanced brackets")
  out = []
  for item in items:
    if not item.strip():
      continue
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
      raise HParamsError(f"hparams {text!r}: {item.strip()!r} is not key=value")
    out.append((key.strip(), value.strip()))
  return out


def _error(cls, key: str, value: Any, why: str) -> HParamsError:
  keys = ", ".join(field_types(cls))
  return HParamsError(f"{_owner(cls)} hparam {key}={value!r}: {why}; valid keys: {keys}")


def _coerce_all(cls, pairs: Sequence[Tuple[str, Any]], text: bool) -> Dict[str, Any]:
  types = field_types(cls)
  values = {}
  for key, value in pairs:
    if key not in types:
      raise HParamsError(f"{_error(cls, key, value, 'unknown key')}"
                         f"{errors.did_you_mean(key, types)}")
    if key in values:
      raise _error(cls, key, value, "given twice")
    try:
      values[key] = _from_text(value, types[key]) if text else _from_json(value, types[key])
    except _BadValue:
      raise _error(cls, key, value, f"expected {type_name(types[key])}") from None
  return values


def _replace(hp, values: Mapping[str, Any]):
  try:
    return dataclasses.replace(hp, **values)
  except HParamsError:
    raise
  except (TypeError, ValueError) as e:  # a __post_init__ check that is not an HParamsError yet
    raise HParamsError(f"{_owner(type(hp))} hparams {dict(values)}: {e}") from e


def override(hp, overrides: Union[str, Mapping[str, Any], None]):
  """Returns a copy of `hp` with overrides applied.

  Args:
    hp: a frozen hyperparameter dataclass instance.
    overrides: "key=value,key2=[1,2]" text (the --hparams syntax), or a mapping of key ->
      JSON value (a config file; strings there are parsed like the text syntax), or None.

  Returns:
    A new instance of the same class; fields not named keep their value in `hp`.

  Raises:
    HParamsError: unknown key, a key given twice, a value that does not fit the field's type,
      or a value the class's own checks reject.
  """
  if not overrides:
    return hp
  cls = type(hp)
  if isinstance(overrides, str):
    values = _coerce_all(cls, split_overrides(overrides), text=True)
  else:
    values = _coerce_all(cls, list(overrides.items()), text=False)
  return _replace(hp, values)


def to_json_dict(hp) -> Dict[str, Any]:
  """The field values as JSON-compatible types (tuples become lists)."""
  _check_class(type(hp))
  out = {}
  for f in dataclasses.fields(hp):
    v = getattr(hp, f.name)
    out[f.name] = list(v) if isinstance(v, tuple) else v
  return out


def from_json_dict(cls, d: Mapping[str, Any]):
  """Builds `cls` from defaults plus the values in `d` (as written by `to_json_dict`).

  Raises:
    HParamsError: as `override`.
  """
  return override(cls(), dict(d)) if d else cls()


def describe(cls) -> List[str]:
  """One "name: type = default" line per field, for --hparams help and logs."""
  defaults = cls()
  return [f"{name}: {type_name(tp)} = {to_json_dict(defaults)[name]!r}"
          for name, tp in field_types(cls).items()]


def check_choice(cls, key: str, value: Any, choices: Sequence[Any]) -> None:
  """For __post_init__ checks: raises HParamsError unless value is one of choices."""
  if value not in choices:
    raise _error(cls, key, value, f"expected one of {', '.join(map(str, choices))}")


def check(cls, key: str, value: Any, ok: bool, expected: str) -> None:
  """For __post_init__ checks: raises HParamsError saying `expected` unless ok."""
  if not ok:
    raise _error(cls, key, value, f"expected {expected}")
