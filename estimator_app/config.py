"""The frozen experiment config that scripts build once from flags and pass down."""

import dataclasses
import json
import os
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one training run needs.

  Attributes:
    model: registered model name (model_fns/registry.py).
    data_dir: a dataset directory holding manifest.json.
    model_dir: where checkpoints, summaries and exports go.
    train_steps: global step to train to.
    batch_size: examples per training step.
    eval_batch_size: examples per evaluation step.
    learning_rate: base learning rate.
    optimizer: optimizer name.
    save_checkpoints_steps: checkpoint (and full evaluation) cadence in steps.
    seed: graph-level and input seed.
  """
  model: str = "dnn"
  data_dir: str = "data/digits"
  model_dir: str = "runs/digits"
  train_steps: int = 600
  batch_size: int = 64
  eval_batch_size: int = 256
  learning_rate: float = 1e-3
  optimizer: str = "adam"
  save_checkpoints_steps: int = 200
  seed: Optional[int] = 42

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def resolve_path(path: str, base: Optional[str] = None) -> str:
  """Makes a user path absolute against where the user typed the command.

  `bazel run` executes in the runfiles tree; it exports the user's directory as
  BUILD_WORKING_DIRECTORY. Remote paths (gs://...) are returned unchanged.
  """
  if "://" in path or os.path.isabs(path):
    return path
  base = base or os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
  return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def with_resolved_paths(cfg: ExperimentConfig, base: Optional[str] = None) -> ExperimentConfig:
  return dataclasses.replace(cfg, data_dir=resolve_path(cfg.data_dir, base),
                             model_dir=resolve_path(cfg.model_dir, base))


def to_dict(cfg: ExperimentConfig) -> Dict[str, Any]:
  return dataclasses.asdict(cfg)
