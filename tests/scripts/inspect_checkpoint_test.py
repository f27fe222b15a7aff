"""//scripts:inspect_checkpoint: table and JSON of a real checkpoint, and the binary's exit codes."""

import json
import os
import subprocess
import sys

import tensorflow as tf
from absl.testing import flagsaver

from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention
from scripts import inspect_checkpoint
from tests.testing import finished_run


def _run_binary(args, cwd):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  env.pop("BUILD_WORKING_DIRECTORY", None)
  return subprocess.run([sys.executable, "-m", "scripts.inspect_checkpoint"] + args, cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=180)


class InspectCheckpointTest(tf.test.TestCase):

  def test_config_from_flags(self):
    root = self.create_tempdir().full_path
    os.environ["BUILD_WORKING_DIRECTORY"] = root
    try:
      with flagsaver.flagsaver(checkpoint="runs/x", json=True, variables="kernel"):
        cfg = inspect_checkpoint.config_from_flags()
    finally:
      del os.environ["BUILD_WORKING_DIRECTORY"]
    self.assertEqual(cfg, inspect_checkpoint.InspectConfig(os.path.join(root, "runs/x"), True,
                                                           "kernel"))
    with flagsaver.flagsaver(checkpoint=None):
      with self.assertRaisesRegex(checkpoint_info.CheckpointError, "--checkpoint is required"):
        inspect_checkpoint.config_from_flags()

  def test_table_json_and_filter_of_an_estimator_run(self):
    model_dir = self.create_tempdir("model").full_path
    finished_run.train_run(model_dir)
    last = os.path.join(model_dir, f"model.ckpt-{finished_run.TRAIN_STEPS}")

    table = inspect_checkpoint.describe(inspect_checkpoint.InspectConfig(model_dir))
    as_json = json.loads(inspect_checkpoint.describe(
        inspect_checkpoint.InspectConfig(model_dir, as_json=True)))
    only_prefix = json.loads(inspect_checkpoint.describe(
        inspect_checkpoint.InspectConfig(last, as_json=True, variables="kernel")))

    self.assertIn(f"checkpoint:  {last}", table)
    self.assertIn(f"global step: {finished_run.TRAIN_STEPS}", table)
    self.assertRegex(table, r"dense/kernel\s+\[4, 2\]\s+float32\s+8\s+32 B")
    self.assertRegex(table, r"checkpoints in .* \(3\):")
    self.assertEqual(as_json["global_step"], finished_run.TRAIN_STEPS)
    self.assertEqual([c["step"] for c in as_json["checkpoints"]], [0, 20, 40])
    self.assertEqual(as_json["total_params"],
                     sum(v["params"] for v in as_json["variables"]))
    self.assertEqual([v["name"] for v in only_prefix["variables"]], ["dense/kernel"])
    self.assertNotIn("checkpoints", only_prefix)  # a prefix is not a directory to list

  def test_model_dir_shows_groups_and_best_checkpoints_with_step_and_metric(self):
    model_dir = self.create_tempdir("model").full_path
    finished_run.train_run(model_dir)
    best_dir = os.path.join(model_dir, checkpoint_info.BEST_DIR)
    exporter = retention.BestCheckpointExporter("accuracy", True, keep=2)
    for step, accuracy in ((20, 0.75), (40, 0.5), (0, 0.625)):
      exporter.offer(best_dir, os.path.join(model_dir, f"model.ckpt-{step}"),
                     {"accuracy": accuracy})

    table = inspect_checkpoint.describe(inspect_checkpoint.InspectConfig(model_dir))
    as_json = json.loads(inspect_checkpoint.describe(
        inspect_checkpoint.InspectConfig(model_dir, as_json=True)))

    self.assertIn("trainable:\n  dense/bias", table)
    self.assertIn("\n  trainable:   2 variables, 10 params, 40 B\n"
                  "  bookkeeping: 1 variable, 1 params, 8 B\n", table)
    self.assertIn(f"best checkpoints in {best_dir} by accuracy (higher is better), best first "
                  "(2):\n"
                  "  step        20  accuracy 0.75  ckpt-20/model.ckpt-20\n"
                  "  step         0  accuracy 0.625  ckpt-0/model.ckpt-0", table)
    self.assertEqual(as_json["groups"]["trainable"],
                     {"num_variables": 2, "total_params": 10, "total_bytes": 40,
                      "variables": ["dense/bias", "dense/kernel"]})
    self.assertEqual([(b["step"], b["value"]) for b in as_json["best"]], [(20, 0.75), (0, 0.625)])
    self.assertEqual(as_json["best"][0]["prefix"],
                     os.path.join(best_dir, "ckpt-20", "model.ckpt-20"))
    no_best = self.create_tempdir("plain").full_path
    finished_run.train_run(no_best, train_steps=20)
    self.assertNotIn("best checkpoints", inspect_checkpoint.describe(
        inspect_checkpoint.InspectConfig(no_best)))

  def test_binary_prints_the_table(self):
    work = self.create_tempdir("work").full_path
    finished_run.train_run(os.path.join(work, "model"))

    proc = _run_binary(["--checkpoint=model"], cwd=work)

    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn(f"global step: {finished_run.TRAIN_STEPS}", proc.stdout)
    self.assertIn("total: 3 variables, 11 params, 48 B", proc.stdout)

  def test_binary_bad_path_exits_2_with_one_line_naming_it(self):
    # One case is enough here (each costs a TensorFlow start-up); checkpoint_info_test covers
    # the other bad paths in-process.
    work = self.create_tempdir("work")
    notes = work.create_file("notes.txt", "not a checkpoint").full_path

    proc = _run_binary(["--checkpoint=notes.txt"], cwd=work.full_path)

    self.assertEqual(proc.returncode, 2)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertEqual(proc.stderr.strip().splitlines()[-1],
                     f"error: {notes} is not a checkpoint: expected a directory holding "
                     "checkpoints or a checkpoint prefix PREFIX (with PREFIX.index)")

if __name__ == "__main__":
  tf.test.main()
