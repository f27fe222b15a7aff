"""Smoke run of the "write" benchmark suite at a tiny scale: every variant measured, ratios
computed, scratch space cleaned up."""

import os

import tensorflow as tf

from estimator_app.benchmarks import options as options_lib
from estimator_app.benchmarks import write_suite


class WriteSuiteTest(tf.test.TestCase):

  def test_tiny_run(self):
    work_dir = self.create_tempdir().full_path
    figures, ratios = write_suite.run(options_lib.BenchmarkOptions(
        repetitions=1, scale=0.01, work_dir=work_dir))
    self.assertEqual([f.name for f in figures], [
        "write/naive_tf_writer", "write/parallel_writer", "write/parallel_writer_1_proc",
        "write/per_record_writer", "write/per_record_writer_1_proc"])
    for f in figures:
      self.assertEqual((f.suite, f.unit), ("write", "examples/s"))
      self.assertGreater(f.median, 0)
      self.assertLen(f.samples, 1)
    self.assertEqual(ratios["write/examples"], 1000)
    cores = ratios["write/cores"]
    self.assertAlmostEqual(
        ratios[f"write/parallel_writer / naive ({cores} procs)"],
        figures[1].median / figures[0].median)
    self.assertEqual(os.listdir(work_dir), [])  # every written dataset was removed


if __name__ == "__main__":
  tf.test.main()
