"""Tests of best-N checkpoint retention, of retiring checkpoints after a divergence, and of the
evaluator loop that survives latest-K retention."""

import glob
import json
import os
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention
from estimator_app.training import early_stopping
from input_fns import errors
from tests.testing import tiny_estimator


def _save_checkpoints(model_dir, steps):
  """Writes a real checkpoint per step with a variable `w` holding the step; returns prefixes."""
  prefixes = []
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable("w", [2], initializer=tf.compat.v1.zeros_initializer())
    saver = tf.compat.v1.train.Saver(max_to_keep=100, save_relative_paths=True)
    with tf.compat.v1.Session() as sess:
      for step in steps:
        sess.run(w.assign([step, step]))
        prefixes.append(saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=step))
  return prefixes


def _value(prefix):
  return tf.train.load_checkpoint(prefix).get_tensor("w")[0]


class BestCheckpointExporterTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("higher_is_better", True, [(30, 0.9), (50, 0.9), (20, 0.8)]),
      ("lower_is_better", False, [(10, 0.5), (20, 0.8), (40, 0.8)]))
  def test_ranks_prunes_and_stays_restorable(self, higher, expected):
    model_dir = self.create_tempdir().full_path
    prefixes = _save_checkpoints(model_dir, [10, 20, 30, 40, 50])
    values = [0.5, 0.8, 0.9, 0.8, 0.9]  # ties rank the earlier step first
    exporter = retention.BestCheckpointExporter("accuracy", higher, keep=3)
    best_dir = os.path.join(model_dir, "best")
    for p, v in zip(prefixes, values):
      exporter.offer(best_dir, p, {"accuracy": v, "loss": 1.0 - v, "global_step": 0})
    index = retention.read_best_index(best_dir)
    self.assertEqual(index["metric"], "accuracy")
    self.assertEqual(index["higher_is_better"], higher)
    self.assertEqual([(e["global_step"], e["value"]) for e in index["checkpoints"]],
                     [(s, v) for s, v in expected])
    self.assertAllClose(index["checkpoints"][0]["metrics"]["loss"], 1.0 - expected[0][1])
    # Exactly the kept ones are on disk, each with its own state file.
    self.assertCountEqual(tf.io.gfile.listdir(best_dir),
                          [f"ckpt-{s}" for s, _ in expected] + ["checkpoint", "best_index.json"])
    for step, _ in expected:
      copy = tf.train.latest_checkpoint(os.path.join(best_dir, f"ckpt-{step}"))
      self.assertEqual(os.path.basename(copy), f"model.ckpt-{step}")
      self.assertEqual(_value(copy), step)
    # The top-level state file names the best one, the way tools look for "the best".
    self.assertEqual(_value(checkpoint_info.best_checkpoint(best_dir)), expected[0][0])
    state = tf.train.get_checkpoint_state(best_dir)
    self.assertEqual([checkpoint_info.checkpoint_step(p) for p in state.all_model_checkpoint_paths],
                     [s for s, _ in reversed(expected)])

  def test_export_skips_nonfinite_and_names_a_missing_metric(self):
    model_dir = self.create_tempdir().full_path
    p10, p20 = _save_checkpoints(model_dir, [10, 20])
    est = tf.estimator.Estimator(tiny_estimator.model_fn, model_dir=model_dir)
    exporter = retention.BestCheckpointExporter("accuracy", True, keep=2)
    self.assertIsNone(exporter.export(est, "/unused", p10, {"accuracy": np.float32(0.3),
                                                            "loss": np.float32(np.nan)}, False))
    self.assertIsNone(exporter.export(est, "/unused", p10, {"accuracy": np.nan, "loss": 1.0},
                                      False))
    kept = exporter.export(est, "/unused", p20, {"accuracy": np.float32(0.3), "loss": 1.0,
                                                 "global_step": np.int64(20)}, True)
    self.assertEqual(kept, os.path.join(model_dir, "best", "ckpt-20", "model.ckpt-20"))
    self.assertEqual([e["global_step"] for e in retention.read_best_index(
        os.path.join(model_dir, "best"))["checkpoints"]], [20])
    with self.assertRaisesRegex(errors.UserInputError,
                                r"metric 'accuracy' is not among the evaluation's metrics "
                                r"\(global_step, loss\)"):
      exporter.export(est, "/unused", p20, {"loss": 1.0, "global_step": 20}, False)

  def test_reevaluating_a_kept_step_and_leftovers(self):
    model_dir = self.create_tempdir().full_path
    (p10,) = _save_checkpoints(model_dir, [10])
    best_dir = os.path.join(model_dir, "best")
    exporter = retention.BestCheckpointExporter("loss", False, keep=1)
    exporter.offer(best_dir, p10, {"loss": 0.5})
    os.makedirs(os.path.join(best_dir, ".tmp-interrupted"))  # a crash mid-copy
    os.makedirs(os.path.join(best_dir, "ckpt-99"))  # a copy whose index update never happened
    exporter.offer(best_dir, p10, {"loss": 0.4})  # e.g. the final evaluation of the same step
    index = retention.read_best_index(best_dir)
    self.assertEqual([(e["global_step"], e["value"]) for e in index["checkpoints"]], [(10, 0.4)])
    self.assertCountEqual(tf.io.gfile.listdir(best_dir),
                          ["ckpt-10", "checkpoint", "best_index.json"])

  def test_copy_of_a_missing_checkpoint_leaves_nothing(self):
    parent = self.create_tempdir().full_path
    with self.assertRaises(tf.errors.NotFoundError):
      retention.copy_checkpoint(os.path.join(parent, "model.ckpt-5"),
                                  os.path.join(parent, "best", "ckpt-5"))
    self.assertEqual(os.listdir(parent), [])

  def test_rejects_bad_settings(self):
    with self.assertRaisesRegex(errors.UserInputError, "keep >= 1, got 0"):
      retention.BestCheckpointExporter("accuracy", True, keep=0)

  @parameterized.named_parameters(("highest_loss_kept", True), ("lowest_loss_kept", False))
  def test_best_n_survives_latest_k_in_train_and_evaluate(self, higher):
    model_dir = self.create_tempdir().full_path
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=4, keep_checkpoint_max=2,
                               learning_rate=0.3)
    exporter = retention.BestCheckpointExporter("loss", higher, keep=2)
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(tiny_estimator.input_fn(), max_steps=24),
        tf.estimator.EvalSpec(tiny_estimator.input_fn(n=48, training=False), steps=None,
                              throttle_secs=0, exporters=[exporter]))
    latest_k = [checkpoint_info.checkpoint_step(p) for p in
                tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths]
    self.assertEqual(latest_k, [20, 24])
    evals = early_stopping.read_eval_metrics(est.eval_dir())
    self.assertEqual(sorted(evals), [4, 8, 12, 16, 20, 24])
    ranked = sorted(evals, key=lambda s: (-evals[s]["loss"] if higher else evals[s]["loss"], s))
    index = retention.read_best_index(os.path.join(model_dir, "best"))
    self.assertEqual([e["global_step"] for e in index["checkpoints"]], ranked[:2])
    self.assertAllClose([e["value"] for e in index["checkpoints"]],
                        [evals[s]["loss"] for s in ranked[:2]], rtol=1e-6)
    if higher:  # training lowers the loss: the highest-loss checkpoints are the early ones
      self.assertEqual(sorted(ranked[:2]), [4, 8])
    for step in ranked[:2]:
      copy = tf.train.latest_checkpoint(os.path.join(model_dir, "best", f"ckpt-{step}"))
      reader = tf.train.load_checkpoint(copy)
      self.assertEqual(reader.get_tensor("global_step"), step)
      if step not in latest_k:  # the latest-K policy deleted the original; the copy survives
        self.assertEmpty(glob.glob(os.path.join(model_dir, f"model.ckpt-{step}.*")))
      # The copy restores into the same model: evaluating it gives the recorded loss.
      metrics = est.evaluate(tiny_estimator.input_fn(n=48, training=False), checkpoint_path=copy,
                             name=f"best_{step}")
      self.assertAllClose(metrics["loss"], evals[step]["loss"], rtol=1e-5)


