"""The flags of //scripts:make_tfrecords, read once into the frozen config of one conversion.

Kept apart from make_tfrecords.py (as train.py's are in experiment_flags.py) so that the binary
is a short main(); config_from_flags is the only reader of these flags.
"""

import dataclasses
from typing import Optional, Tuple

from absl import flags

from estimator_app import config as config_lib
from input_fns import errors
from input_fns import writer
from input_fns.formats import base
from input_fns.formats import registry

_SOURCE_DEFAULTS = base.SourceOptions()

_FORMAT = flags.DEFINE_enum(
    "format", None, list(registry.names()),
    "Source format: " + "; ".join(f"{n}: {registry.get(n).summary}" for n in registry.names()))
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Dataset directory: a local path or "
                                  "gs://bucket/prefix.")
_IMAGES = flags.DEFINE_string("images", "", "idx: IDX images file (plain or .gz).")
_LABELS = flags.DEFINE_string("labels", "", "idx: IDX labels file (plain or .gz).")
_EVAL_IMAGES = flags.DEFINE_string("eval_images", "", "idx: IDX images of the eval split.")
_EVAL_LABELS = flags.DEFINE_string("eval_labels", "", "idx: IDX labels of the eval split.")
_INPUT = flags.DEFINE_string("input", "", "csv, tsv, parquet, jsonl: the table file; image_dir: "
                             "the folder of class sub-folders; text: the label<TAB>text file.")
_LABEL_COLUMN = flags.DEFINE_string("label_column", _SOURCE_DEFAULTS.label_column,
                                    "Tables: the column holding the label.")
_IMAGE_SHAPE = flags.DEFINE_string("image_shape", None, "csv: H,W,C: the feature columns are "
                                   "pixels of this shape (else a typed table).")
# The typed-table formats (csv without --image_shape, tsv, parquet, jsonl):
# input_fns/formats/table.py documents each option.
_TABLES = "Tables (csv, tsv, parquet, jsonl): "
_DELIMITER = flags.DEFINE_string("delimiter", _SOURCE_DEFAULTS.delimiter,
                                 "csv: the field separator, one character ('tab' or '\\t' for "
                                 "a TAB).")
_COLUMN_NAMES = flags.DEFINE_list("column_names", [], "csv, tsv: the column names of a file "
                                  "without a header row, comma-separated.")
_MISSING = flags.DEFINE_list(
    "missing", None, _TABLES + "comma-separated markers of a missing value, matched after "
    "whitespace trimming; an empty cell is always missing (default: NA).")
_COLUMNS = flags.DEFINE_list(
    "columns", [], _TABLES + "column types overriding the inferred ones: name:numeric, "
    "name:categorical, name:text, name:skip, name:hash=N (N buckets), name:multi=SEP (several "
    "values a cell, split at SEP), comma-separated.")
_SCHEMA = flags.DEFINE_string(
    "schema", "", _TABLES + "a schema JSON (as --describe writes it) whose column types replace "
    "the inferred ones; with --describe, where to write it (default <output_dir>.schema.json).")
_DESCRIBE = flags.DEFINE_bool(
    "describe", False, _TABLES + "dry run: print the per-column summary, write the inferred "
    "schema to --schema, and write no shards.")
_LABEL_KIND = flags.DEFINE_enum(
    "label_kind", None, ["multiclass", "binary", "regression"],
    _TABLES + "the label kind (default: inferred from the label values).")
_LABEL_MAP = flags.DEFINE_list(
    "label_map", [], _TABLES + "raw=name entries renaming raw label values (e.g. "
    "'<=50K=0,>50K=1'); a raw value it does not map is an error.")
_WEIGHT_COLUMN = flags.DEFINE_string("weight_column", "", _TABLES + "the column of per-example "
                                     "weights (numbers >= 0).")
_EVAL_INPUT = flags.DEFINE_string("eval_input", "", _TABLES + "a separate eval file with the "
                                  "same columns (then --eval_fraction does not apply).")
_VOCAB_TOP_K = flags.DEFINE_integer("vocab_top_k", _SOURCE_DEFAULTS.vocab_top_k,
                                    _TABLES + "at most this many values in a vocabulary.")
_VOCAB_MIN_COUNT = flags.DEFINE_integer(
    "vocab_min_count", _SOURCE_DEFAULTS.vocab_min_count,
    _TABLES + "values seen fewer times in the train split stay out of a vocabulary.")
_HASH_THRESHOLD = flags.DEFINE_integer(
    "hash_threshold", _SOURCE_DEFAULTS.hash_threshold,
    _TABLES + "a categorical column with more distinct values is hashed (into 2 x distinct "
    "buckets, a power of 2) instead of given a vocabulary.")
_IMAGE_SIZE = flags.DEFINE_string("image_size", None, "image_dir: H,W to resize every image to "
                                  "(else all images must share one size).")
_CHANNELS = flags.DEFINE_integer("channels", _SOURCE_DEFAULTS.channels,
                                 "image_dir: 1 (grey) or 3 (RGB).")
_MAX_LENGTH = flags.DEFINE_integer("max_length", _SOURCE_DEFAULTS.max_length,
                                   "text: tokens per example (padded or truncated).")
