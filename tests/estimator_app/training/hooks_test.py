"""Tests of the training hooks on real (tiny) Estimator runs."""

import glob
import os
import time

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention
from estimator_app.training import hooks
from input_fns import errors
from tests.testing import tiny_estimator


def _index_steps(model_dir):
  return sorted(checkpoint_info.checkpoint_step(p[:-len(".index")])
                for p in glob.glob(os.path.join(model_dir, "*.index")))


def _scalar_tags(model_dir):
  tags = {}
  for path in glob.glob(os.path.join(model_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        tags.setdefault(v.tag, []).append((event.step, v.simple_value))
  return tags


class StepLoggingHookTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("lr_from_summary", True), ("no_lr_in_graph", False))
  def test_logs_loss_lr_throughput_and_step_time(self, summarize_lr):
    model_dir = self.create_tempdir().full_path
    lines = []
    hook = hooks.StepLoggingHook(every_n_steps=5, batch_size=16, output_dir=model_dir,
                                 log_fn=lines.append)
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=100, learning_rate=0.05,
                               summarize_lr=summarize_lr)
    est.train(tiny_estimator.input_fn(), max_steps=21, hooks=[hook])
    # The first run is logged, then every 5 global steps; a line is labelled with the global
    # step after its run.
    steps = [int(l.split()[1].rstrip(",")) for l in lines]
    self.assertEqual(steps, [1, 6, 11, 16, 21])
    self.assertRegex(lines[-1], rf"^step {steps[-1]} 0:\d\d elapsed, [\d,]+ ex/s, "
                                r"\d+\.\d\d ms/step, loss \d")
    if summarize_lr:
      self.assertRegex(lines[-1], r", lr 0\.05$")
      self.assertAllClose(hook.last_record["learning_rate"], 0.05)
    else:
      self.assertNotIn(" lr ", lines[-1])
      self.assertNotIn("learning_rate", hook.last_record)
    record = hook.last_record
    self.assertAllClose(record["examples_per_sec"], 16 * 1000.0 / record["step_time_ms"],
                        rtol=1e-6)
    tags = _scalar_tags(model_dir)
    self.assertEqual([s for s, _ in tags["examples_per_sec"]], steps[1:])
    self.assertIn("step_time_ms", tags)
    # The model's own summary already carries the learning rate: no second series then.
    lr_steps = [s for s, _ in tags.get("learning_rate", [])]
    if summarize_lr:
      self.assertEqual(lr_steps, sorted(set(lr_steps)))  # one series, not two
    else:
      self.assertEqual(lr_steps, [])

  def test_explicit_tensor_names_and_bad_name(self):
    model_dir = self.create_tempdir().full_path
    lines = []
    hook = hooks.StepLoggingHook(every_n_steps=2, loss="sparse_softmax_cross_entropy_loss/value",
                                 learning_rate="Const", log_fn=lines.append)
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=100, learning_rate=0.25)
    est.train(tiny_estimator.input_fn(), max_steps=3, hooks=[hook])
    self.assertLen(lines, 2)
    self.assertIn(", lr 0.25", lines[-1])
    self.assertGreater(hook.last_record["loss"], 0.0)
    bad = hooks.StepLoggingHook(every_n_steps=2, loss="no_such_tensor")
    with self.assertRaisesRegex(errors.UserInputError, "no tensor named 'no_such_tensor:0'"):
      est.train(tiny_estimator.input_fn(), max_steps=5, hooks=[bad])

  def test_progress_has_total_percent_eta_and_best(self):
    lines = []
    hook = hooks.StepLoggingHook(every_n_steps=10, batch_size=16, log_fn=lines.append,
                                 total_steps=40, best=lambda: "best accuracy 0.9")
    est = tiny_estimator.estimator(self.create_tempdir().full_path, save_checkpoints_steps=100,
                                   learning_rate=0.05)
    est.train(tiny_estimator.input_fn(), max_steps=40, hooks=[hook])
    # The cadence, then the last step's own line (off the cadence: a run ends saying 100%).
    self.assertEqual([l.split()[1] for l in lines], ["1/40", "11/40", "21/40", "31/40", "40/40"])
    self.assertTrue(lines[-1].startswith("step 40/40 (100%) 0:"), lines[-1])
    self.assertNotIn("ETA", lines[-1])
    self.assertTrue(lines[0].startswith("step 1/40 (2%) 0:"), lines[0])
    self.assertNotIn("ETA", lines[0])  # nothing to extrapolate from yet
    self.assertRegex(lines[2], r"^step 21/40 \(52%\) 0:\d\d elapsed, ETA 0:\d\d, ")
    self.assertTrue(all(l.endswith(", best accuracy 0.9") for l in lines), lines)
    # ETA = wall seconds per step since the first line x steps left: seconds at most here.
    self.assertRegex(lines[3], r", ETA 0:0\d, ")

  def test_logs_at_least_every_max_quiet_secs(self):
    lines = []
    # A cadence the run never reaches: only the time rule logs after the first line.
    hook = hooks.StepLoggingHook(every_n_steps=1000, log_fn=lines.append, max_quiet_secs=0.0)
    est = tiny_estimator.estimator(self.create_tempdir().full_path, save_checkpoints_steps=100,
                                   learning_rate=0.05)
    est.train(tiny_estimator.input_fn(), max_steps=5, hooks=[hook])
    self.assertEqual([l.split()[1].rstrip(",") for l in lines], ["1", "2", "3", "4", "5"])
    lines.clear()
    quiet = hooks.StepLoggingHook(every_n_steps=1000, log_fn=lines.append)  # default 15 s
    est.train(tiny_estimator.input_fn(), max_steps=10, hooks=[quiet])
    self.assertEqual([l.split()[1].rstrip(",") for l in lines], ["6", "10"])  # first and last

  def test_rejects_bad_cadence(self):
    with self.assertRaisesRegex(errors.UserInputError, "every_n_steps must be >= 1, got 0"):
      hooks.StepLoggingHook(every_n_steps=0)