class DiscardCheckpointsFromTest(tf.test.TestCase):

  def test_retires_later_checkpoints_and_rewrites_state(self):
    model_dir = self.create_tempdir().full_path
    _save_checkpoints(model_dir, [0, 5, 10, 15])
    kept, retired = retention.discard_checkpoints_from(model_dir, 10)
    self.assertEqual(kept, os.path.join(model_dir, "model.ckpt-5"))
    self.assertEqual([os.path.basename(p) for p in retired], ["model.ckpt-10", "model.ckpt-15"])
    self.assertEqual(tf.train.latest_checkpoint(model_dir), kept)
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertNotIn(model_dir, f.read())  # paths stay relative
    self.assertCountEqual([os.path.basename(p) for p in
                           glob.glob(os.path.join(model_dir, "nonfinite", "*.index"))],
                          ["model.ckpt-10.index", "model.ckpt-15.index"])
    self.assertEqual(retention.discard_checkpoints_from(model_dir, 10), (kept, []))

  def test_nothing_left_removes_the_state_file(self):
    model_dir = self.create_tempdir().full_path
    _save_checkpoints(model_dir, [0])
    self.assertEqual(retention.discard_checkpoints_from(model_dir, 0)[0], None)
    self.assertIsNone(tf.train.latest_checkpoint(model_dir))
    self.assertEqual(retention.discard_checkpoints_from(self.create_tempdir().full_path, 0),
                     (None, []))


