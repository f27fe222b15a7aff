"""One feature spec per dataset: the single source of truth for writer, reader and server.

The writer encodes examples with `FeatureSpec.encode`, the input_fn parses batches with
`FeatureSpec.parse_batch`, and the serving receiver accepts tensors shaped by
`FeatureSpec.serving_signature`. The spec is stored inside the dataset's `manifest.json`, so a
dataset directory describes itself.

Encodings:
  * `raw`: the array's bytes (C order) in one `bytes_list`; parsed with `tf.io.decode_raw`.
    Compact and fast for fixed-shape uint8/float32 tensors such as images.
  * `int64_list` / `float_list`: a fixed-length list of numbers (token ids, numeric columns).
"""

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from input_fns import errors
from input_fns import input_kinds

LABEL_KEY = "label"

# Kinds of primary input (input_fns/input_kinds.py); models use them to decide how to read the
# input.
IMAGE = input_kinds.IMAGE
TOKENS = input_kinds.TOKENS
VECTOR = input_kinds.VECTOR

_KINDS = input_kinds.KINDS
_ENCODINGS = ("raw", "int64_list", "float_list")
_DTYPES = {"uint8": tf.uint8, "float32": tf.float32, "int64": tf.int64}


class SpecError(errors.UserInputError):
  """A feature spec, or a value checked against one, is malformed."""


