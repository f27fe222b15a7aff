"""Training hooks: step logging, the NaN/Inf guard, on-request profiling, and the stop and
summary hooks of a train op that runs several steps per session.run (--steps_per_run).

Throughput counts training only: a `TrainingClock` is paused while a checkpoint is written and
evaluated and the exports are made (`PauseClockListener`, a saving listener) and while the
quick validation runs (`QuickEvalHook`); it runs again when the next step starts. Without it,
the interval holding an evaluation would report ~100 examples/s where training does ~3,000.

All are `tf.estimator.SessionRunHook`s for `TrainSpec(hooks=...)` (or
`Estimator.train(hooks=...)`). They find the graph tensors they need by themselves when the
graph is built, so they can be constructed before it exists:

- loss: the Estimator adds `EstimatorSpec.loss` to `GraphKeys.LOSSES` last, right before the
  hooks' `begin()`; `find_loss` takes the last entry.
- learning rate: `find_learning_rate` looks, in order, for the collection
  `LEARNING_RATE_COLLECTION`, a tensor named `learning_rate`, a scalar summary tagged or named
  `learning_rate` (`tf.compat.v1.summary.scalar("learning_rate", lr)` or a raw
  ScalarSummary op with that tag, as model_fns/summaries.py makes), and
  a scalar float op named `<scope>/learning_rate` (model_fns/optimization.py names its
  schedule's output `learning_rate`).
  A model_fn without any of these simply gets no learning-rate column.

Both can also be given explicitly, as a tensor or a tensor name.
"""

import math
import re
import time
from typing import Callable, Optional, Union

import tensorflow as tf
from absl import logging

from estimator_app.checkpoints import retention
from input_fns import errors

LEARNING_RATE_COLLECTION = "learning_rate"
_LR_NAME = "learning_rate"

TensorOrName = Union[tf.Tensor, str, None]


class NonFiniteLossError(errors.UserInputError):
  """The training loss became NaN or Inf; the message names the step and the kept checkpoint."""


def _resolve(graph: tf.Graph, tensor: TensorOrName) -> Optional[tf.Tensor]:
  if tensor is None or isinstance(tensor, tf.Tensor):
    return tensor
  name = tensor if ":" in tensor else tensor + ":0"
  try:
    return graph.get_tensor_by_name(name)
  except KeyError as e:
    raise errors.UserInputError(f"no tensor named {name!r} in the training graph") from e


def find_loss(graph: tf.Graph) -> Optional[tf.Tensor]:
  """Returns the training loss the Estimator registered (last of GraphKeys.LOSSES), or None."""
  losses = graph.get_collection(tf.compat.v1.GraphKeys.LOSSES)
  return losses[-1] if losses else None


def find_learning_rate(graph: tf.Graph) -> Optional[tf.Tensor]:
  """Returns the model's learning-rate tensor if the model_fn exposed one, else None."""
  found = graph.get_collection(LEARNING_RATE_COLLECTION)
  if found:
    return found[0]
  try:
    lr = graph.get_tensor_by_name(_LR_NAME + ":0")
    if lr.dtype.is_floating:  # not the string output of a summary op named learning_rate
      return lr
  except KeyError:
    pass
  summary = _lr_summary(graph)
  if summary is not None:
    return summary.inputs[1]
  for op in graph.get_operations():  # e.g. tf.identity(lr, name="learning_rate") in a scope
    if (op.name.endswith("/" + _LR_NAME) and len(op.outputs) == 1
        and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank == 0):
      return op.outputs[0]
  return None


def _lr_summary(graph: tf.Graph) -> Optional[tf.Operation]:
  """The model's scalar summary of the learning rate, recognised by its tag or its op name."""
  for op in graph.get_collection(tf.compat.v1.GraphKeys.SUMMARIES):
    op = getattr(op, "op", op)
    if op.type != "ScalarSummary":
      continue
    tag = tf.get_static_value(op.inputs[0])  # a 0-d array of bytes when the tag is a Const
    tag = tag.item() if hasattr(tag, "item") else tag
    tag = tag.decode() if isinstance(tag, bytes) else op.name
    if re.fullmatch(r"(.*/)?learning_rate(_\d+)?", tag) or re.fullmatch(
        r"(.*/)?learning_rate(_\d+)?", op.name):
      return op
  return None


def _has_lr_summary(graph: tf.Graph) -> bool:
  return _lr_summary(graph) is not None