class QuickEvalHookTest(tf.test.TestCase):

  def test_due_between_full_evaluations_only(self):
    def due(every, full, total):
      return [s for s in range(total + 1) if hooks.quick_eval_due(s, every, full, total)]
    self.assertEqual(due(250, 500, 2000), [250, 750, 1250, 1750])  # the main job
    # 1500 steps: full every 375, quick every 187: the midpoints, not 1-4 steps before a full.
    self.assertEqual(due(187, 375, 1500), [187, 561, 935, 1309])
    self.assertEqual(due(10, 0, 30), [10, 20])  # no checkpoints: not at the end either

  def test_evaluates_between_checkpoints_only(self):
    est = tiny_estimator.estimator(self.create_tempdir().full_path, save_checkpoints_steps=100,
                                   learning_rate=0.05)
    lines = []
    hook = hooks.QuickEvalHook(hooks.TrainingClock(), est, tiny_estimator.input_fn(training=False),
                               steps=2, name="quick", every_n_steps=5, skip_multiples_of=10,
                               total_steps=30, examples=32, log_fn=lines.append)
    est.train(tiny_estimator.input_fn(), max_steps=30, hooks=[hook])
    # Not at the first step, not at multiples of the checkpoint cadence (full evaluations
    # there), not at the end (the final checkpoint is fully evaluated).
    self.assertEqual(hook.evaluated_steps, [5, 15, 25])
    self.assertLen(lines, 3)
    self.assertRegex(lines[0], r"^eval 5/30 quick \(32 ex\): accuracy \d\.\d{4} loss ")
    self.assertTrue(tf.io.gfile.glob(os.path.join(est.model_dir, "eval_quick", "events.*")))


  def test_each_quick_evaluation_equals_the_stock_evaluation_of_those_weights(self):
    # Checkpoints at the quick steps, so the stock Estimator.evaluate can see the same weights
    # the hook copied from the training session into its one kept evaluation session.
    model_dir = self.create_tempdir().full_path
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=5, keep_checkpoint_max=10,
                                   learning_rate=0.05)
    results = []
    eval_fn = tiny_estimator.input_fn(n=48, batch_size=16, training=False, seed=4)
    hook = hooks.QuickEvalHook(hooks.TrainingClock(), est, eval_fn, steps=2, name="quick",
                               every_n_steps=5, total_steps=20, examples=32,
                               log_fn=results.append)
    est.train(tiny_estimator.input_fn(), max_steps=20, hooks=[hook])
    self.assertEqual(hook.evaluated_steps, [5, 10, 15])
    quick = {int(step): tags for step, tags in _eval_scalars(est.eval_dir("quick")).items()}
    self.assertEqual(sorted(quick), [5, 10, 15])
    losses = set()
    for step in (5, 10, 15):
      stock = est.evaluate(eval_fn, steps=2, checkpoint_path=os.path.join(
          model_dir, f"model.ckpt-{step}"), name="stock")
      self.assertAllClose(quick[step]["loss"], stock["loss"], rtol=1e-6)
      self.assertAllClose(quick[step]["accuracy"], stock["accuracy"], rtol=1e-6)
      losses.add(round(float(stock["loss"]), 6))
    self.assertLen(losses, 3)  # three different weights, each evaluated as its own


