"""Early stopping on an eval metric, with patience counted in global steps.

    hook = early_stopping.early_stopping_hook(estimator, "accuracy", higher_is_better=True,
                                              patience_steps=1000)
    tf.estimator.train_and_evaluate(estimator, TrainSpec(..., hooks=[hook]), eval_spec)

The decision reads the metric from the evaluation's event files (`estimator.eval_dir(name)`),
which `train_and_evaluate` writes on every new checkpoint; the stop itself goes through
`tf.estimator.experimental.make_early_stopping_hook` (the chief decides and flips a
`signal_early_stopping/STOP` variable that other workers poll). Training then ends like a
finished run: a last checkpoint is saved and evaluated.

Caveats from the underlying Estimator API: in a distributed run the separate evaluator task
is not told to stop; and the STOP variable lives in the checkpoints. Rerunning an early-stopped
run does not train: runner.train reads the same eval history first and goes straight to the
final evaluation and export.
"""

import collections
import dataclasses
import math
import os
from typing import Dict, Optional

import tensorflow as tf
from absl import logging

from input_fns import errors




def read_eval_metrics(eval_dir: str) -> Dict[int, Dict[str, float]]:
  """Returns {global_step: {tag: value}} of the scalar summaries in `eval_dir`, by step.

  A truncated event file (an evaluation being written right now) yields what it has so far.
  """
  by_step = collections.defaultdict(dict)
  if not tf.io.gfile.isdir(eval_dir):
    return {}
  for path in sorted(tf.io.gfile.glob(os.path.join(eval_dir, "events.out.tfevents.*"))):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.HasField("simple_value"):
            by_step[event.step][value.tag] = value.simple_value
    except tf.errors.DataLossError:
      logging.warning("skipping the unreadable rest of %s", path)
  return dict(sorted(by_step.items()))


@dataclasses.dataclass
class Decision:
  """The last check's outcome.

  Attributes:
    stop: whether stopping was requested.
    best_step: global step of the best evaluation so far (None before any).
    best_value: its metric value.
    last_step: global step of the newest evaluation.
  """
  stop: bool = False
  best_step: Optional[int] = None
  best_value: Optional[float] = None
  last_step: Optional[int] = None


class NoImprovement:
  """`should_stop_fn`: True once `metric` has not improved for `patience_steps` global steps.

  An evaluation improves on the best so far when it is better by more than `min_delta`.
  Evaluations before `min_steps` and NaN values are ignored. `decision` holds the last outcome.
  """

  def __init__(self, eval_dir: str, metric: str, higher_is_better: bool, patience_steps: int,
               min_steps: int = 0, min_delta: float = 0.0):
    self.eval_dir = eval_dir
    self.metric = metric
    self.higher_is_better = higher_is_better
    self.patience_steps = patience_steps
    self.min_steps = min_steps
    self.min_delta = min_delta
    self.decision = Decision()

  def __call__(self) -> bool:
    """Reads every evaluation so far and decides.

    Raises:
      errors.MetricNotFoundError: evaluations exist but none has `metric`.
    """
    results = read_eval_metrics(self.eval_dir)
    if results and not any(self.metric in m for m in results.values()):
      tags = sorted({t for m in results.values() for t in m})
      raise errors.MetricNotFoundError(
          f"early-stopping metric {self.metric!r} is not among the metrics evaluated in "
          f"{self.eval_dir} ({', '.join(tags)})")
    d = Decision()
    for step, metrics in results.items():  # ordered by step
      value = metrics.get(self.metric)
      if step < self.min_steps or value is None or math.isnan(value):
        continue
      d.last_step = step
      if d.best_value is None:
        improved = True
      else:
        gain = value - d.best_value if self.higher_is_better else d.best_value - value
        improved = gain > self.min_delta
      if improved:
        d.best_step, d.best_value = step, value
    d.stop = d.last_step is not None and d.last_step - d.best_step >= self.patience_steps
    if d.stop and not self.decision.stop:
      logging.info("early stopping: %s has not %s beyond %.6g (step %d) for %d steps "
                   "(patience %d, evaluations in %s)", self.metric,
                   "increased" if self.higher_is_better else "decreased", d.best_value,
                   d.best_step, d.last_step - d.best_step, self.patience_steps, self.eval_dir)
    self.decision = d
    return d.stop


def early_stopping_hook(estimator: tf.estimator.Estimator, metric: str, higher_is_better: bool,
                        patience_steps: int, eval_dir_name: Optional[str] = None,
                        min_steps: int = 0, min_delta: float = 0.0,
                        check_every_steps: Optional[int] = None) -> tf.estimator.SessionRunHook:
  """Returns a training hook that stops when `metric` stops improving.

  Args:
    estimator: the Estimator being trained (gives model_dir and is_chief).
    metric: an eval metric key, e.g. "accuracy" or "loss".
    higher_is_better: True for accuracy-like metrics, False for loss-like ones.
    patience_steps: stop once the best evaluation is this many global steps older than the
      newest one (>= 1).
    eval_dir_name: the EvalSpec's `name` whose evaluations to watch (None: the unnamed one,
      `model_dir/eval`).
    min_steps: ignore evaluations before this global step.
    min_delta: smaller gains do not count as improvement.
    check_every_steps: how often to read the eval events; default the checkpoint cadence
      (`save_checkpoints_steps`), i.e. once after each evaluation, else 100.

  Returns:
    A SessionRunHook for `TrainSpec(hooks=...)`; its `should_stop_fn` attribute is the
    `NoImprovement` predicate, whose `decision` tells why it stopped.

  Raises:
    errors.UserInputError: patience_steps < 1, or an empty metric name.
  """
  if patience_steps < 1:
    raise errors.UserInputError(f"early-stopping patience must be >= 1 step, got {patience_steps}")
  if not metric:
    raise errors.UserInputError("early stopping needs a metric name")
  every = check_every_steps or estimator.config.save_checkpoints_steps or 100
  predicate = NoImprovement(estimator.eval_dir(eval_dir_name), metric, higher_is_better,
                            patience_steps, min_steps, min_delta)
  hook = tf.estimator.experimental.make_early_stopping_hook(
      estimator, predicate, run_every_secs=None, run_every_steps=every)
  hook.should_stop_fn = predicate
  return hook
