"""//scripts:report: flags to config, and the binary over a real run and its exit codes
(make_report itself: tests/estimator_app/analysis/report_job_test.py)."""

import os
import subprocess
import sys

import tensorflow as tf
from absl.testing import flagsaver

from estimator_app.analysis import report_job
from estimator_app.analysis import reporting
from scripts import report
from tests.testing import finished_run


def _run_binary(args, cwd):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  env.pop("BUILD_WORKING_DIRECTORY", None)
  return subprocess.run([sys.executable, "-m", "scripts.report"] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=180)


class ReportTest(tf.test.TestCase):

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
    self.assertEqual(cfg, report_job.ReportConfig(
        runs=(os.path.join(root, "runs/a"), "/abs/b"), output=os.path.join(root, "out/c.png"),
        csv=os.path.join(root, "out/c.csv"), tags=("loss",), title=None))
    self.assertEqual(explicit.csv, os.path.join(root, "numbers.csv"))
    self.assertEqual(explicit.tags, reporting.DEFAULT_TAGS)

  def test_runs_flag_is_required(self):
    with flagsaver.flagsaver(runs=None):
      with self.assertRaisesRegex(reporting.ReportError, "--runs is required"):
        report.config_from_flags()

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
