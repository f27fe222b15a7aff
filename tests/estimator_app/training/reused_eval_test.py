"""reused_eval.Estimator: evaluations that reuse one graph return and write what the stock ones do."""

import glob
import os

import numpy as np
import tensorflow as tf

from estimator_app.training import reused_eval
from tests.testing import tiny_estimator


def _estimator(model_dir, reuse=True):
  """(estimator, its ReusedEvaluations or None)."""
  config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=1,
                                  save_checkpoints_steps=5, log_step_count_steps=None)
  est = tf.estimator.Estimator(tiny_estimator.model_fn, config=config,
                               params={"learning_rate": 0.1})
  return est, (reused_eval.enable(est) if reuse else None)


def _scalars(event_dir):
  """{step: {tag: value}} of the simple scalar summaries in an eval directory."""
  out = {}
  for path in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(event.step, {})[value.tag] = value.simple_value
  return out


class ReusedEvalTest(tf.test.TestCase):

  def test_results_and_summaries_equal_the_stock_evaluate_at_every_checkpoint(self):
    model_dir = self.create_tempdir().full_path
    reused, graphs = _estimator(model_dir)
    stock, _ = _estimator(model_dir, reuse=False)
    eval_fn = tiny_estimator.input_fn(n=50, batch_size=16, training=False, seed=3)
    train_fn = tiny_estimator.input_fn(n=64, batch_size=16)
    seen = []
    for steps in (5, 10, 15):
      reused.train(train_fn, max_steps=steps)
      ckpt = tf.train.latest_checkpoint(model_dir)
      ours = reused.evaluate(eval_fn, name="reused")
      theirs = stock.evaluate(eval_fn, checkpoint_path=ckpt, name="stock")
      self.assertEqual(sorted(ours), sorted(theirs))
      for key in theirs:
        self.assertAllClose(ours[key], theirs[key], rtol=1e-6, msg=key)
      self.assertEqual(ours["global_step"], steps)
      seen.append(ours["loss"])
    self.assertLen(set(seen), 3)  # each evaluation restored its own checkpoint
    self.assertEqual(graphs.graphs, 1)  # one graph for the three evaluations
    ours, theirs = _scalars(reused.eval_dir("reused")), _scalars(stock.eval_dir("stock"))
    self.assertEqual(sorted(ours), [5, 10, 15])
    for step in ours:
      self.assertEqual(sorted(ours[step]), sorted(theirs[step]))
      for tag in theirs[step]:
        self.assertAllClose(ours[step][tag], theirs[step][tag], rtol=1e-6)
    graphs.close()
    self.assertEqual(graphs.graphs, 0)
    # After close the next evaluation builds its graph again and still agrees.
    again = reused.evaluate(eval_fn, name="reused")
    self.assertAllClose(again["loss"], seen[-1], rtol=1e-6)

  def test_an_explicit_older_checkpoint_is_restored(self):
    model_dir = self.create_tempdir().full_path
    est, _ = _estimator(model_dir)
    eval_fn = tiny_estimator.input_fn(n=32, batch_size=8, training=False)
    est.train(tiny_estimator.input_fn(), max_steps=10)
    first = os.path.join(model_dir, "model.ckpt-5")
    late = est.evaluate(eval_fn)
    early = est.evaluate(eval_fn, checkpoint_path=first)
    self.assertEqual((late["global_step"], early["global_step"]), (10, 5))
    stock = _estimator(model_dir, reuse=False)[0].evaluate(eval_fn, checkpoint_path=first)
    self.assertAllClose(early["loss"], stock["loss"], rtol=1e-6)

  def test_steps_and_hooks_take_the_stock_path(self):
    model_dir = self.create_tempdir().full_path
    est, graphs = _estimator(model_dir)
    est.train(tiny_estimator.input_fn(), max_steps=5)
    eval_fn = tiny_estimator.input_fn(n=48, batch_size=16, training=False)
    one_batch = est.evaluate(eval_fn, steps=1)
    self.assertEqual(graphs.graphs, 0)
    full = est.evaluate(eval_fn)
    self.assertNotAllClose(np.float32(one_batch["loss"]), np.float32(full["loss"]))

  def test_without_a_checkpoint_it_evaluates_initial_values_as_the_stock_path(self):
    model_dir = self.create_tempdir().full_path
    est, graphs = _estimator(model_dir)
    result = est.evaluate(tiny_estimator.input_fn(n=16, training=False))
    self.assertEqual(result["global_step"], 0)
    self.assertEqual(graphs.graphs, 0)


if __name__ == "__main__":
  tf.test.main()
