"""Smoke run of the "serve" benchmark suite: both signatures of both models measured."""

import tensorflow as tf

from estimator_app.benchmarks import options as options_lib
from estimator_app.benchmarks import serve_suite
from estimator_app.serving import export


class ServeSuiteTest(tf.test.TestCase):

  def test_tiny_run(self):
    figures, ratios = serve_suite.run(options_lib.BenchmarkOptions(
        repetitions=3, scale=0.01, work_dir=self.create_tempdir().full_path))
    by_name = {f.name: f for f in figures}
    self.assertLen(by_name, len(figures))
    for model in serve_suite.MODELS:
      for signature in (export.SERVING_DEFAULT, export.CLASSIFICATION):
        key = f"serve/{model}/{signature}"
        p50, p99 = by_name[f"{key}/single_p50"], by_name[f"{key}/single_p99"]
        batch = by_name[f"{key}/batch64"]
        self.assertEqual((p50.unit, p99.unit, batch.unit), ("ms", "ms", "examples/s"))
        self.assertLen(p99.samples, 3)  # the warm-up round is not among them
        for p50_s, p99_s in zip(p50.samples, p99.samples):
          self.assertLessEqual(p50_s, p99_s)
        self.assertGreater(batch.median, 0)
        self.assertEqual(ratios[model][f"serve_{signature}_batch64"], batch.median)


if __name__ == "__main__":
  tf.test.main()
