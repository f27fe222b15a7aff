"""Several datasets in one run: weighted training sources and named evaluation sets.

The flag syntaxes are parsed here into frozen structures, so a script only forwards strings:

  * training sources: "dirA:0.7,dirB:0.3" (weights optional; all or none; normalised to sum 1),
  * evaluation sets: "name=dir,name2=dir2" (a bare "dir" is named after its last path part).

Mixing itself happens in `dataset.make_mixture_input_fn`; `check_compatible` is the rule it
applies: sources are mixed after parsing, so they must share one feature spec.
"""

import dataclasses
import math
import os
from typing import Sequence, Tuple

from input_fns import errors
from input_fns import manifest as manifest_lib


class MixtureError(errors.UserInputError):
  """A source list or eval-set list is malformed, or its datasets cannot be mixed."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One training source: a dataset directory and its sampling weight (weights sum to 1)."""
  directory: str
  weight: float


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One named evaluation set: `name` labels its metrics (Estimator.evaluate(name=...))."""
  name: str
  directory: str


def _split_weight(item: str, what: str):
  """"dir:0.7" -> ("dir", 0.7); "gs://b/dir" -> ("gs://b/dir", None) (a URL's ':' is kept).

  Raises:
    MixtureError: the text after the last ':' is not a number.
  """
  head, sep, tail = item.rpartition(":")
  if not sep or "/" in tail:
    return item, None
  try:
    return head.strip(), float(tail)
  except ValueError:
    raise MixtureError(f"{what}: source {item!r}: weight {tail.strip()!r} is not a number") from None


def parse_sources(text: str, what: str = "--train_data") -> Tuple[Source, ...]:
  """Parses "dirA:0.7,dirB:0.3" (or "dirA,dirB" for equal weights).

  Args:
    text: comma-separated directories, each optionally followed by ":weight".
    what: the flag or field the text came from, for error messages.

  Returns:
    The sources in the given order, weights normalised to sum to 1.

  Raises:
    MixtureError: empty list, a directory given twice, a weight that is not a positive finite
      number, or weights given for some sources but not others.
  """
  items = [s.strip() for s in text.split(",") if s.strip()]
  if not items:
    raise MixtureError(f"{what}: no dataset directory given")
  parsed = [_split_weight(item, what) for item in items]
  dirs = [d for d, _ in parsed]
  dup = sorted({d for d in dirs if dirs.count(d) > 1})
  if dup:
    raise MixtureError(f"{what}: {', '.join(dup)} given more than once")
  weights = [w for _, w in parsed]
  if all(w is None for w in weights):
    weights = [1.0] * len(parsed)
  elif any(w is None for w in weights):
    missing = [d for d, w in parsed if w is None]
    raise MixtureError(f"{what}: give a weight to every source or to none; missing for "
                       f"{', '.join(missing)}")
  for (d, _), w in zip(parsed, weights):
    if not (math.isfinite(w) and w > 0):
      raise MixtureError(f"{what}: weight of {d} must be a positive number, got {w}")
  total = sum(weights)
  return tuple(Source(d, w / total) for d, w in zip(dirs, weights))


def parse_eval_sets(text: str, what: str = "--eval_data") -> Tuple[EvalSet, ...]:
  """Parses "name=dir,name2=dir2"; a bare "dir" is named after its last path component.

  Args:
    text: comma-separated "name=dir" or "dir" items.
    what: the flag or field the text came from, for error messages.

  Returns:
    The eval sets in the given order.

  Raises:
    MixtureError: empty list, an empty name or directory, or a name used twice.
  """
  items = [s.strip() for s in text.split(",") if s.strip()]
  if not items:
    raise MixtureError(f"{what}: no evaluation dataset given")
  out = []
  for item in items:
    name, sep, directory = item.partition("=")
    if not sep:
      directory, name = item, os.path.basename(item.rstrip("/"))
    name, directory = name.strip(), directory.strip()
    if not name or not directory:
      raise MixtureError(f"{what}: {item!r} is not name=dir")
    if not all(c.isalnum() or c in "_-." for c in name):
      raise MixtureError(f"{what}: eval set name {name!r} may only hold letters, digits, _ - .")
    out.append(EvalSet(name, directory))
  names = [e.name for e in out]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise MixtureError(f"{what}: eval set name(s) {', '.join(dup)} used more than once")
  return tuple(out)


def read_sources(sources: Sequence[Source]) -> Tuple[Tuple[manifest_lib.Manifest, float], ...]:
  """Reads each source's manifest and checks they can be mixed.

  Returns:
    ((manifest, weight), ...) as make_mixture_input_fn takes it.

  Raises:
    manifest_lib.ManifestError: a directory holds no dataset.
    MixtureError: the datasets' feature specs differ.
  """
  pairs = tuple((manifest_lib.read(s.directory), s.weight) for s in sources)
  check_compatible([m for m, _ in pairs])
  return pairs


def read_eval_sets(eval_sets: Sequence[EvalSet]) -> Tuple[Tuple[str, manifest_lib.Manifest], ...]:
  """Reads each eval set's manifest: ((name, manifest), ...) as make_eval_input_fns takes it.

  Raises:
    manifest_lib.ManifestError: a directory holds no dataset.
  """
  return tuple((e.name, manifest_lib.read(e.directory)) for e in eval_sets)


def check_compatible(manifests: Sequence[manifest_lib.Manifest]) -> None:
  """Refuses datasets that cannot share one parser, preprocessing chain and model.

  Raises:
    MixtureError: naming both directories and every field of the feature spec that differs.
  """
  first = manifests[0]
  a = first.spec.to_json_dict()
  for other in manifests[1:]:
    b = other.spec.to_json_dict()
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
      details = "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
      raise MixtureError(f"cannot mix {first.directory} and {other.directory}: their feature "
                         f"specs differ in {', '.join(diff)} ({details})")
