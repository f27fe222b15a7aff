"""Tests of early stopping: the decision on written eval events, and a plateaued real run."""

import os

import tensorflow as tf
from absl.testing import parameterized

from estimator_app.training import early_stopping
from input_fns import errors
from tests.testing import tiny_estimator


def _write_evals(eval_dir, records, suffix=""):
  """Writes {step: {tag: value}} as eval summaries, the way Estimator.evaluate does."""
  with tf.Graph().as_default():  # the v1 FileWriter refuses eager mode
    writer = tf.compat.v1.summary.FileWriter(eval_dir, filename_suffix=suffix)
    for step, metrics in records.items():
      writer.add_summary(tf.compat.v1.Summary(value=[
          tf.compat.v1.Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]), step)
    writer.close()


class NoImprovementTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      # (higher_is_better, values at steps 100..600, patience, min_delta, min_steps,
      #  expected stop, expected best step)
      ("acc_plateau", True, [0.5, 0.7, 0.7, 0.69, 0.7, 0.7], 300, 0.0, 0, True, 200),
      ("acc_within_patience", True, [0.5, 0.7, 0.7, 0.69, 0.71, 0.7], 300, 0.0, 0, False, 500),
      ("acc_tiny_gains_dont_count", True, [0.5, 0.7, 0.701, 0.702, 0.703, 0.704], 300, 0.01, 0,
       True, 200),
      ("loss_decreasing", False, [2.0, 1.5, 1.2, 1.0, 0.9, 0.8], 100, 0.0, 0, False, 600),
      ("loss_plateau", False, [2.0, 1.5, 1.6, 1.7, 1.5, 1.6], 400, 0.0, 0, True, 200),
      ("min_steps_ignores_early_evals", True, [0.9, 0.5, 0.6, 0.6, 0.6, 0.6], 300, 0.0, 200,
       True, 300),
      ("nan_is_ignored", True, [0.5, float("nan"), 0.6, 0.7, 0.8, 0.9], 100, 0.0, 0, False, 600),
  )
  def test_decision(self, higher, values, patience, min_delta, min_steps, stop, best_step):
    eval_dir = os.path.join(self.create_tempdir().full_path, "eval")
    metric = "accuracy" if higher else "loss"
    _write_evals(eval_dir, {100 * (i + 1): {metric: v, "other": 1.0}
                            for i, v in enumerate(values)})
    fn = early_stopping.NoImprovement(eval_dir, metric, higher, patience, min_steps, min_delta)
    self.assertEqual(fn(), stop)
    self.assertEqual(fn.decision.best_step, best_step)
    self.assertEqual(fn.decision.last_step, 600)

  def test_no_evaluation_yet_and_unknown_metric(self):
    eval_dir = os.path.join(self.create_tempdir().full_path, "eval")
    fn = early_stopping.NoImprovement(eval_dir, "acuracy", True, 100)
    self.assertFalse(fn())
    _write_evals(eval_dir, {100: {"accuracy": 0.5, "loss": 1.0}})
    with self.assertRaisesRegex(errors.UserInputError,
                                r"metric 'acuracy' is not among the metrics evaluated in "
                                r".*eval \(accuracy, loss\)"):
      fn()

  def test_read_eval_metrics_merges_files_by_step(self):
    eval_dir = os.path.join(self.create_tempdir().full_path, "eval")
    _write_evals(eval_dir, {200: {"loss": 2.0}, 100: {"loss": 3.0}})
    _write_evals(eval_dir, {300: {"loss": 1.0}}, suffix=".second")
    self.assertEqual(early_stopping.read_eval_metrics(eval_dir),
                     {100: {"loss": 3.0}, 200: {"loss": 2.0}, 300: {"loss": 1.0}})
    self.assertEqual(early_stopping.read_eval_metrics(eval_dir + "_missing"), {})


class EarlyStoppingHookTest(tf.test.TestCase):

  def test_plateaued_run_stops_before_max_steps(self):
    model_dir = self.create_tempdir().full_path
    # learning_rate=0: every evaluation gives the same metrics, so the best stays the first.
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=5, learning_rate=0.0)
    hook = early_stopping.early_stopping_hook(est, "accuracy", higher_is_better=True,
                                              patience_steps=10, eval_dir_name="quick")
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(tiny_estimator.input_fn(), max_steps=500, hooks=[hook]),
        tf.estimator.EvalSpec(tiny_estimator.input_fn(n=32, training=False), steps=None,
                              name="quick", throttle_secs=0))
    final_step = est.get_variable_value("global_step")
    evals = early_stopping.read_eval_metrics(est.eval_dir("quick"))
    # Evaluations at 5, 10, 15; the check after the step-15 one stops (15 - 5 >= 10); the
    # stop saves and evaluates one last checkpoint.
    self.assertLess(final_step, 30)
    self.assertEqual(sorted(evals)[:3], [5, 10, 15])
    self.assertEqual(max(evals), final_step)
    self.assertTrue(hook.should_stop_fn.decision.stop)
    self.assertEqual(hook.should_stop_fn.decision.best_step, 5)
    self.assertEqual(len({round(m["accuracy"], 6) for m in evals.values()}), 1)

  def test_improving_run_is_not_stopped(self):
    model_dir = self.create_tempdir().full_path
    est = tiny_estimator.estimator(model_dir, save_checkpoints_steps=5, learning_rate=0.3)
    hook = early_stopping.early_stopping_hook(est, "loss", higher_is_better=False,
                                              patience_steps=10)
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(tiny_estimator.input_fn(), max_steps=30, hooks=[hook]),
        tf.estimator.EvalSpec(tiny_estimator.input_fn(n=32, training=False), steps=None,
                              throttle_secs=0))
    self.assertEqual(est.get_variable_value("global_step"), 30)
    self.assertFalse(hook.should_stop_fn.decision.stop)

  def test_rejects_bad_patience(self):
    est = tiny_estimator.estimator(self.create_tempdir().full_path)
    with self.assertRaisesRegex(errors.UserInputError, "patience must be >= 1 step, got 0"):
      early_stopping.early_stopping_hook(est, "accuracy", True, patience_steps=0)


if __name__ == "__main__":
  tf.test.main()