class _Chief:
  """Stands in for a chief that is ahead of the evaluator: checkpoints it "writes" on cue.

  A tiny Estimator is trained to `steps[-1]` up front, keeping every checkpoint; the state file
  is then rewound so only `visible` of them are there yet. `write_next(k)` does what the
  chief's Saver does when it saves k more with keep_checkpoint_max=`keep`: the state file
  first, then the files of checkpoints that fall out of the latest `keep`.
  """

  def __init__(self, model_dir, steps, visible, keep):
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=steps[1] - steps[0],
                               keep_checkpoint_max=len(steps) + 1)
    est.train(tiny_estimator.input_fn(), max_steps=steps[-1])
    self.model_dir = model_dir
    self.prefixes = [os.path.join(model_dir, f"model.ckpt-{s}") for s in steps]
    assert all(tf.io.gfile.exists(p + ".index") for p in self.prefixes), self.prefixes
    self.keep = keep
    self.visible = visible
    self._write_state()

  def _write_state(self):
    kept = [os.path.basename(p) for p in self.prefixes[:self.visible]][-self.keep:]
    retention.write_checkpoint_state(self.model_dir, kept[-1], kept)

  def write_next(self, k=1):
    self.visible = min(len(self.prefixes), self.visible + k)
    self._write_state()
    for p in self.prefixes[:max(0, self.visible - self.keep)]:
      for f in retention.checkpoint_files(p):
        tf.io.gfile.remove(f)


class _Evaluated(tf.estimator.SessionRunHook):
  """Records the global step of every restored checkpoint; calls on_begin before restoring."""

  def __init__(self, on_begin=None):
    self.steps = []
    self._on_begin = on_begin

  def begin(self):  # after the graph is built, before the session restores the checkpoint
    if self._on_begin:
      self._on_begin()

  def after_create_session(self, session, coord):
    self.steps.append(int(session.run(tf.compat.v1.train.get_global_step())))


class _Recorder(tf.estimator.Exporter):

  def __init__(self):
    self.calls = []

  @property
  def name(self):
    return "recorder"

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    self.calls.append((os.path.basename(checkpoint_path), int(eval_result["global_step"]),
                       is_the_final_export, export_path))


