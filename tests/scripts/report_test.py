"""//scripts:report: flags to config, PNG + CSV over several runs, and the binary's exit codes."""

import csv
import os
import subprocess
import sys

import tensorflow as tf
from absl.testing import flagsaver

from estimator_app.analysis import reporting
from scripts import report
from tests.testing import finished_run


def _run_binary(args, cwd):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  env.pop("BUILD_WORKING_DIRECTORY", None)
  return subprocess.run([sys.executable, "-m", "scripts.report"] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=180)


class ReportTest(tf.test.TestCase):

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

  def test_config_from_flags_resolves_against_the_working_directory(self):
    root = self.create_tempdir().full_path
    os.environ["BUILD_WORKING_DIRECTORY"] = root
    try:
      with flagsaver.flagsaver(runs=["runs/a", "/abs/b"], output="out/c.png", tags=["loss"]):
        cfg = report.config_from_flags()
      with flagsaver.flagsaver(runs=["a"], csv="numbers.csv"):
        explicit = report.config_from_flags()
    finally:
      del os.environ["BUILD_WORKING_DIRECTORY"]
    self.assertEqual(cfg, report.ReportConfig(
        runs=(os.path.join(root, "runs/a"), "/abs/b"), output=os.path.join(root, "out/c.png"),
        csv=os.path.join(root, "out/c.csv"), tags=("loss",), title=None))
    self.assertEqual(explicit.csv, os.path.join(root, "numbers.csv"))
    self.assertEqual(explicit.tags, reporting.DEFAULT_TAGS)

  def test_runs_flag_is_required(self):
    with flagsaver.flagsaver(runs=None):
      with self.assertRaisesRegex(reporting.ReportError, "--runs is required"):
        report.config_from_flags()

  def test_png_and_csv_of_two_runs(self):
    root, a, b = self._runs()
    out = self.create_tempdir("out").full_path
    cfg = report.ReportConfig(runs=(a, b), output=os.path.join(out, "c.png"),
                              csv=os.path.join(out, "c.csv"),
                              tags=("loss", "accuracy", "learning_rate"))

    result = report.make_report(cfg)

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
    cfg = report.ReportConfig(runs=(a,), output=os.path.join(out, "c.png"),
                              csv=os.path.join(out, "c.csv"), tags=("f1",))
    with self.assertRaisesRegex(reporting.ReportError, "'f1' is in none.*accuracy"):
      report.make_report(cfg)
    self.assertEqual(os.listdir(out), [])

  def test_binary_over_an_estimator_run(self):
    work = self.create_tempdir("work").full_path
    finished_run.train_run(os.path.join(work, "model"))

    proc = _run_binary(["--runs=model", "--output=plots/curves.png"], cwd=work)

    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("wrote " + os.path.join(work, "plots/curves.png"), proc.stdout)
    self.assertRegex(proc.stdout, r"model\s+eval\s+accuracy\s+2\s+40")
    self.assertTrue(os.path.exists(os.path.join(work, "plots/curves.csv")))

  def test_binary_run_without_event_files_exits_2_with_one_line(self):
    work = self.create_tempdir("work")
    work.mkdir("empty")

    proc = _run_binary(["--runs=empty"], cwd=work.full_path)

    self.assertEqual(proc.returncode, 2)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertEqual(proc.stderr.strip().splitlines()[-1],
                     f"error: run directory {os.path.join(work.full_path, 'empty')} holds no "
                     "TensorBoard event files (events.out.tfevents.*); is it a model_dir of a "
                     "run that started?")


if __name__ == "__main__":
  tf.test.main()