def _eval_scalars(event_dir):
  """{step: {tag: value}} of the scalar summaries in an eval directory."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(event.step, {})[value.tag] = value.simple_value
  return out


class _SlowEvaluation(tf.estimator.CheckpointSaverListener):
  """Stands for train_and_evaluate's listener: evaluates (sleeps) in after_save."""

  def __init__(self, secs):
    self._secs = secs

  def after_save(self, session, global_step_value):
    time.sleep(self._secs)


class TrainingClockTest(tf.test.TestCase):

  def test_clock_stops_while_paused(self):
    now = [100.0]
    clock = hooks.TrainingClock(time_fn=lambda: now[0])
    now[0] += 5  # set-up: not training
    self.assertTrue(clock.paused)
    clock.resume()
    now[0] += 2
    clock.pause()
    clock.pause()  # idempotent: the pause started at 107 still counts from there
    now[0] += 30
    self.assertEqual(clock.seconds(), 2.0)
    clock.resume()
    clock.resume()
    now[0] += 1
    self.assertEqual(clock.seconds(), 3.0)
    self.assertFalse(clock.paused)

  def test_breakdown_charges_each_phase(self):
    now = [0.0]
    clock = hooks.TrainingClock(time_fn=lambda: now[0])
    for phase, secs in ((hooks.SETUP, 4), (hooks.TRAIN, 10), (hooks.EVALS, 3),
                        (hooks.EXPORTS, 2), (hooks.TRAIN, 5), (hooks.EVALS, 1)):
      if phase == hooks.TRAIN:
        clock.resume()
      else:
        clock.pause(phase)
      now[0] += secs
    self.assertEqual(clock.breakdown(), {hooks.SETUP: 4, hooks.TRAIN: 15, hooks.EVALS: 4,
                                         hooks.EXPORTS: 2})
    self.assertEqual(clock.elapsed(), 25)
    self.assertEqual(hooks.format_duration(25), "0:25")
    self.assertEqual(hooks.format_duration(3725.4), "1:02:05")

  def test_eval_line(self):
    self.assertEqual(
        hooks.format_eval("full", 500, 2000, 359, {"accuracy": 0.98329, "average_loss": 0.17,
                                                   "loss": 0.55}, new_best=True),
        "eval 500/2000 full (359 ex): accuracy 0.9833 loss 0.1700 new best")
    self.assertEqual(hooks.format_eval("quick", 250, None, None, {"loss": 0.5}),
                     "eval 250 quick: loss 0.5000")

  def test_logged_throughput_leaves_out_evaluations_between_steps(self):
    # A checkpoint (and a 1.5 s "evaluation") every 5 steps, a line every 5 steps. Without
    # the paused clock each interval would last >= 1.5 s, a step >= 300 ms; the tiny MLP
    # takes a few ms per step even on a loaded 2-core machine.
    for paused in (True, False):
      clock = hooks.TrainingClock()
      clock.resume()
      records = []
      hook = hooks.StepLoggingHook(every_n_steps=5, batch_size=16, clock=clock,
                                   log_fn=lambda line, h=None: None)
      listeners = ([hooks.PauseClockListener(clock)] if paused else []) + [_SlowEvaluation(1.5)]
      est = tiny_estimator.estimator(self.create_tempdir().full_path, save_checkpoints_steps=5,
                                 learning_rate=0.05)
      original = hook.after_run

      def after_run(run_context, run_values, original=original, hook=hook, records=records):
        before = hook.last_record
        original(run_context, run_values)
        if hook.last_record is not before:
          records.append(hook.last_record)
      hook.after_run = after_run
      est.train(tiny_estimator.input_fn(), max_steps=16, hooks=[hook], saving_listeners=listeners)
      step_times = [r["step_time_ms"] for r in records if "step_time_ms" in r]
      self.assertLen(step_times, 3)
      if paused:
        self.assertLess(max(step_times), 100.0, step_times)
      else:  # the same run without the pause: the sleep is in the figure
        self.assertGreater(min(step_times), 300.0, step_times)


