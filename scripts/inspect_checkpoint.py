r"""Prints what a checkpoint holds: variables by group, shapes, dtypes, sizes, totals, global step.

  ./bazelw run //scripts:inspect_checkpoint -- --checkpoint=runs/digits
  ./bazelw run //scripts:inspect_checkpoint -- --checkpoint=runs/digits/model.ckpt-600 --json
  ./bazelw run //scripts:inspect_checkpoint -- --checkpoint=runs/digits --variables='dense.*kernel'

--checkpoint takes a directory (its latest checkpoint; every checkpoint in it is listed with
its step too, and the best ones kept in its best/ with their step and metric), a checkpoint
prefix, or one of a checkpoint's files. Relative paths are taken from the directory you ran the
command in. Variables are grouped into trainable ones, non-trainable model state (batch-norm
moving statistics), optimizer state (Adam m/v, momentum, beta powers) and bookkeeping
(global_step), with counts and totals per group.
"""

import dataclasses
import json
from typing import Optional

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import paths

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# config_from_flags() and describe() import the checkpoint library (and TensorFlow).

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A model_dir (latest checkpoint), a checkpoint prefix, or a checkpoint file.")
_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
_VARIABLES = flags.DEFINE_string("variables", None, "Only variables whose name matches this regex.")


@dataclasses.dataclass(frozen=True)
class InspectConfig:
  """What to inspect.

  Attributes:
    checkpoint: directory, prefix or checkpoint file, absolute.
    as_json: JSON instead of a table.
    variables: a name regex, or None for all variables.
  """
  checkpoint: str
  as_json: bool = False
  variables: Optional[str] = None


def config_from_flags() -> InspectConfig:
  """Reads the flags once into the config passed down.

  Raises:
    checkpoint_info.CheckpointError: --checkpoint is empty.
  """
  from estimator_app.checkpoints import info as checkpoint_info  # pylint: disable=g-import-not-at-top
  if not _CHECKPOINT.value:
    raise checkpoint_info.CheckpointError(
        "--checkpoint is required: a model_dir, a checkpoint prefix or a checkpoint file")
  return InspectConfig(checkpoint=paths.resolve_path(_CHECKPOINT.value),
                       as_json=_JSON.value, variables=_VARIABLES.value)


def describe(cfg: InspectConfig) -> str:
  """The text to print: a table (or JSON) of the checkpoint, and a directory's checkpoints and
  best kept ones.

  Raises:
    checkpoint_info.CheckpointError: not a checkpoint, unreadable, or a bad --variables regex.
  """
  from estimator_app.checkpoints import info as checkpoint_info  # pylint: disable=g-import-not-at-top
  from estimator_app.checkpoints import retention  # pylint: disable=g-import-not-at-top
  info = checkpoint_info.inspect(cfg.checkpoint, name_regex=cfg.variables)
  entries = checkpoint_info.listing_if_directory(cfg.checkpoint)
  best = retention.kept_best(cfg.checkpoint) if entries is not None else None
  if cfg.as_json:
    return json.dumps(checkpoint_info.to_dict(info, entries, best), indent=2)
  return checkpoint_info.format_table(info, entries, best)


def main(argv):
  del argv
  print(describe(config_from_flags()))


if __name__ == "__main__":
  flags.mark_flag_as_required("checkpoint")
  cli.run(main)
