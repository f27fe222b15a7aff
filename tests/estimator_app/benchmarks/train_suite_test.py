"""Smoke run of the "train" benchmark suite at a tiny scale, and the Keras twins' architecture."""

import numpy as np
import tensorflow as tf

from estimator_app.benchmarks import input_suite
from estimator_app.benchmarks import options as options_lib
from estimator_app.benchmarks import train_suite


def _project_params(model: str) -> int:
  with tf.Graph().as_default():
    features = {"image": tf.compat.v1.placeholder(tf.float32, [None, 28, 28, 1])}
    labels = tf.compat.v1.placeholder(tf.int64, [None])
    train_suite.project_model_fn(model)(features, labels, tf.estimator.ModeKeys.TRAIN)
    return sum(int(np.prod(v.shape)) for v in tf.compat.v1.trainable_variables())


class TrainSuiteTest(tf.test.TestCase):

  def test_keras_twin_has_the_same_parameters(self):
    for model in train_suite.MODELS:
      with self.subTest(model=model):
        tf.keras.backend.clear_session()
        self.assertEqual(train_suite.keras_model(model).count_params(), _project_params(model))

  def test_tiny_run(self):
    work_dir = self.create_tempdir().full_path
    figures, ratios = train_suite.run(options_lib.BenchmarkOptions(
        repetitions=1, scale=0.01, work_dir=work_dir, steps_per_run=2))
    names = [f.name for f in figures]
    self.assertEqual(names[:2], ["pipeline/tfrecord_input_fn", "pipeline/in_memory_tensors"])
    for model in train_suite.MODELS:
      for variant in ("estimator_tfrecord", "estimator_in_memory", "estimator_1step", "keras_fit",
                      "feed_dict"):
        self.assertIn(f"{model}/{variant}", names)
    for f in figures:
      self.assertEqual((f.suite, f.unit), ("train", "examples/s"))
      self.assertGreater(f.median, 0)
      self.assertLen(f.samples, 1)
    med = {f.name: f.median for f in figures}
    for model in train_suite.MODELS:
      r = ratios[model]
      self.assertAlmostEqual(r["vs_feed_dict"],
                             med[f"{model}/estimator_tfrecord"] / med[f"{model}/feed_dict"])
      self.assertAlmostEqual(r["vs_keras_fit"],
                             med[f"{model}/estimator_tfrecord"] / med[f"{model}/keras_fit"])
      self.assertAlmostEqual(r["input_overhead"], 1 - med[f"{model}/estimator_tfrecord"] /
                             med[f"{model}/estimator_in_memory"])
      self.assertAlmostEqual(r["steps_per_run_speedup"], med[f"{model}/estimator_tfrecord"] /
                             med[f"{model}/estimator_1step"])


if __name__ == "__main__":
  tf.test.main()