class EvaluateNewCheckpointsTest(tf.test.TestCase):
  """The evaluator task's loop (what runner.train runs on an evaluator)."""

  def setUp(self):
    super().setUp()
    self.model_dir = self.create_tempdir().full_path
    self.sleeps = []

  def _spec(self, hook, exporter, throttle_secs=5):
    return tf.estimator.EvalSpec(tiny_estimator.input_fn(n=32, training=False), steps=None,
                                 hooks=[hook], exporters=[exporter], start_delay_secs=0,
                                 throttle_secs=throttle_secs)

  def test_a_checkpoint_deleted_by_retention_before_its_restore_is_skipped(self):
    # The evaluator picks model.ckpt-4; while it builds its graph the chief saves 8 and 12
    # with keep_checkpoint_max=2, which deletes 4 before the evaluator restores it.
    chief = _Chief(self.model_dir, [0, 4, 8, 12], visible=2, keep=2)
    hook = _Evaluated(on_begin=lambda: chief.write_next(2) if not hook.steps else None)
    exporter = _Recorder()
    est = tiny_estimator.estimator(self.model_dir)
    with self.assertLogs(level="WARNING") as logs:
      result = retention.evaluate_new_checkpoints(est, self._spec(hook, exporter), 12,
                                                    sleep=self.sleeps.append)
    self.assertEqual(result["global_step"], 12)
    self.assertEqual(hook.steps, [12])
    self.assertEqual(exporter.calls, [("model.ckpt-12", 12, True,
                                       os.path.join(self.model_dir, "export", "recorder"))])
    self.assertEqual(self.sleeps, [])  # straight on to the newer checkpoint, no poll wait
    self.assertTrue(any("model.ckpt-4 was deleted by the chief's checkpoint retention" in line
                        for line in logs.output), logs.output)
    self.assertGreaterEqual(max(early_stopping.read_eval_metrics(est.eval_dir())), 12)

  def test_train_and_evaluate_alone_dies_on_that_timing(self):
    # Why the loop exists: tf.estimator's own evaluator loop (TF 2.15) ends the process. If a
    # TensorFlow upgrade fixes it, this fails and evaluate_new_checkpoints can go.
    chief = _Chief(self.model_dir, [0, 4, 8, 12], visible=2, keep=2)
    hook = _Evaluated(on_begin=lambda: chief.write_next(2) if not hook.steps else None)
    tf_config = json.dumps({"cluster": {"chief": ["127.0.0.1:2222"]},
                            "task": {"type": "evaluator", "index": 0}})
    with mock.patch.dict(os.environ, {"TF_CONFIG": tf_config}):
      est = tiny_estimator.estimator(self.model_dir)
    with self.assertRaisesRegex(ValueError, r"not a valid checkpoint: .*model\.ckpt-4"):
      tf.estimator.train_and_evaluate(
          est, tf.estimator.TrainSpec(tiny_estimator.input_fn(), max_steps=12),
          self._spec(hook, _Recorder()))

  def test_polls_for_each_new_checkpoint_and_exports_the_final_one_as_final(self):
    chief = _Chief(self.model_dir, [0, 4, 8, 12], visible=2, keep=3)

    def sleep(secs):  # every poll wait, the chief writes the next checkpoint
      self.sleeps.append(secs)
      chief.write_next()

    hook, exporter = _Evaluated(), _Recorder()
    result = retention.evaluate_new_checkpoints(
        tiny_estimator.estimator(self.model_dir), self._spec(hook, exporter, throttle_secs=30), 12,
        sleep=sleep)
    self.assertEqual(result["global_step"], 12)
    self.assertEqual(hook.steps, [4, 8, 12])
    self.assertEqual([c[:3] for c in exporter.calls], [("model.ckpt-4", 4, False),
                                                        ("model.ckpt-8", 8, False),
                                                        ("model.ckpt-12", 12, True)])
    self.assertLen(self.sleeps, 2)
    self.assertTrue(all(0 < s <= 30 for s in self.sleeps), self.sleeps)

  def test_an_evaluator_that_starts_after_the_chief_finished_evaluates_the_final_one(self):
    _Chief(self.model_dir, [0, 4, 8, 12], visible=4, keep=2)
    hook, exporter = _Evaluated(), _Recorder()
    result = retention.evaluate_new_checkpoints(
        tiny_estimator.estimator(self.model_dir), self._spec(hook, exporter), 12,
        sleep=self.sleeps.append)
    self.assertEqual((result["global_step"], hook.steps, self.sleeps), (12, [12], []))
    self.assertEqual([c[:3] for c in exporter.calls], [("model.ckpt-12", 12, True)])

  def test_a_failure_on_a_checkpoint_that_is_still_there_is_raised(self):
    _Chief(self.model_dir, [0, 4], visible=2, keep=2)

    def broken():
      raise ValueError("a bug in the eval input_fn")

    spec = tf.estimator.EvalSpec(broken, steps=None, throttle_secs=5)
    with self.assertRaisesRegex(ValueError, "a bug in the eval input_fn"):
      retention.evaluate_new_checkpoints(tiny_estimator.estimator(self.model_dir), spec, 4,
                                           sleep=self.sleeps.append)
    with self.assertRaisesRegex(ValueError, "max_steps must be >= 1"):
      retention.evaluate_new_checkpoints(tiny_estimator.estimator(self.model_dir), spec, 0)


if __name__ == "__main__":
  tf.test.main()
