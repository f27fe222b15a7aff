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

import collections
import math
import re
import time
from typing import Callable, Dict, List, Mapping, Optional, Union

import tensorflow as tf
from absl import logging
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import
from tensorflow_estimator.python.estimator import estimator as estimator_impl

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


TRAIN = "train"  # the TrainingClock phase of training steps
SETUP = "setup"  # from the clock's creation to the first step
EVALS = "evals"  # checkpoint writes, full and quick evaluations
EXPORTS = "exports"  # SavedModel exports with their validation, extra eval sets, best copies


class TrainingClock:
  """Where a run's wall time goes: training steps, and the phases that pause them.

  A monotonic clock in phases: it starts in SETUP; `resume()` switches to TRAIN (the next step
  starts), `pause(phase)` to another phase (an evaluation, an export) until the next
  `resume()` or `pause()`. `seconds()` is the time spent in TRAIN so far, `breakdown()` the
  seconds per phase, `elapsed()` the wall time since it was made. Shared by the hook that
  reports throughput and progress and by the things that pause it.
  """

  def __init__(self, time_fn: Callable[[], float] = time.monotonic):
    self._time = time_fn
    self._created = self._since = time_fn()
    self._phase = SETUP
    self._totals = collections.Counter()

  def _switch(self, phase: str) -> None:
    now = self._time()
    self._totals[self._phase] += now - self._since
    self._since, self._phase = now, phase

  def pause(self, phase: str = EVALS) -> None:
    """Stops the training time; charges what follows to `phase` (a no-op if already there)."""
    if phase != self._phase:
      self._switch(phase)

  def resume(self) -> None:
    if self._phase != TRAIN:
      self._switch(TRAIN)

  @property
  def paused(self) -> bool:
    return self._phase != TRAIN

  def breakdown(self) -> Dict[str, float]:
    """Seconds per phase so far (the current phase included)."""
    out = dict(self._totals)
    out[self._phase] = out.get(self._phase, 0.0) + self._time() - self._since
    return out

  def seconds(self) -> float:
    return self.breakdown().get(TRAIN, 0.0)

  def elapsed(self) -> float:
    return self._time() - self._created