_MAX_VOCAB = flags.DEFINE_integer("max_vocab", _SOURCE_DEFAULTS.max_vocab,
                                  "text: vocabulary size including <pad> and <unk>.")
_EVAL_FRACTION = flags.DEFINE_float(
    "eval_fraction", None, f"Share of each class held out for eval when the source has no eval "
    f"split (default {base.DEFAULT_EVAL_FRACTION}; 0 for none).")
_SEED = flags.DEFINE_integer("seed", _SOURCE_DEFAULTS.seed, "Seeds the split and the shuffle.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 4, "Shards per split.")
_COMPRESSION = flags.DEFINE_enum("compression", "none", ["none", "GZIP"], "Shard compression.")
_WORKERS = flags.DEFINE_integer("workers", 0, "Writer processes (0: one per core).")
_SHUFFLE = flags.DEFINE_bool("shuffle", True, "Shuffle each split (with --seed) before sharding.")
_STAGING_DIR = flags.DEFINE_string("staging_dir", "", "gs:// output: local directory for shards "
                                   "before upload (default: under the system temp dir).")
_PROGRESS_INTERVAL = flags.DEFINE_float("progress_interval", 10.0,
                                        "Seconds between progress lines.")


class FlagError(errors.UserInputError):
  """A flag value is malformed."""


@dataclasses.dataclass(frozen=True)
class MakeTfrecordsConfig:
  """Everything one conversion needs, read once from flags.

  Attributes:
    format: registered source format name.
    output_dir: absolute local path or gs:// URL.
    source: the format's options (paths absolute).
    write: sharding, compression, workers, shuffle.
  """
  format: str
  output_dir: str
  source: base.SourceOptions
  write: writer.WriteOptions


def _positive_ints(flag: str, text: Optional[str], n: int, what: str) -> Optional[Tuple[int, ...]]:
  if text is None or text == "":
    return None
  try:
    values = tuple(int(v) for v in text.split(","))
  except ValueError:
    values = ()
  if len(values) != n or any(v < 1 for v in values):
    raise FlagError(f"--{flag} must be {what} ({n} positive integers), got {text!r}")
  return values


def _path(path: str) -> str:
  return config_lib.resolve_path(path) if path else path


def _delimiter(text: str) -> str:
  return "\t" if text in ("tab", "\\t") else text


def _missing(markers: Optional[list]) -> Tuple[str, ...]:
  if markers is None:
    return _SOURCE_DEFAULTS.missing
  return tuple(dict.fromkeys(["", *markers]))


def _schema(output_dir: str) -> str:
  if _SCHEMA.value or not _DESCRIBE.value:
    return _path(_SCHEMA.value)
  return output_dir.rstrip("/") + ".schema.json"


def config_from_flags() -> MakeTfrecordsConfig:
  """Reads the flags once into the frozen config.

  Raises:
    FlagError: a missing required flag or a malformed value.
  """
  if not _FORMAT.value:
    raise FlagError(f"--format is required: one of {', '.join(registry.names())}")
  if not _OUTPUT_DIR.value:
    raise FlagError("--output_dir is required (a local path or gs://bucket/prefix)")
  output_dir = _path(_OUTPUT_DIR.value)
  source = base.SourceOptions(
      images=_path(_IMAGES.value), labels=_path(_LABELS.value),
      eval_images=_path(_EVAL_IMAGES.value), eval_labels=_path(_EVAL_LABELS.value),
      input=_path(_INPUT.value), label_column=_LABEL_COLUMN.value,
      image_shape=_positive_ints("image_shape", _IMAGE_SHAPE.value, 3, "H,W,C"),
      image_size=_positive_ints("image_size", _IMAGE_SIZE.value, 2, "H,W"),
      channels=_CHANNELS.value, max_length=_MAX_LENGTH.value, max_vocab=_MAX_VOCAB.value,
      eval_fraction=_EVAL_FRACTION.value, seed=_SEED.value,
      delimiter=_delimiter(_DELIMITER.value), column_names=tuple(_COLUMN_NAMES.value),
      missing=_missing(_MISSING.value), columns=tuple(_COLUMNS.value),
      schema=_schema(output_dir), describe=_DESCRIBE.value, label_kind=_LABEL_KIND.value or "",
      label_map=tuple(_LABEL_MAP.value), weight_column=_WEIGHT_COLUMN.value,
      eval_input=_path(_EVAL_INPUT.value), vocab_top_k=_VOCAB_TOP_K.value,
      vocab_min_count=_VOCAB_MIN_COUNT.value, hash_threshold=_HASH_THRESHOLD.value)
  write = writer.WriteOptions(
      num_shards=_NUM_SHARDS.value,
      compression="" if _COMPRESSION.value == "none" else _COMPRESSION.value,
      workers=_WORKERS.value, shuffle_seed=_SEED.value if _SHUFFLE.value else None,
      progress_interval_s=_PROGRESS_INTERVAL.value, staging_dir=_path(_STAGING_DIR.value))
  return MakeTfrecordsConfig(format=_FORMAT.value, output_dir=output_dir, source=source,
                             write=write)
