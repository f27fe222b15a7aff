"""The run loop end to end with its hooks and exporters wired in, on the embedded digits."""

import json
import os
import threading
import time

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from estimator_app import runner
from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention
from estimator_app.training import hooks


class _GatedExporter(tf.estimator.Exporter):
  """Records (name, checkpoint, start, end) of each export, which waits until `gate` is set;
  fails on the checkpoint named `fail`."""

  def __init__(self, name, log, gate, fail=None):
    self._name, self._log, self._gate, self._fail = name, log, gate, fail

  @property
  def name(self):
    return self._name

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    start = time.monotonic()
    # A timeout instead of a hang if the caller waits for its own export (no overlap at all).
    if not self._gate.wait(timeout=30):
      raise AssertionError("the export was never released: the caller waited for it")
    if checkpoint_path == self._fail:
      raise ValueError(f"validation failed for {checkpoint_path}")
    self._log.append((self._name, checkpoint_path, start, time.monotonic()))
    return export_path


class OverlappedExportsTest(tf.test.TestCase):

  def test_exports_run_beside_the_caller_one_checkpoint_at_a_time_in_order(self):
    log, gate, overlapped = [], threading.Event(), runner.OverlappedExports()
    latest = overlapped.wrap(_GatedExporter("latest", log, gate))
    best = overlapped.wrap(_GatedExporter("best", log, gate))
    self.assertEqual(latest.name, "latest")
    latest.export(None, "base", "ckpt-1", {}, False)
    best.export(None, "base", "ckpt-1", {}, False)
    self.assertEmpty(log)  # both calls returned while their exports wait at the gate
    gate.set()
    latest.export(None, "base", "ckpt-2", {}, False)
    # ckpt-2's export waited for both exports of ckpt-1, so they have finished already.
    self.assertEqual([(n, c) for n, c, _, _ in log], [("latest", "ckpt-1"), ("best", "ckpt-1")])
    overlapped.wait()
    self.assertEqual([c for _, c, _, _ in log], ["ckpt-1", "ckpt-1", "ckpt-2"])
    starts, ends = [e[2] for e in log], [e[3] for e in log]
    self.assertTrue(all(s >= e for s, e in zip(starts[1:], ends[:-1])))  # never two at once

  def test_a_failed_export_raises_at_the_next_wait(self):
    gate, overlapped = threading.Event(), runner.OverlappedExports()
    gate.set()
    exporter = overlapped.wrap(_GatedExporter("latest", [], gate, fail="ckpt-1"))
    exporter.export(None, "base", "ckpt-1", {}, False)  # returns: the failure is not known yet
    with self.assertRaisesRegex(ValueError, "validation failed for ckpt-1"):
      exporter.export(None, "base", "ckpt-2", {}, False)


class RunnerTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "digits")
    estimator_lib.load_dataset(cls.data_dir, create_default=True)

  def _cfg(self, model_dir=None, **sections):
    d = {"model": "dnn", "data": {"data_dir": self.data_dir},
         "run": {"model_dir": model_dir or self.create_tempdir().full_path, "train_steps": 40,
                 "save_checkpoints_steps": 20, "quick_eval_steps": 0, "log_every_steps": 10,
                 "export": False}}
    for section, values in sections.items():
      d.setdefault(section, {}).update(values)
    return config_lib.from_dict(d, "test")

  def test_early_stopping_fires_on_a_plateau(self):
    cfg = self._cfg(optimization={"learning_rate": 1e-12},  # a plateau: weights barely move
                    run={"train_steps": 2000, "save_checkpoints_steps": 10,
                         "early_stopping_metric": "accuracy",
                         "early_stopping_patience_steps": 20})
    result = runner.train(cfg)
    self.assertLess(result.global_step, 200)  # stopped long before 2000
    # Rerunning the same command does not train past the stopping point.
    again = runner.train(cfg)
    self.assertEqual(again.global_step, result.global_step)
    self.assertEqual(tf.train.latest_checkpoint(cfg.run.model_dir),
                     os.path.join(cfg.run.model_dir, f"model.ckpt-{result.global_step}"))

  def test_best_checkpoints_are_kept_apart_with_their_metrics(self):
    cfg = self._cfg(run={"train_steps": 60, "save_checkpoints_steps": 10,
                         "keep_checkpoint_max": 1, "keep_best": 2})
    runner.train(cfg)
    index = retention.read_best_index(os.path.join(cfg.run.model_dir, checkpoint_info.BEST_DIR))
    kept = index["checkpoints"]
    self.assertLen(kept, 2)
    values = [c["value"] for c in kept]
    self.assertEqual(values, sorted(values, reverse=True))
    # Latest-K kept only the newest checkpoint in model_dir; the best copies are restorable.
    best = checkpoint_info.best_checkpoint(os.path.join(cfg.run.model_dir, checkpoint_info.BEST_DIR))
    self.assertNotEmpty(tf.train.list_variables(best))

  @parameterized.named_parameters(("one_step_per_run", 1), ("two_steps_per_run", 2))
  def test_warm_start_from_another_run_reports_and_loads(self, steps_per_run):
    # The plan builds the one-step model whatever --steps_per_run is (with K > 1 it once
    # built it from the stacked [K, B, ...] input and crashed).
    source = self._cfg(run={"train_steps": 20})
    runner.train(source)
    target = self._cfg(run={"train_steps": steps_per_run, "save_checkpoints_steps": steps_per_run,
                            "warm_start_from": source.run.model_dir,
                            "warm_start_vars": "dnn/hidden_0/.*"},
                       optimization={"steps_per_run": steps_per_run})
    runner.train(target)
    with open(os.path.join(target.run.model_dir, "warm_start_report.json")) as f:
      report = json.load(f)
    self.assertIn("dnn/hidden_0/kernel", json.dumps(report))
    src = tf.train.latest_checkpoint(source.run.model_dir)
    # Step 0 of the new run starts from the source's hidden_0, not from a fresh init.
    first = os.path.join(target.run.model_dir, "model.ckpt-0")
    np.testing.assert_array_equal(tf.train.load_variable(first, "dnn/hidden_0/kernel"),
                                  tf.train.load_variable(src, "dnn/hidden_0/kernel"))
    self.assertFalse(np.array_equal(tf.train.load_variable(first, "dnn/logits/kernel"),
                                    tf.train.load_variable(src, "dnn/logits/kernel")))

  def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(self):
    cfg = self._cfg(optimization={"learning_rate": 1e30, "optimizer": "sgd"},
                    run={"train_steps": 50, "save_checkpoints_steps": 1})
    with self.assertRaisesRegex(hooks.NonFiniteLossError, r"loss became (NaN|Inf) at step \d+"):
      runner.train(cfg)
    latest = tf.train.latest_checkpoint(cfg.run.model_dir)
    for name, _ in tf.train.list_variables(latest):
      value = tf.train.load_variable(latest, name)
      if np.issubdtype(np.asarray(value).dtype, np.floating):
        self.assertTrue(np.all(np.isfinite(value)), f"{name} in {latest}")

  def test_exports_latest_best_and_final_even_after_early_stopping(self):
    cfg = self._cfg(optimization={"learning_rate": 1e-12},
                    run={"train_steps": 500, "save_checkpoints_steps": 10, "export": True,
                         "exports_to_keep": 1, "early_stopping_metric": "accuracy",
                         "early_stopping_patience_steps": 10})
    result = runner.train(cfg)
    self.assertLess(result.global_step, 500)
    final = result.exports["final"]
    self.assertEqual(os.path.dirname(final), os.path.join(cfg.run.model_dir, "export", "final"))
    self.assertTrue(os.path.isfile(os.path.join(final, "saved_model.pb")))
    with open(final + ".validation.json") as f:
      self.assertTrue(json.load(f)["passed"])
    for name in ("latest", "best"):
      base = os.path.join(cfg.run.model_dir, "export", name)
      self.assertEqual([d for d in os.listdir(base) if d.isdigit()].__len__(), 1, base)

  def test_rerunning_a_finished_run_makes_no_new_export(self):
    cfg = self._cfg(run={"train_steps": 10, "save_checkpoints_steps": 10, "export": True})
    first = runner.train(cfg).exports["final"]
    self.assertEqual(runner.train(cfg).exports["final"], first)

  def test_diagnose_input_measures_and_gives_a_verdict(self):
    cfg = self._cfg()
    d = runner.diagnose_input(cfg, seconds=0.5)
    self.assertGreater(d.input_examples_per_sec, 0)
    self.assertGreater(d.model_examples_per_sec, 0)
    # The verdict printed is the one returned: the knobs only when it says input-bound.
    self.assertEqual("INPUT-BOUND" in d.advice, d.input_bound, d.advice)
    self.assertEqual("--cache" in d.advice, d.input_bound, d.advice)
    # The figures reach TensorBoard under the run's model_dir, as returned.
    written = {}
    log_dir = os.path.join(cfg.run.model_dir, "diagnose_input")
    for path in tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*")):
      for e in tf.compat.v1.train.summary_iterator(path):
        for v in e.summary.value:
          written[v.tag] = float(tf.make_ndarray(v.tensor))
    self.assertAllClose(written["diagnose_input/headroom"], d.headroom, rtol=1e-5)
    self.assertAllClose(written["diagnose_input/trained_examples_per_sec"],
                        d.trained_examples_per_sec, rtol=1e-5)

  def test_steps_per_run_keeps_every_cadence_in_global_steps(self):
    # 5 steps per session.run: the stock hooks count runs (or assume one step per run); every
    # cadence must still be in global steps, and training must stop at train_steps exactly.
    logged = []
    cfg = self._cfg(optimization={"steps_per_run": 5},
                    run={"train_steps": 60, "save_checkpoints_steps": 20, "log_every_steps": 10,
                         "quick_eval_steps": 10, "keep_checkpoint_max": 5})
    with tf.compat.v1.test.mock.patch.object(
        hooks.StepLoggingHook, "after_run",
        autospec=True, side_effect=_record_after(logged, hooks.StepLoggingHook.after_run)):
      result = runner.train(cfg)
    self.assertEqual(result.global_step, 60)
    state = tf.train.get_checkpoint_state(cfg.run.model_dir)
    self.assertEqual([int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths],
                     [0, 20, 40, 60])
    losses = sorted(step for step, tag in _events(cfg.run.model_dir) if tag == "loss")
    self.assertGreaterEqual(len(losses), 5)
    self.assertEqual(set(np.diff(losses)), {10}, losses)  # save_summary_steps = log_every = 10
    quick = {step for step, tag in _events(os.path.join(cfg.run.model_dir, "eval_" + estimator_lib.QUICK_EVAL))
             if tag == "accuracy"}
    # Between checkpoints only: 20, 40 and 60 get full evaluations, step 0 none at all.
    self.assertEqual(quick, {10, 30, 50})
    self.assertEqual([r["step"] for r in logged], [5, 15, 25, 35, 45, 55])

  def test_steps_per_run_must_divide_the_cadences(self):
    with self.assertRaisesRegex(
        config_lib.ConfigError,
        r"--steps_per_run=8 must divide --train_steps=60, --save_checkpoints_steps=20, "
        r"--log_every_steps=10 .* the largest steps_per_run that fits every cadence is 10"):
      self._cfg(optimization={"steps_per_run": 8}, run={"train_steps": 60})

  def test_bad_profile_steps(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "--profile_steps='9,3'"):
      config_lib.parse_profile_steps("9,3")
    self.assertEqual(config_lib.parse_profile_steps("5,8"), (5, 3))


def _events(logdir):
  """(step, tag) of every scalar in the event files directly in `logdir`."""
  return [(e.step, v.tag)
          for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))
          for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value]


def _record_after(records, after_run):
  """An after_run that also keeps the hook's logged figures whenever it logs a line."""
  def wrapped(hook, run_context, run_values):
    before = hook.last_record
    after_run(hook, run_context, run_values)
    if hook.last_record is not before:
      records.append(hook.last_record)
  return wrapped


if __name__ == "__main__":
  tf.test.main()