class TrainingClock:
  """Seconds spent training: a monotonic clock that stops while paused.

  `pause()` stops it (idempotent); `resume()` starts it again (idempotent); `seconds()` is the
  running time since it was made. Shared by the hook that reports throughput and the things
  that pause it.
  """

  def __init__(self, time_fn: Callable[[], float] = time.monotonic):
    self._time = time_fn
    self._paused_total = time_fn()  # the start counts as time not trained
    self._paused_at: Optional[float] = None

  def pause(self) -> None:
    if self._paused_at is None:
      self._paused_at = self._time()

  def resume(self) -> None:
    if self._paused_at is not None:
      self._paused_total += self._time() - self._paused_at
      self._paused_at = None

  @property
  def paused(self) -> bool:
    return self._paused_at is not None

  def seconds(self) -> float:
    now = self._paused_at if self._paused_at is not None else self._time()
    return now - self._paused_total


class PauseClockListener(tf.estimator.CheckpointSaverListener):
  """Pauses a TrainingClock from the start of each checkpoint save until the next step.

  train_and_evaluate evaluates (and runs the exporters) in its own listener's after_save,
  which runs after this one's, so the clock is resumed by the next step (StepLoggingHook's
  before_run), not here.
  """

  def __init__(self, clock: TrainingClock):
    self._clock = clock

  def before_save(self, session, global_step_value):
    self._clock.pause()


