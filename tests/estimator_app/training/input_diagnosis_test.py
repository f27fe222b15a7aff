"""diagnose_input on a tiny in-memory input_fn and the dnn model_fn: rates, verdict, TensorBoard
output."""

import os
import time

import numpy as np
import tensorflow as tf

from estimator_app.benchmarks import train_suite
from estimator_app.training import input_diagnosis


def _input_fn():
  rng = np.random.default_rng(0)
  x = rng.random((200, 28, 28, 1), dtype=np.float32)
  y = rng.integers(0, 10, 200).astype(np.int64)
  return tf.data.Dataset.from_tensor_slices(({"image": x}, y)).repeat().batch(20)


class DiagnoseTest(tf.test.TestCase):

  def test_measures_logs_and_writes_tensorboard_files(self):
    log_dir = self.create_tempdir().full_path
    result = input_diagnosis.diagnose_input(_input_fn, train_suite.project_model_fn("dnn"),
                                     seconds=0.5, log_dir=log_dir)
    self.assertGreater(result.input_examples_per_sec, 0)
    self.assertGreater(result.model_examples_per_sec, 0)
    self.assertGreater(result.trained_examples_per_sec, 0)
    self.assertEqual("INPUT-BOUND" in result.advice, result.input_bound, result.advice)
    files = [os.path.join(d, f) for d, _, fs in os.walk(log_dir) for f in fs]
    self.assertTrue(any("tfevents" in f for f in files), files)
    self.assertTrue(any(f.endswith(".xplane.pb") for f in files), files)  # the profile

  def test_a_slow_input_pipeline_is_found_input_bound(self):
    # 20 ms of Python per batch of 20 (1,000 examples/s at best) against a dnn step that takes
    # well under 1 ms here: the input must be the bottleneck whatever the machine's load.
    def slow_input_fn():
      def wait(x):
        time.sleep(0.02)
        return x
      ds = _input_fn()
      return ds.map(lambda f, y: ({"image": tf.numpy_function(wait, [f["image"]], tf.float32,
                                                              stateful=True)}, y))

    def shaped(features, labels, mode):
      features = {"image": tf.ensure_shape(features["image"], [20, 28, 28, 1])}
      return train_suite.project_model_fn("dnn")(features, labels, mode)

    result = input_diagnosis.diagnose_input(slow_input_fn, shaped, seconds=0.5)
    self.assertTrue(result.input_bound, result.advice)
    self.assertLess(result.headroom, input_diagnosis.HEADROOM, result.advice)
    self.assertIn("INPUT-BOUND", result.advice)

  def test_advice(self):
    self.assertIn("INPUT-BOUND", input_diagnosis.advise(1000.0, 2000.0))
    self.assertIn("--cache", input_diagnosis.advise(1000.0, 2000.0))
    self.assertIn("NOT input-bound", input_diagnosis.advise(5000.0, 2000.0))
    self.assertIn("NOT input-bound", input_diagnosis.advise(5000.0, 2000.0, 1900.0))
    # Ample rate, but training from the input loses 25%: the shared-CPU case.
    verdict = input_diagnosis.advise(5000.0, 2000.0, 1500.0)
    self.assertIn("INPUT-BOUND", verdict)
    self.assertIn("losing 25% of the in-memory speed", verdict)


if __name__ == "__main__":
  tf.test.main()
