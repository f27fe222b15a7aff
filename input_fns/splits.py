"""Seeded, stratified train/eval splits for sources that come without an eval split."""

from typing import Dict

import numpy as np

from input_fns import errors

TRAIN = "train"
EVAL = "eval"


class SplitError(errors.UserInputError):
  """The requested split cannot be made (bad fraction, or it would leave a split empty)."""


def stratified_split(labels: np.ndarray, eval_fraction: float, seed: int) -> np.ndarray:
  """Assigns each example to TRAIN or EVAL, keeping class proportions.

  The eval size is round(N * eval_fraction); each class gets floor(n_c * eval_fraction) and
  the remaining places go to the classes with the largest remainders (ties broken by the
  seed), so small datasets still get an eval split of the requested size.

  Args:
    labels: int array [N].
    eval_fraction: fraction sent to EVAL, in [0, 1).
    seed: the same seed always gives the same assignment.

  Returns:
    A string array [N] of TRAIN / EVAL.

  Raises:
    SplitError: eval_fraction is outside [0, 1).
  """
  return np.where(_eval_mask(labels, eval_fraction, seed), EVAL, TRAIN).astype(object)


def _eval_mask(labels: np.ndarray, eval_fraction: float, seed: int) -> np.ndarray:
  """stratified_split as a bool array [N] (True = EVAL): one byte per example, so a table of
  10^8 rows splits without a Python object per row."""
  if not 0.0 <= eval_fraction < 1.0:
    raise SplitError(f"--eval_fraction must be in [0, 1), got {eval_fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  out = np.zeros(labels.shape, dtype=bool)
  classes, inverse = np.unique(labels, return_inverse=True)
  members = []
  for c in range(len(classes)):
    idx = np.flatnonzero(inverse == c)
    rng.shuffle(idx)
    members.append(idx)
  quota = np.array([len(m) for m in members]) * eval_fraction
  n_eval = np.floor(quota).astype(np.int64)
  extra = int(round(len(labels) * eval_fraction)) - int(n_eval.sum())
  if extra > 0:
    tie_break = rng.random(len(classes))
    order = np.lexsort((tie_break, -(quota - n_eval)))
    n_eval[order[:extra]] += 1
  for idx, n in zip(members, n_eval):
    out[idx[:n]] = True
  return out


def split_indices(labels: np.ndarray, eval_fraction: float, seed: int,
                  source: str = "the source") -> Dict[str, np.ndarray]:
  """Like stratified_split, as split name -> sorted example indices; empty splits omitted.

  Raises:
    SplitError: eval_fraction is outside [0, 1), or leaves the train split empty, or is
      > 0 but too small to leave any eval example from `source` (named in the message).
  """
  is_eval = _eval_mask(labels, eval_fraction, seed)
  out = {}
  for split, idx in ((TRAIN, np.flatnonzero(~is_eval)), (EVAL, np.flatnonzero(is_eval))):
    if len(idx):
      out[split] = idx
  if TRAIN not in out:
    raise SplitError(f"--eval_fraction={eval_fraction} of {len(labels)} examples in {source} "
                     f"leaves no training example")
  if eval_fraction > 0 and EVAL not in out:
    raise SplitError(f"--eval_fraction={eval_fraction} of {len(labels)} examples in {source} "
                     f"leaves no eval example; raise it or pass 0 for no eval split")
  return out
