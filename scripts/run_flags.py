"""Flags shared by the scripts that use a finished run: which run, which checkpoint, which data.

evaluate, predict and export all take these; defining them once keeps their names, defaults
and help identical and lets one test process import several of those scripts. Importing it
imports no TensorFlow, so those scripts answer --help and a bad flag at once.
"""

from typing import Optional

from absl import flags

from estimator_app import paths
from scripts import source_flags

# --checkpoint's keywords, as checkpoint_info.resolve names them (read from its source: that
# module imports TensorFlow).
_LATEST = source_flags.literal("estimator_app.checkpoints.info", "LATEST")
_BEST = source_flags.literal("estimator_app.checkpoints.info", "BEST")

MODEL_DIR = flags.DEFINE_string(
    "model_dir", "runs/digits", "The training run (holds config.json and checkpoints).")
CHECKPOINT = flags.DEFINE_string(
    "checkpoint", _LATEST, "'latest', 'best' (the best kept checkpoint in <model_dir>/best), or a "
    "checkpoint prefix or directory such as runs/digits/model.ckpt-400.")
DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Dataset directory holding manifest.json (default: the run's).")
SPLIT = flags.DEFINE_string("split", "eval", "Split of --data_dir.")


def model_dir() -> str:
  return paths.resolve_path(MODEL_DIR.value)


def checkpoint() -> str:
  """"latest", "best", or the user's path resolved where they typed it."""
  value = CHECKPOINT.value
  return value if value in (_LATEST, _BEST) else paths.resolve_path(value)


def data_dir() -> Optional[str]:
  return paths.resolve_path(DATA_DIR.value) if DATA_DIR.value else None
