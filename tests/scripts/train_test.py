"""The main job end to end: digits -> TFRecords -> train_and_evaluate -> eval accuracy."""

import os

import tensorflow as tf
from absl.testing import flagsaver

from estimator_app import config as config_lib
from scripts import train


class TrainTest(tf.test.TestCase):

  def test_default_job_learns_digits_and_resumes(self):
    root = self.create_tempdir().full_path
    with flagsaver.flagsaver(data_dir="data/digits", model_dir="runs/x", train_steps=300):
      os.environ["BUILD_WORKING_DIRECTORY"] = root
      try:
        cfg = train.config_from_flags()
      finally:
        del os.environ["BUILD_WORKING_DIRECTORY"]
    self.assertEqual(cfg.data_dir, os.path.join(root, "data/digits"))
    m = train.runner.load_dataset(cfg.data_dir, create_default=True)
    self.assertEqual(m.count("train") + m.count("eval"), 1797)
    metrics = train.runner.train_and_evaluate(cfg, m)
    self.assertEqual(metrics["global_step"], 300)
    self.assertGreater(metrics["accuracy"], 0.85)
    self.assertIsNotNone(tf.train.latest_checkpoint(cfg.model_dir))


if __name__ == "__main__":
  tf.test.main()