def format_duration(seconds: float) -> str:
  """0:42, 12:05, 1:02:03."""
  seconds = max(0, int(round(seconds)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PauseClockListener(tf.estimator.CheckpointSaverListener):
  """Pauses a TrainingClock from the start of each checkpoint save until the next step.

  train_and_evaluate evaluates (and runs the exporters) in its own listener's after_save,
  which runs after this one's, so the clock is resumed by the next step (StepLoggingHook's
  before_run), not here.
  """

  def __init__(self, clock: TrainingClock):
    self._clock = clock

  def before_save(self, session, global_step_value):
    self._clock.pause(EVALS)


# The metrics a user watches, by label kind: multiclass accuracy; binary auc and accuracy;
# regression rmse and mae (model_fns/metrics.py). Shown in this order when present.
HEADLINE_METRICS = ("auc", "accuracy", "rmse", "mae")


def headline_metrics(metrics: Mapping[str, float]) -> List[str]:
  """["auc 0.9120", "accuracy 0.8510"]: the HEADLINE_METRICS an eval result has."""
  return [f"{name} {float(metrics[name]):.4f}" for name in HEADLINE_METRICS if name in metrics]


def format_eval(kind: str, step: int, total: Optional[int], examples: Optional[int],
                metrics: Mapping[str, float], new_best: bool = False) -> str:
  """`eval 500/2000 full (359 ex): accuracy 0.9833 loss 0.170 new best`.

  `loss` shown is the eval's `average_loss` (the unsmoothed, unregularized per-example
  cross-entropy) when it has one, else its `loss`.
  """
  where = f"{step}/{total}" if total else f"{step}"
  count = f" ({examples:,} ex)" if examples else ""
  parts = [f"eval {where} {kind}{count}:"] + headline_metrics(metrics)
  loss = metrics.get("average_loss", metrics.get("loss"))
  if loss is not None:
    parts.append(f"loss {loss:.4f}")
  if new_best:
    parts.append("new best")
  return " ".join(parts)


def quick_eval_due(step: int, every: int, full_every: int = 0,
                   total: Optional[int] = None) -> bool:
  """Whether a quick evaluation runs at global `step`: on its cadence `every`, but not where
  a full evaluation runs (multiples of `full_every`, the end) nor less than half a cadence
  before one (1500 steps, full every 375, quick every 187: at 187, 561, 935 and 1309, not at
  374, 748, 1122 and 1496, a step or four before a full evaluation)."""
  if step <= 0 or step % every:
    return False
  if full_every and (step % full_every == 0 or full_every - step % full_every < every / 2):
    return False
  return not (total and total - step < every / 2)


class QuickEvalHook(tf.estimator.experimental.InMemoryEvaluatorHook):
  """Quick validations between checkpoints: InMemoryEvaluatorHook on a step cadence of its own.

  It evaluates at global steps that are multiples of `every_n_steps` but not of
  `skip_multiples_of` (the checkpoint cadence: those steps get a full evaluation anyway) nor
  just before one (`quick_eval_due`), never at the run's first step nor at its end (the final
  checkpoint is fully evaluated), pauses the
  TrainingClock while it runs and logs one line per evaluation (`format_eval`).
  """

  def __init__(self, clock: TrainingClock, estimator, input_fn, steps: int, name: str,
               every_n_steps: int, steps_per_run: int = 1, skip_multiples_of: int = 0,
               total_steps: Optional[int] = None, examples: Optional[int] = None,
               log_fn: Callable[[str], None] = logging.info):
    super().__init__(estimator, input_fn, steps=steps, name=name, every_n_iter=1)
    self._clock = clock
    self._every = every_n_steps
    self._steps_per_run = steps_per_run
    self._skip = skip_multiples_of
    self._total = total_steps
    self._examples = examples
    self._log_fn = log_fn
    self.evaluated_steps = []

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()  # of the training graph
    super().begin()

  def after_create_session(self, session, coord):
    self._creating = True  # the base class evaluates here, before the first step: not us
    try:
      super().after_create_session(session, coord)
    finally:
      self._creating = False
    self._step = int(session.run(self._global_step))

  def _due(self, step: int) -> bool:
    return quick_eval_due(step, self._every, self._skip, self._total)

  def after_run(self, run_context, run_values):
    before = self._step
    self._step += self._steps_per_run
    # Every multiple of the cadence passed by this run (a run makes steps_per_run steps).
    if any(self._due(s) for s in range(before + 1, self._step + 1)):
      self._step = int(run_context.session.run(self._global_step))
      self._evaluate(run_context.session)

  def _evaluate(self, train_session):  # the one place the base class evaluates
    if getattr(self, "_creating", False):
      return
    self._clock.pause(EVALS)
    var_values = train_session.run(self._var_name_to_train_var)
    placeholder_to_value = {self._var_name_to_placeholder[n]: var_values[n] for n in var_values}
    if self._reusable():
      result = self._evaluate_in_kept_session(placeholder_to_value)
    else:
      def feed_variables(scaffold, session):
        del scaffold
        session.run(self._var_feed_op, feed_dict=placeholder_to_value)

      scaffold = tf.compat.v1.train.Scaffold(init_fn=feed_variables,
                                             copy_from_scaffold=self._scaffold)
      with self._graph.as_default():
        result = self._estimator._evaluate_run(  # pylint: disable=protected-access
            checkpoint_path=None, scaffold=scaffold, update_op=self._update_op,
            eval_dict=self._eval_dict, all_hooks=self._all_hooks, output_dir=self._eval_dir)
    self.evaluated_steps.append(self._step)
    self._log_fn(format_eval("quick", self._step, self._total, self._examples,
                             retention.scalars(result)))

  def _reusable(self) -> bool:
    """Whether the eval graph needs nothing but its input iterator and a step count (then one
    session serves every quick evaluation instead of a MonitoredSession each, ~1 s apiece)."""
    kinds = {type(h).__name__ for h in self._all_hooks}
    return kinds <= {"_DatasetInitializerHook", "_StopAfterNEvalsHook"} and not (
        self._scaffold.local_init_op is not None and self._scaffold.local_init_op
        is not tf.compat.v1.train.Scaffold.default_local_init_op)

  def _evaluate_in_kept_session(self, placeholder_to_value):
    if getattr(self, "_kept", None) is None:
      with self._graph.as_default():
        iterators = [h._iterator.initializer for h in self._all_hooks  # pylint: disable=protected-access
                     if type(h).__name__ == "_DatasetInitializerHook"]
        local_init = tf.compat.v1.local_variables_initializer()
        once = [tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()]
      session = tf.compat.v1.Session(
          graph=self._graph, config=self._estimator._session_config)  # pylint: disable=protected-access
      session.run(once)  # variables not copied from training, and lookup tables (once)
      self._kept = (session, [local_init] + iterators)
    session, per_eval = self._kept
    with self._graph.as_default():
      session.run(self._var_feed_op, feed_dict=placeholder_to_value)
      session.run(per_eval)
      batches = 0
      while self._steps is None or batches < self._steps:
        try:
          session.run(self._update_op)
        except tf.errors.OutOfRangeError:
          break
        batches += 1
      result = session.run(self._eval_dict)
    with context.graph_mode():  # the v1 FileWriter the Estimator's summary writer uses
      estimator_impl._write_dict_to_summary(  # pylint: disable=protected-access
          output_dir=self._eval_dir, dictionary=result,
          current_global_step=result[tf.compat.v1.GraphKeys.GLOBAL_STEP])
    return result

  def end(self, session):
    del session  # the final checkpoint gets the full evaluation
    kept = getattr(self, "_kept", None)
    if kept is not None:
      kept[0].close()
      self._kept = None


class StepLoggingHook(tf.estimator.SessionRunHook):
  """Progress: every N global steps (and at least every `max_quiet_secs`) one line, e.g.

  `step 600/2000 (30%) 0:42 elapsed, ETA 1:38, 2,950 ex/s, 16.9 ms/step, loss 0.55,
  lr 0.00238, best accuracy 0.983`

  where the step is the global step after the logged run (whose loss is shown); ex/s and
  ms/step are averages over the interval's training time (input pipeline and hooks included;
  checkpoint writes, evaluations and exports excluded when a shared `clock` is paused around
  them); elapsed is the wall time since the clock started, the ETA extrapolates this
  process's wall time per step (evaluations and exports included) to `total_steps`, and `best`
  (a callable) adds the best evaluation so far. With `output_dir` the figures go to
  TensorBoard as `examples_per_sec` and `step_time_ms` (and `learning_rate` when the model does
  not summarise it itself).
  """

  def __init__(self, every_n_steps: int = 100, batch_size: Optional[int] = None,
               loss: TensorOrName = None, learning_rate: TensorOrName = None,
               output_dir: Optional[str] = None,
               log_fn: Callable[[str], None] = logging.info, steps_per_run: int = 1,
               clock: Optional[TrainingClock] = None, total_steps: Optional[int] = None,
               best: Optional[Callable[[], Optional[str]]] = None,
               max_quiet_secs: float = 15.0):
    """Creates the hook.

    Args:
      every_n_steps: logging cadence in global steps (>= 1).
      batch_size: examples per step (global batch); None leaves out ex/s.
      loss: the loss tensor or its name; default `find_loss`.
      learning_rate: the learning-rate tensor or its name; default `find_learning_rate`.
      output_dir: write the figures as summaries here (usually model_dir); None: log only.
      log_fn: where lines go.
      steps_per_run: global steps each session.run makes.
      clock: the training clock the interval is timed with (resumed before every step);
        default a private one that is never paused (wall-clock time).
      total_steps: the run's last step (shows step/total, percent and ETA); None: no total.
      best: returns e.g. "best accuracy 0.983" (or None) for the end of each line.
      max_quiet_secs: log at least this often (wall time) even between cadence steps.

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
    self._total = total_steps
    self._best = best
    self._max_quiet = max_quiet_secs

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
    self._last_logged = None  # (global step, training seconds, wall seconds) of the last line
    self.last_record = None  # the figures of the last logged interval, for tests and callers

  def after_create_session(self, session, coord):
    self._step = int(session.run(self._global_step))
    self._first_line = None  # (step, wall seconds) of this session's first line: ETA's base

  def before_run(self, run_context):
    self._clock.resume()
    fetches = {}
    if self._loss is not None:
      fetches["loss"] = self._loss
    if self._lr is not None:
      fetches["lr"] = self._lr
    return tf.compat.v1.train.SessionRunArgs(fetches)

  def _due(self) -> bool:
    if self._last_logged is None:
      return True
    if self._step >= self._last_logged[0] + self._every:
      return True
    return self._clock.elapsed() - self._last_logged[2] >= self._max_quiet

  def after_run(self, run_context, run_values):
    # The global step fetched in the same run as its increment may be read before or after
    # it; counting runs decides the cadence, and a read after the run labels the line.
    self._step += self._steps_per_run
    if not self._due():
      return
    self._step = int(run_context.session.run(self._global_step))
    self._log(self._step, run_values.results)

  def _log(self, step: int, results: Mapping[str, float]) -> None:
    """One progress line (and its summaries) for `step`, with the fetched loss and lr."""
    now, wall = self._clock.seconds(), self._clock.elapsed()
    elapsed = steps = None
    if self._last_logged is not None:
      steps, elapsed = step - self._last_logged[0], now - self._last_logged[1]
    self._last_logged = (step, now, wall)
    record = {"step": step}
    if "loss" in results:
      record["loss"] = float(results["loss"])
    if "lr" in results:
      record["learning_rate"] = float(results["lr"])
    if elapsed and steps:
      record["step_time_ms"] = 1000.0 * elapsed / steps
      if self._batch_size:
        record["examples_per_sec"] = self._batch_size * steps / elapsed
    # The first step carries graph and session set-up: the ETA extrapolates from its line on.
    if self._first_line is None:
      self._first_line = (step, wall)
    done = step - self._first_line[0]
    if self._total and done > 0 and step < self._total:
      record["eta_secs"] = (wall - self._first_line[1]) / done * (self._total - step)
    self.last_record = record
    self._log_fn(self._line(record, wall))
    if self._writer is not None:
      values = [tf.compat.v1.Summary.Value(tag=k, simple_value=record[k])
                for k in ("examples_per_sec", "step_time_ms") if k in record]
      if self._write_lr and "learning_rate" in record:
        values.append(tf.compat.v1.Summary.Value(tag="learning_rate",
                                                 simple_value=record["learning_rate"]))
      if values:
        self._writer.add_summary(tf.compat.v1.Summary(value=values), step)

  def _line(self, record: Mapping[str, float], wall: float) -> str:
    step = record["step"]
    head = f"step {step}"
    if self._total:
      head += f"/{self._total} ({100 * step // self._total}%)"
    parts = [f"{head} {format_duration(wall)} elapsed"]
    if "eta_secs" in record:
      parts.append(f"ETA {format_duration(record['eta_secs'])}")
    if "examples_per_sec" in record:
      parts.append(f"{record['examples_per_sec']:,.0f} ex/s")
    if "step_time_ms" in record:
      parts.append(f"{record['step_time_ms']:.2f} ms/step")
    if "loss" in record:
      parts.append(f"loss {record['loss']:.4g}")
    if "learning_rate" in record:
      parts.append(f"lr {record['learning_rate']:.3g}")
    best = self._best() if self._best else None
    if best:
      parts.append(best)
    return ", ".join(parts)

  def end(self, session):
    # The last step gets its line even off the cadence: a run ends on a line saying 100%.
    step = int(session.run(self._global_step))
    if self._last_logged is not None and step > self._last_logged[0]:
      self._log(step, {})
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