class NanGuardHookTest(tf.test.TestCase):

  def test_absurd_learning_rate_stops_and_no_checkpoint_is_written_after_error(self):
    model_dir = self.create_tempdir().full_path
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=1000, learning_rate=1e30)
    with self.assertRaises(hooks.NonFiniteLossError) as cm:
      est.train(tiny_estimator.input_fn(), max_steps=50, hooks=[hooks.NanGuardHook(model_dir)])
    message = str(cm.exception)
    self.assertRegex(message, r"^loss became (NaN|Inf) at step [1-9]\d*; the last good checkpoint "
                              r"model\.ckpt-0 is kept as latest in ")
    self.assertIn("lower --learning_rate (now 1e+30)", message)
    # The Estimator saved ckpt-0 at start; on the exception path its CheckpointSaverHook.end()
    # is skipped, so no final checkpoint with the diverged weights appears.
    self.assertEqual(_index_steps(model_dir), [0])
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0")

  def test_divergence_mid_run_retires_every_checkpoint_from_the_bad_step(self):
    model_dir = self.create_tempdir().full_path
    # Saving every step makes the Estimator's saver (which runs before TrainSpec hooks) write
    # the finite-but-huge weights that produce the first Inf/NaN loss and the NaN weights after.
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=1, keep_checkpoint_max=100,
                               learning_rate=0.05, blowup_step=6)
    eval_in = tiny_estimator.input_fn(n=32, training=False)
    exporter = retention.BestCheckpointExporter("loss", higher_is_better=True, keep=100)
    with self.assertRaises(hooks.NonFiniteLossError) as cm:
      tf.estimator.train_and_evaluate(
          est, tf.estimator.TrainSpec(tiny_estimator.input_fn(), max_steps=30,
                                      hooks=[hooks.NanGuardHook(model_dir)]),
          tf.estimator.EvalSpec(eval_in, steps=None, throttle_secs=0, exporters=[exporter]))
    bad_step = int(str(cm.exception).split(" at step ")[1].split(";")[0])
    # piecewise_constant makes lr 1e30 for global steps > 6: the update made at step 7 gives
    # huge (still finite) weights at step 8, whose loss is not finite; step 9's weights are NaN.
    self.assertEqual(bad_step, 8)
    self.assertIn(f"the last good checkpoint model.ckpt-{bad_step - 1} is kept as latest",
                  str(cm.exception))
    self.assertIn("2 later checkpoint(s) moved to", str(cm.exception))
    latest = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(checkpoint_info.checkpoint_step(latest), bad_step - 1)
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertEqual([checkpoint_info.checkpoint_step(p) for p in state.all_model_checkpoint_paths],
                     list(range(0, bad_step)))
    self.assertEqual(_index_steps(model_dir), list(range(0, bad_step)))
    reader = tf.train.load_checkpoint(latest)
    for name in tiny_estimator.VARIABLES:
      self.assertTrue(np.all(np.isfinite(reader.get_tensor(name))), name)
    retired = sorted(os.path.basename(p) for p in
                     glob.glob(os.path.join(model_dir, "nonfinite", "*.index")))
    self.assertEqual(retired, [f"model.ckpt-{bad_step}.index", f"model.ckpt-{bad_step + 1}.index"])
    nan_weights = tf.train.load_checkpoint(os.path.join(model_dir, "nonfinite",
                                                        f"model.ckpt-{bad_step + 1}"))
    self.assertFalse(np.all(np.isfinite(nan_weights.get_tensor("hidden/kernel"))))
    # The evaluation of the NaN checkpoint ran (inside the saver) but was not kept as a best one.
    kept = [e["global_step"] for e in retention.read_best_index(
        os.path.join(model_dir, "best"))["checkpoints"]]
    self.assertTrue(kept)
    self.assertLess(max(kept), bad_step + 1)
    # A rerun resumes from the good checkpoint.
    self.assertEqual(est.get_variable_value("global_step"), bad_step - 1)


class ProfileStepsHookTest(tf.test.TestCase):

  def test_profiles_the_requested_steps_into_model_dir(self):
    model_dir = self.create_tempdir().full_path
    hook = hooks.ProfileStepsHook(model_dir, start_step=3, num_steps=2)
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=100)
    est.train(tiny_estimator.input_fn(), max_steps=8, hooks=[hook])
    self.assertEqual(hook.profiled_steps, 2)
    traces = glob.glob(os.path.join(model_dir, "plugins", "profile", "*", "*.xplane.pb"))
    self.assertLen(traces, 1)
    with open(traces[0], "rb") as f:
      trace = f.read()
    self.assertIn(b"MatMul", trace)  # graph-mode ops are in the trace

    # Resumed past the window: nothing more is profiled.
    late = hooks.ProfileStepsHook(model_dir, start_step=3, num_steps=2)
    est.train(tiny_estimator.input_fn(), max_steps=10, hooks=[late])
    self.assertEqual(late.profiled_steps, 0)
    self.assertLen(glob.glob(os.path.join(model_dir, "plugins", "profile", "*")), 1)

  def test_rejects_bad_window(self):
    with self.assertRaisesRegex(errors.UserInputError, "count >= 1"):
      hooks.ProfileStepsHook("/unused", start_step=0, num_steps=0)


if __name__ == "__main__":
  tf.test.main()