@dataclasses.dataclass(frozen=True)
class Feature:
  """One fixed-shape feature of an example.

  Attributes:
    name: key in the tf.Example and in the features dict.
    dtype: "uint8", "float32" or "int64".
    shape: fixed shape of one example's value.
    encoding: "raw", "int64_list" or "float_list" (see module docstring).
  """
  name: str
  dtype: str
  shape: Tuple[int, ...]
  encoding: str = "raw"

  def __post_init__(self):
    if self.dtype not in _DTYPES:
      raise SpecError(f"feature {self.name!r}: dtype {self.dtype!r} is not one of {sorted(_DTYPES)}")
    if self.encoding not in _ENCODINGS:
      raise SpecError(f"feature {self.name!r}: encoding {self.encoding!r} is not one of {_ENCODINGS}")
    if self.encoding == "int64_list" and self.dtype != "int64":
      raise SpecError(f"feature {self.name!r}: int64_list needs dtype int64, got {self.dtype}")
    if self.encoding == "float_list" and self.dtype != "float32":
      raise SpecError(f"feature {self.name!r}: float_list needs dtype float32, got {self.dtype}")
    if not self.shape or any(int(d) < 1 for d in self.shape):
      raise SpecError(f"feature {self.name!r}: shape must be non-empty and positive, got {self.shape}")
    object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

  @property
  def size(self) -> int:
    return int(np.prod(self.shape))

  @property
  def tf_dtype(self) -> tf.DType:
    return _DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """Everything a reader, a model or a server needs to know about a dataset's examples.

  Attributes:
    features: the input features, in order; `input_key` names the primary one.
    input_key: the feature models read (e.g. "image").
    kind: IMAGE, TOKENS or VECTOR: how models interpret `input_key`.
    label_names: one name per class; the label is an int64 in [0, num_classes).
    value_range: (low, high) of raw input values, used by scaling presets (images).
    vocab_size: number of token ids including padding 0 and OOV (TOKENS only).
  """
  features: Tuple[Feature, ...]
  input_key: str
  kind: str
  label_names: Tuple[str, ...]
  value_range: Optional[Tuple[float, float]] = None
  vocab_size: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "features", tuple(self.features))
    object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))
    if self.value_range is not None:
      object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
    names = [f.name for f in self.features]
    if len(set(names)) != len(names) or LABEL_KEY in names:
      raise SpecError(f"feature names must be unique and not {LABEL_KEY!r}: {names}")
    if self.input_key not in names:
      raise SpecError(f"input_key {self.input_key!r} is not a feature: {names}")
    if self.kind not in _KINDS:
      raise SpecError(f"kind {self.kind!r} is not one of {_KINDS}")
    if len(self.label_names) < 2:
      raise SpecError(f"need at least 2 classes, got {len(self.label_names)}")
    if self.kind == TOKENS and not self.vocab_size:
      raise SpecError("a TOKENS spec needs vocab_size")

  @property
  def num_classes(self) -> int:
    return len(self.label_names)

  @property
  def input_feature(self) -> Feature:
    return self.feature(self.input_key)

  def feature(self, name: str) -> Feature:
    for f in self.features:
      if f.name == name:
        return f
    raise KeyError(name)

  # --- JSON -------------------------------------------------------------------------------------

  def to_json_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d["features"] = [dataclasses.asdict(f) | {"shape": list(f.shape)} for f in self.features]
    d["label_names"] = list(self.label_names)
    if self.value_range is not None:
      d["value_range"] = list(self.value_range)
    return d

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
    try:
      return cls(
          features=tuple(Feature(**f) for f in d["features"]),
          input_key=d["input_key"],
          kind=d["kind"],
          label_names=tuple(d["label_names"]),
          value_range=d.get("value_range"),
          vocab_size=d.get("vocab_size"))
    except (KeyError, TypeError) as e:
      raise SpecError(f"malformed feature spec ({type(e).__name__}: {e})") from e

  def to_json(self) -> str:
    return json.dumps(self.to_json_dict(), sort_keys=True)

  # --- Writing ----------------------------------------------------------------------------------

  def encode(self, values: Mapping[str, np.ndarray], label: int) -> bytes:
    """Serializes one example.

    Args:
      values: feature name -> array of the feature's shape (cast to its dtype exactly).
      label: class index in [0, num_classes).

    Returns:
      A serialized tf.train.Example.

    Raises:
      SpecError: a feature is missing, has the wrong shape, or does not fit its dtype;
        or the label is out of range.
    """
    label = int(label)
    if not 0 <= label < self.num_classes:
      raise SpecError(f"label {label} is out of range [0, {self.num_classes})")
    feats = {LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    for f in self.features:
      if f.name not in values:
        raise SpecError(f"feature {f.name!r} is missing")
      arr = np.asarray(values[f.name])
      if arr.shape != f.shape:
        raise SpecError(f"feature {f.name!r}: expected shape {f.shape}, got {arr.shape}")
      cast = arr.astype(f.dtype)
      if not np.array_equal(cast, arr):
        raise SpecError(f"feature {f.name!r}: values do not fit dtype {f.dtype} exactly")
      if f.encoding == "raw":
        feats[f.name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(cast).tobytes()]))
      elif f.encoding == "int64_list":
        feats[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=cast.ravel()))
      else:
        feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=cast.ravel()))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()

  # --- Reading ----------------------------------------------------------------------------------

  def parsing_spec(self, with_label: bool = True) -> Dict[str, Any]:
    spec = {}
    for f in self.features:
      if f.encoding == "raw":
        spec[f.name] = tf.io.FixedLenFeature([], tf.string)
      else:
        spec[f.name] = tf.io.FixedLenFeature([f.size], f.tf_dtype)
    if with_label:
      spec[LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    return spec

  def parse_batch(self, serialized: tf.Tensor, with_label: bool = True):
    """Parses a batch of serialized examples in one vectorized op.

    Args:
      serialized: string tensor of shape [batch].
      with_label: whether examples carry a label (serving requests do not).

    Returns:
      (features, labels): features maps each feature name to a tensor of shape
      [batch] + feature.shape in the feature's dtype; labels is int64 [batch] (None without).
    """
    parsed = tf.io.parse_example(serialized, self.parsing_spec(with_label))
    features = {}
    for f in self.features:
      value = parsed[f.name]
      if f.encoding == "raw":
        value = tf.io.decode_raw(value, f.tf_dtype, fixed_length=f.size * f.tf_dtype.size)
      features[f.name] = tf.reshape(value, [-1, *f.shape])
    return features, (parsed[LABEL_KEY] if with_label else None)

  # --- Serving ----------------------------------------------------------------------------------

  def serving_signature(self) -> Dict[str, tf.TensorSpec]:
    """TensorSpecs of the raw-tensor serving input: [None] + shape per feature."""
    return {f.name: tf.TensorSpec([None, *f.shape], f.tf_dtype, name=f.name) for f in self.features}


def _shown(feature: Feature, attr: str) -> str:
  value = getattr(feature, attr)
  return "[" + ", ".join(str(d) for d in value) + "]" if attr == "shape" else str(value)


def describe_difference(old: FeatureSpec, new: FeatureSpec) -> str:
  """How `new` differs from `old`, in one line for an error message ("" if they are equal).

  E.g. "feature 'image' shape [8, 8, 1] -> [4, 4, 1]; label_names 10 -> 5 classes": features
  added or removed, each shared feature's dtype/shape/encoding, then the spec's other fields,
  old -> new.
  """
  parts = []
  old_features = {f.name: f for f in old.features}
  new_features = {f.name: f for f in new.features}
  added = [n for n in new_features if n not in old_features]
  removed = [n for n in old_features if n not in new_features]
  if added:
    parts.append(f"features added: {', '.join(map(repr, added))}")
  if removed:
    parts.append(f"features removed: {', '.join(map(repr, removed))}")
  for name, a in old_features.items():
    b = new_features.get(name)
    if b is None:
      continue
    changes = [f"{attr} {_shown(a, attr)} -> {_shown(b, attr)}"
               for attr in ("dtype", "shape", "encoding") if getattr(a, attr) != getattr(b, attr)]
    if changes:
      parts.append(f"feature {name!r} {', '.join(changes)}")
  if not added and not removed and list(old_features) != list(new_features):
    parts.append(f"feature order {list(old_features)} -> {list(new_features)}")
  for attr in ("input_key", "kind", "value_range", "vocab_size"):
    if getattr(old, attr) != getattr(new, attr):
      parts.append(f"{attr} {getattr(old, attr)!r} -> {getattr(new, attr)!r}")
  if old.num_classes != new.num_classes:
    parts.append(f"label_names {old.num_classes} -> {new.num_classes} classes")
  elif old.label_names != new.label_names:
    renamed = [f"{a!r} -> {b!r}" for a, b in zip(old.label_names, new.label_names) if a != b]
    parts.append(f"label_names: {len(renamed)} of {old.num_classes} renamed "
                 f"({', '.join(renamed[:3])}{', ...' if len(renamed) > 3 else ''})")
  return "; ".join(parts)


def image_spec(height: int, width: int, channels: int, label_names: Sequence[str],
               value_range: Tuple[float, float] = (0, 255)) -> FeatureSpec:
  """The spec of an image classification dataset stored as raw uint8 pixels."""
  return FeatureSpec(
      features=(Feature("image", "uint8", (height, width, channels), "raw"),),
      input_key="image",
      kind=IMAGE,
      label_names=tuple(label_names),
      value_range=value_range)


def vector_spec(dim: int, label_names: Sequence[str], name: str = "vector") -> FeatureSpec:
  """The spec of a dataset of [dim] float32 feature vectors (e.g. numeric CSV columns)."""
  return FeatureSpec(
      features=(Feature(name, "float32", (dim,), "float_list"),),
      input_key=name,
      kind=VECTOR,
      label_names=tuple(label_names))


def token_spec(max_length: int, vocab_size: int, label_names: Sequence[str],
               name: str = "tokens") -> FeatureSpec:
  """The spec of a text dataset: [max_length] int64 token ids, 0 = padding, 1 = unknown."""
  return FeatureSpec(
      features=(Feature(name, "int64", (max_length,), "int64_list"),),
      input_key=name,
      kind=TOKENS,
      label_names=tuple(label_names),
      vocab_size=vocab_size)