class QuickEvalHook(tf.estimator.experimental.InMemoryEvaluatorHook):
  """InMemoryEvaluatorHook whose evaluations pause a TrainingClock until the next step."""

  def __init__(self, clock: TrainingClock, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._clock = clock

  def _evaluate(self, train_session):  # the one place the base class evaluates
    self._clock.pause()
    return super()._evaluate(train_session)


class StepLoggingHook(tf.estimator.SessionRunHook):
  """Every N global steps logs loss, learning rate, examples/s and step time.

  One line per interval, e.g.
  `step 200: loss=0.1834 lr=0.001 examples/s=15360.2 step_time=4.17ms`, where the step is the
  global step after the logged run (whose loss is shown), and examples/s and step time are
  averages over the interval's training time (input pipeline and hooks included; checkpoint
  writes, evaluations and exports excluded when a shared `clock` is paused around them).
  With `output_dir` the same figures go to TensorBoard as `examples_per_sec` and
  `step_time_ms` (and `learning_rate` when the model does not summarise it itself).
  """

  def __init__(self, every_n_steps: int = 100, batch_size: Optional[int] = None,
               loss: TensorOrName = None, learning_rate: TensorOrName = None,
               output_dir: Optional[str] = None,
               log_fn: Callable[[str], None] = logging.info, steps_per_run: int = 1,
               clock: Optional[TrainingClock] = None):
    """Creates the hook.

    Args:
      every_n_steps: logging cadence in global steps (>= 1).
      batch_size: examples per step (global batch); None leaves out examples/s.
      loss: the loss tensor or its name; default `find_loss`.
      learning_rate: the learning-rate tensor or its name; default `find_learning_rate`.
      output_dir: write the figures as summaries here (usually model_dir); None: log only.
      log_fn: where lines go.
      steps_per_run: global steps each session.run makes.
      clock: the training clock the interval is timed with (resumed before every step);
        default a private one that is never paused (wall-clock time).

    Raises:
      errors.UserInputError: every_n_steps < 1.
    """
    if every_n_steps < 1:
      raise errors.UserInputError(f"logging every_n_steps must be >= 1, got {every_n_steps}")
    self._every = every_n_steps
    self._batch_size = batch_size
    self._loss_arg = loss
    self._lr_arg = learning_rate
    self._output_dir = output_dir
    self._log_fn = log_fn
    self._steps_per_run = steps_per_run
    self._clock = clock or TrainingClock()

  def begin(self):
    graph = tf.compat.v1.get_default_graph()
    self._global_step = tf.compat.v1.train.get_global_step()
    if self._global_step is None:
      raise RuntimeError("StepLoggingHook needs a global step in the graph")
    self._loss = _resolve(graph, self._loss_arg) if self._loss_arg is not None else find_loss(graph)
    self._lr = (_resolve(graph, self._lr_arg) if self._lr_arg is not None
                else find_learning_rate(graph))
    self._write_lr = self._lr is not None and not _has_lr_summary(graph)
    self._writer = (tf.compat.v1.summary.FileWriterCache.get(self._output_dir)
                    if self._output_dir else None)
    self._last_logged = None  # (global step, training seconds) of the last line
    self.last_record = None  # the figures of the last logged interval, for tests and callers

  def after_create_session(self, session, coord):
    self._step = int(session.run(self._global_step))

  def before_run(self, run_context):
    self._clock.resume()
    fetches = {}
    if self._loss is not None:
      fetches["loss"] = self._loss
    if self._lr is not None:
      fetches["lr"] = self._lr
    return tf.compat.v1.train.SessionRunArgs(fetches)

  def after_run(self, run_context, run_values):
    # The global step fetched in the same run as its increment may be read before or after
    # it; counting runs decides the cadence, and a read after the run labels the line.
    self._step += self._steps_per_run
    if self._last_logged is not None and self._step < self._last_logged[0] + self._every:
      return
    step = self._step = int(run_context.session.run(self._global_step))
    r = run_values.results
    now = self._clock.seconds()
    elapsed = steps = None
    if self._last_logged is not None:
      steps, elapsed = step - self._last_logged[0], now - self._last_logged[1]
    self._last_logged = (step, now)
    record = {"step": step}
    if "loss" in r:
      record["loss"] = float(r["loss"])
    if "lr" in r:
      record["learning_rate"] = float(r["lr"])
    if elapsed and steps:
      record["step_time_ms"] = 1000.0 * elapsed / steps
      if self._batch_size:
        record["examples_per_sec"] = self._batch_size * steps / elapsed
    self.last_record = record
    parts = [f"step {step}:"]
    for key, label, fmt in (("loss", "loss", "{:.4g}"), ("learning_rate", "lr", "{:.4g}"),
                            ("examples_per_sec", "examples/s", "{:.1f}"),
                            ("step_time_ms", "step_time", "{:.2f}ms")):
      if key in record:
        parts.append(f"{label}=" + fmt.format(record[key]))
    self._log_fn(" ".join(parts))
    if self._writer is not None:
      values = [tf.compat.v1.Summary.Value(tag=k, simple_value=record[k])
                for k in ("examples_per_sec", "step_time_ms") if k in record]
      if self._write_lr and "learning_rate" in record:
        values.append(tf.compat.v1.Summary.Value(tag="learning_rate",
                                                 simple_value=record["learning_rate"]))
      if values:
        self._writer.add_summary(tf.compat.v1.Summary(value=values), step)

  def end(self, session):
    if self._writer is not None:
      self._writer.flush()


class StopAtStepHook(tf.estimator.SessionRunHook):
  """Stops training once the global step reaches `last_step`, reading it after every run.

  The Estimator's own StopAtStepHook takes the step fetched during a run plus one for the step
  after it, which holds for one step per session.run; with --steps_per_run K it would let
  training run K - 1 steps past max_steps. (TF's own multi-step hook does the same extra read.)
  """

  def __init__(self, last_step: int):
    self._last_step = last_step

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()

  def after_create_session(self, session, coord):
    if int(session.run(self._global_step)) >= self._last_step:
      coord.request_stop()

  def after_run(self, run_context, run_values):
    if int(run_context.session.run(self._global_step)) >= self._last_step:
      run_context.request_stop()


class MultiStepSummarySaverHook(tf.compat.v1.train.SummarySaverHook):
  """The training summaries every `save_steps` global steps when each run makes several.

  The stock SummarySaverHook predicts the next run's global step as the last one read plus
  one; with --steps_per_run K that prediction falls K - 1 behind every run and summaries come
  about K times too rarely. This one reads the global step after each run and predicts + K.
  """

  def __init__(self, steps_per_run: int, save_steps: int, output_dir: str):
    # The summary op is the one the Estimator's scaffold uses, found in begin() when the graph
    # exists; the base class only insists that something stands for it now.
    super().__init__(save_steps=save_steps, output_dir=output_dir, summary_op=[])
    self._steps_per_run = steps_per_run

  def begin(self):
    self._summary_op = tf.compat.v1.train.Scaffold.get_or_default(
        "summary_op", tf.compat.v1.GraphKeys.SUMMARY_OP, tf.compat.v1.summary.merge_all)
    super().begin()

  def after_run(self, run_context, run_values):
    super().after_run(run_context, run_values)
    if self._summary_writer:
      self._next_step = int(run_context.session.run(self._global_step_tensor)) + self._steps_per_run


class NanGuardHook(tf.estimator.SessionRunHook):
  """Stops training at the first NaN/Inf loss, keeping the last good checkpoint as latest.

  The loss of step k is computed from the weights saved as checkpoint k, so on a non-finite
  loss every checkpoint at step >= k is retired (moved to `model_dir/nonfinite/`) and the
  `checkpoint` state file points at the newest earlier one. That also covers the Estimator's
  CheckpointSaverHook, which runs before TrainSpec hooks and may already have saved the bad
  step. On the exception path the Estimator skips every hook's `end()`, so no final
  checkpoint is written after the error. Raises `NonFiniteLossError`, which scripts print as
  one line.

  Put it in `TrainSpec.hooks`; the Estimator's own NanTensorHook comes after TrainSpec hooks,
  so this one reports first.
  """

  def __init__(self, model_dir: str, loss: TensorOrName = None,
               learning_rate: TensorOrName = None, manage_checkpoints: bool = True):
    """Creates the guard.

    Args:
      model_dir: the Estimator's model_dir (whose checkpoints it keeps clean).
      loss: the loss tensor or its name; default `find_loss`.
      learning_rate: shown in the message when found; default `find_learning_rate`.
      manage_checkpoints: retire bad checkpoints; pass `run_config.is_chief` in
        distributed runs so only the chief touches the files.
    """
    self._model_dir = model_dir
    self._loss_arg = loss
    self._lr_arg = learning_rate
    self._manage = manage_checkpoints

  def begin(self):
    graph = tf.compat.v1.get_default_graph()
    self._loss = _resolve(graph, self._loss_arg) if self._loss_arg is not None else find_loss(graph)
    if self._loss is None:
      raise RuntimeError("NanGuardHook found no loss: pass loss= or run it under an Estimator")
    self._lr = (_resolve(graph, self._lr_arg) if self._lr_arg is not None
                else find_learning_rate(graph))
    self._global_step = tf.compat.v1.train.get_global_step()

  def before_run(self, run_context):
    fetches = {"loss": self._loss}
    if self._lr is not None:
      fetches["lr"] = self._lr
    return tf.compat.v1.train.SessionRunArgs(fetches)

  def after_run(self, run_context, run_values):
    loss = float(run_values.results["loss"])
    if math.isfinite(loss):
      return
    # Read after the update: the step that produced the loss is one less.
    step = int(run_context.session.run(self._global_step)) - 1
    kind = "NaN" if math.isnan(loss) else "Inf"
    if self._manage:
      kept, retired = retention.discard_checkpoints_from(self._model_dir, step)
    else:
      kept, retired = tf.train.latest_checkpoint(self._model_dir), []
    if kept:
      where = (f"the last good checkpoint {kept.rsplit('/', 1)[-1]} is kept as latest in "
               f"{self._model_dir}")
    else:
      where = f"no checkpoint before step {step} exists in {self._model_dir}, a rerun starts fresh"
    if retired:
      where += (f" ({len(retired)} later checkpoint(s) moved to "
                f"{self._model_dir.rstrip('/')}/{retention.QUARANTINE_DIR}/)")
    lr = run_values.results.get("lr")
    lr_text = f" (now {float(lr):g})" if lr is not None else ""
    raise NonFiniteLossError(
        f"loss became {kind} at step {step}; {where}; lower --learning_rate{lr_text}, "
        "clip gradients, or check the input data for NaN/Inf values")


class ProfileStepsHook(tf.estimator.SessionRunHook):
  """Profiles global steps [start_step, start_step + num_steps) into TensorBoard.

  Uses `tf.profiler.experimental.start/stop`, which also records graph-mode (Session) runs:
  op-level events plus the per-step markers the Estimator's train loop emits. The trace lands in
  `<logdir>/plugins/profile/<run>/<host>.xplane.pb`, which TensorBoard's Profile tab reads
  (it needs the tensorboard-plugin-profile package). A window already passed (a resumed run)
  is skipped with a warning; a profiler already running elsewhere is reported, not fatal.
  """

  def __init__(self, logdir: str, start_step: int, num_steps: int):
    """Creates the hook.

    Args:
      logdir: usually model_dir, so TensorBoard shows the profile beside the run.
      start_step: first global step profiled (>= 0).
      num_steps: how many steps (>= 1).

    Raises:
      errors.UserInputError: a negative start or num_steps < 1.
    """
    if start_step < 0 or num_steps < 1:
      raise errors.UserInputError(
          f"profile steps must be start >= 0 and count >= 1, got start={start_step}, "
          f"count={num_steps}")
    self._logdir = logdir
    self._start = start_step
    self._end = start_step + num_steps
    self._active = False
    self.profiled_steps = 0

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()

  def after_create_session(self, session, coord):
    self._step = int(session.run(self._global_step))
    if self._step >= self._end:
      logging.warning("profiling window [%d, %d) is already past (global step %d); not profiling",
                      self._start, self._end, self._step)

  def before_run(self, run_context):
    if not self._active and self._start <= self._step < self._end:
      try:
        tf.profiler.experimental.start(self._logdir)
        self._active = True
        logging.info("profiling steps %d..%d into %s", self._step, self._end - 1, self._logdir)
      except (tf.errors.AlreadyExistsError, tf.errors.UnavailableError) as e:
        logging.warning("cannot profile: %s", e)
        self._end = self._step  # give up on this window
    return None

  def after_run(self, run_context, run_values):
    if self._step >= self._end and not self._active:
      return  # past the window: no extra session.run per step
    self._step = int(run_context.session.run(self._global_step))
    if self._active:
      self.profiled_steps += 1
      if self._step >= self._end:
        self._stop()

  def end(self, session):
    if self._active:
      self._stop()

  def _stop(self):
    tf.profiler.experimental.stop()
    self._active = False
    logging.info("profile written under %s/plugins/profile", self._logdir)
