"""job_suite reads the time breakdown back from what scripts/train.py prints."""

from absl.testing import absltest

from estimator_app.benchmarks import job_suite
from estimator_app.training import hooks
from scripts import train


class ParseBreakdownTest(absltest.TestCase):

  def test_reads_the_summary_line_train_py_prints(self):
    seconds = {hooks.SETUP: 7.2, hooks.TRAIN: 72.4, hooks.EVALS: 12.1, hooks.EXPORTS: 19.0,
               "total": 110.7}
    line = f"Trained dnn on /d to step 1500{train.time_breakdown(seconds)}."
    self.assertEqual(line, "Trained dnn on /d to step 1500 in 1:51: train 1:12 (65%), "
                           "evals 0:12, exports 0:19, set-up 0:07.")
    parsed = job_suite.parse_breakdown(f"10:00:00 some log line\n\n{line}\neval accuracy: 0.9\n")
    self.assertEqual(parsed, {"total": 111.0, "train": 72.0, "evals": 12.0, "exports": 19.0,
                              "set-up": 7.0, "train_share": 0.65})

  def test_no_summary_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "no 'Trained"):
      job_suite.parse_breakdown("error: something went wrong\n")

  def test_learnable_data_is_deterministic_and_balanced(self):
    a, la = job_suite.learnable(2000, seed=1)
    b, lb = job_suite.learnable(2000, seed=1)
    self.assertTrue((a == b).all() and (la == lb).all())
    self.assertEqual(a.shape, (2000, 28, 28, 1))
    self.assertGreater(min((la == c).sum() for c in range(10)), 150)
    # Same class, other noise: closer to each other than to another class's template.
    c0 = a[la == 0].mean(axis=0)
    self.assertLess(abs(a[la == 0][0] - c0).mean(), abs(a[la == 1][0] - c0).mean())


if __name__ == "__main__":
  absltest.main()
