"""Seeded, stratified train/eval splits for sources that come without an eval split."""

import numpy as np

TRAIN = "train"
EVAL = "eval"


def stratified_split(labels: np.ndarray, eval_fraction: float, seed: int) -> np.ndarray:
  """Assigns each example to TRAIN or EVAL, keeping class proportions.

  Args:
    labels: int array [N].
    eval_fraction: fraction of each class sent to EVAL, in [0, 1).
    seed: the same seed always gives the same assignment.

  Returns:
    A string array [N] of TRAIN / EVAL.

  Raises:
    ValueError: eval_fraction is outside [0, 1).
  """
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  out = np.full(labels.shape, TRAIN, dtype=object)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    n_eval = int(round(len(idx) * eval_fraction))
    out[idx[:n_eval]] = EVAL
  return out
