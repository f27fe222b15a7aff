"""A tiny training process for the distribution and preemption tests.

Runs one task (local, or the task TF_CONFIG names) of a dnn on a digits dataset through
tf.estimator.train_and_evaluate, wired the way the runner wires estimator_app.training.distribution
and estimator_app.training.preemption: validated TF_CONFIG, strategies and session config in the
RunConfig, per-worker input sharding, the preemption hook, exports only on the chief.

  python distributed_driver.py '{"data_dir": ..., "model_dir": ..., "train_steps": 40, ...}'

It prints one line `RESULT {json}` when it finishes (task, global_step, eval metrics).

With "race_retention": true it forces the race an evaluator must survive: the chief pauses
after its first step until the evaluator has picked a checkpoint (the only one, model.ckpt-0)
and built its graph; the evaluator then waits, before restoring it, until the chief's
keep_checkpoint_max retention has deleted it.
"""

import json
import os
import sys
import time

import tensorflow as tf

from estimator_app.checkpoints import retention
from estimator_app.training import distribution
from estimator_app.training import hooks as hooks_lib
from estimator_app.training import preemption
from input_fns import errors
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from model_fns import model_fn as model_fn_lib
from model_fns import registry

DEFAULTS = dict(train_steps=40, batch_size=32, save_checkpoints_steps=20, learning_rate=0.1,
                optimizer="sgd", strategy="default", devices="", seed=1, step_sleep_secs=0.0,
                step_sleep_task="",
                max_worker_delay_secs=0, session_timeout_secs=60, scale_learning_rate=False,
                xla=False, precision="float32", steps_per_run=1, keep_checkpoint_max=5,
                race_retention=False)

_RACE_MARKER = "race_evaluator_picked"  # in model_dir: the evaluator holds this checkpoint
_RACE_TIMEOUT_SECS = 120


class _SleepHook(tf.estimator.SessionRunHook):
  """Makes each step slow enough for a test to signal the process mid-run."""

  def __init__(self, secs):
    self._secs = secs

  def after_run(self, run_context, run_values):
    time.sleep(self._secs)


class _StepsHook(tf.estimator.SessionRunHook):
  """Remembers the global step training started from (a resumed run starts past 0) and how
  many steps this process ran."""

  def __init__(self):
    self.first_step = None
    self.steps_run = 0

  def after_create_session(self, session, coord):
    self.first_step = int(session.run(tf.compat.v1.train.get_global_step()))

  def after_run(self, run_context, run_values):
    self.steps_run += 1


class _EvaluatedSteps(tf.estimator.SessionRunHook):
  """Collects the global step of every checkpoint evaluated through the EvalSpec."""

  def __init__(self):
    self.steps = []

  def after_create_session(self, session, coord):
    self.steps.append(int(session.run(tf.compat.v1.train.get_global_step())))


def _wait_until(condition, what):
  deadline = time.monotonic() + _RACE_TIMEOUT_SECS
  while not condition():
    if time.monotonic() > deadline:
      raise RuntimeError(f"race_retention: {what} did not happen in {_RACE_TIMEOUT_SECS} s")
    time.sleep(0.05)


class _ChiefWaitsForEvaluator(tf.estimator.SessionRunHook):
  """race_retention, chief: after the first step (model.ckpt-0 is saved by then), waits until
  the evaluator has picked that checkpoint, then trains on, deleting it through retention."""

  def __init__(self, model_dir):
    self._marker = os.path.join(model_dir, _RACE_MARKER)
    self._done = False

  def after_run(self, run_context, run_values):
    if not self._done:
      _wait_until(lambda: tf.io.gfile.exists(self._marker), "the evaluator's pick")
      self._done = True


class _EvaluatorHoldsUntilDeleted(tf.estimator.SessionRunHook):
  """race_retention, evaluator: in its first evaluation, after building the graph and before
  restoring, waits until the chief's retention has deleted the checkpoint being evaluated."""

  def __init__(self, model_dir):
    self._model_dir = model_dir
    self.held = None

  def begin(self):
    if self.held is not None:
      return
    prefix = tf.train.latest_checkpoint(self._model_dir)  # what the evaluator just picked
    self.held = os.path.basename(prefix)
    with tf.io.gfile.GFile(os.path.join(self._model_dir, _RACE_MARKER), "w") as f:
      f.write(self.held)
    _wait_until(lambda: not tf.io.gfile.exists(prefix + ".index"), f"deleting {prefix}")


class _ExportMarker(tf.estimator.Exporter):
  """Records which task ran the exporters (the tests check only the chief does)."""

  @property
  def name(self):
    return "marker"

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    tf.io.gfile.makedirs(export_path)
    path = os.path.join(export_path, f"{os.getpid()}.json")
    with tf.io.gfile.GFile(path, "w") as f:
      json.dump({"task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"), "checkpoint": checkpoint_path,
                 "final": bool(is_the_final_export)}, f)
    return path


