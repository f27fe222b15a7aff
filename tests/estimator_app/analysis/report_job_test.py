"""make_report: PNG + CSV over several runs, missing tags noted, nothing written when none is found."""

import csv
import os

import tensorflow as tf

from estimator_app.analysis import report_job
from estimator_app.analysis import reporting
from tests.testing import finished_run


class ReportJobTest(tf.test.TestCase):

  def _runs(self):
    root = self.create_tempdir("runs").full_path
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    for i, d in enumerate([a, b]):
      finished_run.write_tf1_scalars(d, {"loss": [(s, 1.0 / (s + 1) + i) for s in range(0, 50, 10)],
                                         "global_step/sec": [(10, 50.0)]})
      finished_run.write_tf1_scalars(os.path.join(d, "eval"),
                                     {"accuracy": [(25, 0.5 + i / 10), (50, 0.75 + i / 10)],
                                      "loss": [(25, 0.7), (50, 0.6)]})
    return root, a, b

  def test_png_and_csv_of_two_runs(self):
    root, a, b = self._runs()
    out = self.create_tempdir("out").full_path
    cfg = report_job.ReportConfig(runs=(a, b), output=os.path.join(out, "c.png"),
                                  csv=os.path.join(out, "c.csv"),
                                  tags=("loss", "accuracy", "learning_rate"))

    result = report_job.make_report(cfg)

    self.assertEqual(result.tags, ("loss", "accuracy"))
    self.assertEqual(result.missing_tags, ("learning_rate",))
    self.assertEqual([r.name for r in result.runs], ["a", "b"])
    self.assertGreater(os.path.getsize(cfg.output), 10_000)
    with open(cfg.csv) as f:
      table = list(csv.DictReader(f))
    # Per run: 5 training losses, 2 eval losses, 2 eval accuracies; no global_step/sec.
    self.assertLen(table, 18)
    self.assertEqual(result.num_rows, 18)
    self.assertEqual({(r["run"], r["source"], r["tag"]) for r in table},
                     {(run, src, tag) for run in "ab" for src, tag in
                      [("train", "loss"), ("eval", "loss"), ("eval", "accuracy")]})
    last_b = [r for r in table if r["run"] == "b" and r["tag"] == "accuracy"][-1]
    self.assertEqual((int(last_b["step"]), float(last_b["value"])),
                     (50, finished_run.float32(0.85)))

  def test_no_requested_tag_is_an_error_and_writes_nothing(self):
    _, a, _ = self._runs()
    out = self.create_tempdir().full_path
    cfg = report_job.ReportConfig(runs=(a,), output=os.path.join(out, "c.png"),
                                  csv=os.path.join(out, "c.csv"), tags=("f1",))
    with self.assertRaisesRegex(reporting.ReportError, "'f1' is in none.*accuracy"):
      report_job.make_report(cfg)
    self.assertEqual(os.listdir(out), [])


if __name__ == "__main__":
  tf.test.main()
