"""The seam between source formats and the writer.

A format (one module in this package plus one line in registry.py) turns `SourceOptions` into
a `Source`: the feature spec, the records of each split (light references such as indices or
file paths), and `load(split, record)`, which the writer's worker processes call to get one
example's values. Whatever can be checked up front (headers, counts, parsing) is checked when
the source is opened, before any shard is written; what only decoding finds (a broken image)
is raised by `load` as a UserInputError, and the writer then removes what it wrote.

`Source.identity` is what makes the dataset this dataset: content digests and the options that
change the examples, never paths, so moving the inputs does not make a rerun "different".

A source may hold resources (the table formats' memory-mapped spill file): the converter uses it
as a context manager, or calls `close()`, once the writer is done. `summary()` is what the
converter prints before writing, and a source opened for a dry run (`describe_only`, e.g.
--describe) is not written at all.
"""

import abc
import dataclasses
import hashlib
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from input_fns import errors
from input_fns import feature_spec as fs

DEFAULT_EVAL_FRACTION = 0.1


class FormatError(errors.UserInputError):
  """An unknown format, or an option that does not apply to the chosen format."""


class SourceError(errors.UserInputError):
  """A source file or folder is missing, empty or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class SourceOptions:
  """Every option a format may read (each format lists the ones it uses in `Format.options`).

  Attributes:
    images: IDX images file (plain or .gz).
    labels: IDX labels file matching `images`.
    eval_images: IDX images of a separate eval split (optional).
    eval_labels: IDX labels matching `eval_images`.
    input: the CSV / TSV / Parquet / JSON Lines file, image folder or text file.
    label_column: the table column holding the label.
    image_shape: (H, W, C) of CSV pixel columns; None means a typed table
      (input_fns/formats/table.py).
    image_size: (H, W) to resize images to; None keeps their (common) size.
    channels: 1 (grey) or 3 (RGB) for decoded images.
    max_length: tokens per text example (padded with 0 or truncated).
    max_vocab: vocabulary size including <pad> and <unk>.
    eval_fraction: share of each class sent to eval when the source has no eval split;
      None means DEFAULT_EVAL_FRACTION.
    seed: seeds the split (and the writer's shuffle).
    delimiter: CSV field separator (one character).
    column_names: names of the columns of a CSV / TSV file without a header row.
    missing: markers of a missing table value, matched after whitespace trimming (the empty
      string is always one).
    columns: table column types overriding the inferred ones: "name:numeric",
      "name:categorical", "name:text", "name:skip", "name:hash=N", "name:multi=SEP".
    schema: a table schema JSON file (as --describe writes it) that replaces the inferred
      types; with `describe`, where the inferred schema is written.
    describe: a dry run: print the table's per-column summary and write its schema, no shards.
    label_kind: "multiclass", "binary" or "regression"; "" infers it from the label values.
    label_map: "raw=name" entries renaming raw label values (e.g. "<=50K=0").
    weight_column: table column of per-example weights ("" for none).
    eval_input: a separate eval file of a table (then eval_fraction does not apply).
    vocab_top_k: at most this many values in a categorical column's vocabulary.
    vocab_min_count: values seen fewer times in the train split stay out of a vocabulary.
    hash_threshold: a categorical with more distinct values is hashed instead of given a
      vocabulary.
  """
  images: str = ""
  labels: str = ""
  eval_images: str = ""
  eval_labels: str = ""
  input: str = ""
  label_column: str = "label"
  image_shape: Optional[Tuple[int, int, int]] = None
  image_size: Optional[Tuple[int, int]] = None
  channels: int = 3
  max_length: int = 64
  max_vocab: int = 20000
  eval_fraction: Optional[float] = None
  seed: int = 0
  delimiter: str = ","
  column_names: Tuple[str, ...] = ()
  missing: Tuple[str, ...] = ("", "NA")
  columns: Tuple[str, ...] = ()
  schema: str = ""
  describe: bool = False
  label_kind: str = ""
  label_map: Tuple[str, ...] = ()
  weight_column: str = ""
  eval_input: str = ""
  vocab_top_k: int = 100_000
  vocab_min_count: int = 1
  hash_threshold: int = 10_000

  @property
  def resolved_eval_fraction(self) -> float:
    return DEFAULT_EVAL_FRACTION if self.eval_fraction is None else self.eval_fraction


# Options naming input locations: in the manifest's source description, not in the identity.
PATH_OPTIONS = ("images", "labels", "eval_images", "eval_labels", "input", "eval_input", "schema")


class Source(abc.ABC):
  """A source ready to be written.

  Attributes:
    spec: the feature spec of every example.
    splits: split name -> records (anything `load` accepts; a numpy array or a list).
    description: goes into the manifest as "source" (format, paths, options, counts).
    identity: JSON-able; equal identities mean byte-identical examples.
    assets: role -> (file name, bytes) written beside the shards, e.g. a vocabulary.
    describe_only: opened for a dry run (e.g. --describe): the converter prints `summary()`
      and writes no shards.
  """

  describe_only = False

  def __init__(self, spec: fs.FeatureSpec, splits: Mapping[str, Sequence[Any]],
               description: Mapping[str, Any], identity: Mapping[str, Any],
               assets: Optional[Mapping[str, Tuple[str, bytes]]] = None):
    self.spec = spec
    self.splits = {k: v for k, v in splits.items() if len(v)}
    self.description = dict(description)
    self.identity = dict(identity)
    self.assets = dict(assets or {})

  def count(self, split: str) -> int:
    return len(self.splits.get(split, ()))

  @abc.abstractmethod
  def load(self, split: str, record: Any) -> Tuple[Mapping[str, Any], int]:
    """Returns (values, label) of one record; runs in a worker process.

    Raises:
      errors.UserInputError: the record cannot be read or decoded (message names it).
    """

  def load_batch(self, split: str, records: Sequence[Any]
                 ) -> Optional[Tuple[Mapping[str, np.ndarray], np.ndarray]]:
    """Optionally, many records at once: (feature name -> [n, ...] array, labels [n]).

    The writer then encodes them vectorized. None (the default) means "load one by one".
    """
    del split, records
    return None

  def describe(self, split: str, record: Any) -> str:
    """Names a record for error messages, e.g. "data.csv line 12"."""
    return f"{self.description.get('format', 'source')} {split} record {record!r}"

  def summary(self) -> str:
    """Lines the converter prints before writing (e.g. per-column statistics); "" for none."""
    return ""

  def close(self) -> None:
    """Releases what the source holds (temporary files); the default holds nothing."""

  def __enter__(self) -> "Source":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self.close()


@dataclasses.dataclass(frozen=True)
class Format:
  """One registered source format.

  Attributes:
    name: the --format value.
    open: SourceOptions -> Source; checks the input and raises UserInputError subclasses.
    options: the SourceOptions fields it reads; setting any other one is an error.
    summary: one line for --help.
  """
  name: str
  open: Callable[[SourceOptions], Source]
  options: Tuple[str, ...]
  summary: str


class ArraySource(Source):
  """Examples held in memory as stacked arrays; records are indices into them."""

  def __init__(self, spec: fs.FeatureSpec, features: Mapping[str, np.ndarray], labels: np.ndarray,
               split_indices: Mapping[str, np.ndarray], description: Mapping[str, Any],
               identity: Mapping[str, Any],
               assets: Optional[Mapping[str, Tuple[str, bytes]]] = None,
               record_name: Optional[Callable[[int], str]] = None):
    """Args:
      spec: the feature spec.
      features: feature name -> array [N, ...].
      labels: int array [N].
      split_indices: split name -> indices into the arrays, in source order.
      description, identity, assets: see Source.
      record_name: index -> its name in error messages (e.g. "x.csv line 7").
    """
    super().__init__(spec, split_indices, description, identity, assets)
    self._features = dict(features)
    self._labels = np.asarray(labels)
    self._record_name = record_name

  def load(self, split, record):
    del split
    return {k: v[record] for k, v in self._features.items()}, int(self._labels[record])

  def load_batch(self, split, records):
    del split
    idx = np.asarray(records)
    return {k: v[idx] for k, v in self._features.items()}, self._labels[idx]

  def describe(self, split, record):
    if self._record_name is not None:
      return self._record_name(int(record))
    return super().describe(split, record)


class ListSource(Source):
  """Examples given as (values, label) pairs per split; records are positions in the lists."""

  def __init__(self, spec: fs.FeatureSpec,
               examples: Mapping[str, Sequence[Tuple[Mapping[str, Any], int]]],
               description: Mapping[str, Any], identity: Mapping[str, Any],
               assets: Optional[Mapping[str, Tuple[str, bytes]]] = None):
    super().__init__(spec, {k: np.arange(len(v)) for k, v in examples.items()},
                     description, identity, assets)
    self._examples = {k: list(v) for k, v in examples.items()}

  def load(self, split, record):
    return self._examples[split][record]

  def describe(self, split, record):
    return f"example {int(record)} of split {split!r}"


def options_used(fmt: Format, opts: SourceOptions, with_paths: bool) -> Dict[str, Any]:
  """The options `fmt` reads, as a JSON-able dict (paths only if `with_paths`)."""
  out = {}
  for name in fmt.options:
    if name in PATH_OPTIONS and not with_paths:
      continue
    value = getattr(opts, name)
    if name == "eval_fraction":
      value = opts.resolved_eval_fraction
    out[name] = list(value) if isinstance(value, tuple) else value
  return out


def digest_arrays(*arrays: np.ndarray) -> str:
  """sha256 over the dtype, shape and bytes of each array."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def read_input(path: str, flag: str) -> bytes:
  """The bytes of a user-named input file.

  Raises:
    SourceError: naming the flag and the path when it is missing, a directory or unreadable.
  """
  if not path:
    raise SourceError(f"--{flag} is required")
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise SourceError(f"--{flag}={path}: no such file") from None
  except IsADirectoryError:
    raise SourceError(f"--{flag}={path} is a directory, expected a file") from None
  except OSError as e:
    raise SourceError(f"--{flag}={path}: cannot read ({e.strerror or e})") from None


def label_names(values: Sequence[str]) -> Tuple[str, ...]:
  """Sorted distinct label strings: numerically if all are integers (so "10" follows "9")."""
  distinct = set(values)
  try:
    return tuple(sorted(distinct, key=int))
  except ValueError:
    return tuple(sorted(distinct))


def require_classes(names: Sequence[str], where: str) -> None:
  """Raises SourceError unless there are at least two classes."""
  if len(names) < 2:
    raise SourceError(f"{where} has {len(names)} class(es) {list(names)}; a classifier needs at "
                      f"least 2")


def abspath(path: str) -> str:
  return os.path.abspath(path) if path else path
