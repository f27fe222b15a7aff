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
_INPUT = flags.DEFINE_string("input", "", "csv: the CSV file; image_dir: the folder of class "
                             "sub-folders; text: the label<TAB>text file.")
_LABEL_COLUMN = flags.DEFINE_string("label_column", _SOURCE_DEFAULTS.label_column,
                                    "csv: the column holding the label.")
_IMAGE_SHAPE = flags.DEFINE_string("image_shape", None, "csv: H,W,C: the feature columns are "
                                   "pixels of this shape (else numeric features).")
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


def config_from_flags() -> MakeTfrecordsConfig:
  """Reads the flags once into the frozen config.

  Raises:
    FlagError: a missing required flag or a malformed value.
  """
  if not _FORMAT.value:
    raise FlagError(f"--format is required: one of {', '.join(registry.names())}")
  if not _OUTPUT_DIR.value:
    raise FlagError("--output_dir is required (a local path or gs://bucket/prefix)")
  source = base.SourceOptions(
      images=_path(_IMAGES.value), labels=_path(_LABELS.value),
      eval_images=_path(_EVAL_IMAGES.value), eval_labels=_path(_EVAL_LABELS.value),
      input=_path(_INPUT.value), label_column=_LABEL_COLUMN.value,
      image_shape=_positive_ints("image_shape", _IMAGE_SHAPE.value, 3, "H,W,C"),
      image_size=_positive_ints("image_size", _IMAGE_SIZE.value, 2, "H,W"),
      channels=_CHANNELS.value, max_length=_MAX_LENGTH.value, max_vocab=_MAX_VOCAB.value,
      eval_fraction=_EVAL_FRACTION.value, seed=_SEED.value)
  write = writer.WriteOptions(
      num_shards=_NUM_SHARDS.value,
      compression="" if _COMPRESSION.value == "none" else _COMPRESSION.value,
      workers=_WORKERS.value, shuffle_seed=_SEED.value if _SHUFFLE.value else None,
      progress_interval_s=_PROGRESS_INTERVAL.value, staging_dir=_path(_STAGING_DIR.value))
  return MakeTfrecordsConfig(format=_FORMAT.value, output_dir=_path(_OUTPUT_DIR.value),
                             source=source, write=write)
