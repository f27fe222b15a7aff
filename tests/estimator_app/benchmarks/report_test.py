"""Per-model ratio merging, the issue's targets and the PNG chart."""

import os

import tensorflow as tf

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import report


class ReportTest(tf.test.TestCase):

  def _ratios(self):
    ratios = {}
    report.merge_ratios(ratios, {"dnn": {"input_overhead": 0.02, "vs_keras_fit": 1.5,
                                         "vs_feed_dict": 0.9}, "context": "x"})
    report.merge_ratios(ratios, {"dnn": {"serve_classification_batch64": 1000.0}})
    figures = [harness.figure("write", "write/naive_tf_writer", "examples/s", [10.0]),
               harness.figure("write", "write/parallel_writer", "examples/s", [25.0])]
    report.add_model_ratios(ratios, figures)
    return ratios

  def test_suites_merge_per_model_and_writer_ratio_is_added(self):
    ratios = self._ratios()
    self.assertEqual(ratios["dnn"], {"input_overhead": 0.02, "vs_keras_fit": 1.5,
                                     "vs_feed_dict": 0.9, "serve_classification_batch64": 1000.0,
                                     "writer_vs_naive": 2.5})
    self.assertEqual(report.flat_ratios(ratios), {
        "dnn input_overhead": 0.02, "dnn vs_keras_fit": 1.5, "dnn vs_feed_dict": 0.9,
        "dnn writer_vs_naive": 2.5})

  def test_targets(self):
    met = {(r[1]): r[5] for r in report.target_rows(self._ratios())}
    self.assertEqual(met, {"input_overhead": True, "vs_keras_fit": True, "vs_feed_dict": False,
                           "writer_vs_naive": True})
    self.assertIn("dnn      vs_feed_dict      0.900  target >= 1  MISSED",
                  report.targets_summary(self._ratios()))

  def test_chart(self):
    path = os.path.join(self.create_tempdir().full_path, "bench.png")
    self.assertTrue(report.chart(self._ratios(), path))
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertFalse(report.chart({"context": "x"}, path + ".none"))
    self.assertFalse(os.path.exists(path + ".none"))


if __name__ == "__main__":
  tf.test.main()