def run(args):
  task = distribution.current_task()  # validated before anything starts
  dcfg = distribution.DistributionConfig(
      strategy=args["strategy"], devices=args["devices"],
      scale_learning_rate=args["scale_learning_rate"], xla=args["xla"],
      max_worker_delay_secs=args["max_worker_delay_secs"],
      session_timeout_secs=args["session_timeout_secs"])
  strategies = distribution.make_strategies(dcfg, task)
  train_distribute = strategies[0]
  distribution.check_batch_size(args["batch_size"], train_distribute)
  tf.keras.utils.set_random_seed(args["seed"])

  m = manifest_lib.read(args["data_dir"])
  num_workers, worker_index = distribution.per_worker_input(task, train_distribute)
  train_input = input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(
      batch_size=args["batch_size"], shuffle_buffer=0, seed=args["seed"],
      num_workers=num_workers, worker_index=worker_index), training=True)
  eval_input = input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(batch_size=256),
                                     training=False)
  model_def = registry.get("dnn")
  train_cfg = model_fn_lib.TrainConfig(
      optimizer=args["optimizer"], precision=args["precision"],
      steps_per_run=args["steps_per_run"],
      learning_rate=distribution.learning_rate(args["learning_rate"], dcfg, train_distribute))
  model_fn = model_fn_lib.build_model_fn(model_def, model_def.hparams_cls(), m.spec, train_cfg)
  run_config = tf.estimator.RunConfig(
      model_dir=args["model_dir"], tf_random_seed=args["seed"],
      save_checkpoints_steps=args["save_checkpoints_steps"], log_step_count_steps=10,
      keep_checkpoint_max=args["keep_checkpoint_max"],
      **distribution.run_config_kwargs(dcfg, task, strategies))
  estimator = tf.estimator.Estimator(model_fn, config=run_config)
  # As runner.train: the chief and the evaluator both evaluate the final checkpoint into
  # eval_dir, possibly in the same second; each task writes its own event file.
  distribution.own_event_files(task, [estimator.eval_dir()])

  hooks = [preemption.PreemptionHook(args["model_dir"],
                                     is_chief=distribution.writes_outputs(task))]
  first = _StepsHook()
  hooks.append(first)
  if args["steps_per_run"] > 1:  # as estimator.train_input_fn and runner.train_hooks do
    train_input = model_fn_lib.stacked_input_fn(train_input, args["steps_per_run"])
    hooks.append(hooks_lib.StopAtStepHook(args["train_steps"]))
  sleeps = not args["step_sleep_task"] or (task is not None and
                                           task.task_type == args["step_sleep_task"])
  if args["step_sleep_secs"] and sleeps:
    hooks.append(_SleepHook(args["step_sleep_secs"]))
  local = task is None
  evaluated = _EvaluatedSteps()
  eval_hooks = [evaluated]
  holder = None
  if args["race_retention"] and task is not None and task.is_chief:
    hooks.append(_ChiefWaitsForEvaluator(args["model_dir"]))
  if args["race_retention"] and task is not None and task.is_evaluator:
    holder = _EvaluatorHoldsUntilDeleted(args["model_dir"])
    eval_hooks.append(holder)
  exporters = [_ExportMarker()] if local else []  # in a cluster the chief exports at the end
  eval_spec = tf.estimator.EvalSpec(eval_input, steps=None, exporters=exporters,
                                    hooks=eval_hooks, **distribution.eval_spec_timing(task))
  if task is not None and task.is_evaluator:  # as runner.train: survives latest-K retention
    retention.evaluate_new_checkpoints(estimator, eval_spec, args["train_steps"])
    result = None
  else:
    result = tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(train_input, max_steps=args["train_steps"], hooks=hooks),
        eval_spec)
  metrics = None
  if local:
    metrics = result[0]
  elif task.is_chief:
    metrics, _ = distribution.final_evaluate_and_export(estimator, eval_input, [_ExportMarker()])
  out = {"task": task.name if task else "local",
         "global_step": int(estimator.get_variable_value("global_step"))
         if tf.train.latest_checkpoint(args["model_dir"]) else None,
         "metrics": {k: float(v) for k, v in (metrics or {}).items()
                     if k in ("loss", "accuracy", "global_step")},
         "first_step": first.first_step,
         "steps_run": first.steps_run,
         "input_part": [num_workers, worker_index],
         "evaluated": evaluated.steps,
         "held": holder.held if holder else None,
         "num_replicas": distribution.num_replicas(train_distribute)}
  return out


def main(argv):
  args = dict(DEFAULTS)
  args.update(json.loads(argv[1]))
  try:
    print("RESULT " + json.dumps(run(args)), flush=True)
  except errors.UserInputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main(sys.argv)
