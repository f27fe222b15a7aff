"""The main job's library: flags -> frozen config -> train_and_evaluate, resume, refusals."""

import dataclasses
import hashlib
import json
import os
import sys
from unittest import mock

import numpy as np
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from estimator_app import runner
from estimator_app.training import run_record
from scripts import experiment_flags
from scripts import train

FLAGS = flags.FLAGS


def _dir_bytes(path):
  """relative path -> sha256 of every file below `path`."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), path)] = hashlib.sha256(f.read()).hexdigest()
  return out


class TrainTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    FLAGS.mark_as_parsed()

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.data_dir = os.path.join(self.root, "digits")
    estimator_lib.load_dataset(self.data_dir, create_default=True)

  def _cfg(self, **flag_values):
    values = dict(data_dir="digits", model_dir="run", model="dnn", train_steps=60,
                  save_checkpoints_steps=30, quick_eval_steps=20, log_every_steps=20,
                  export=False)
    values.update(flag_values)
    # as_parsed: the flags count as set on the command line, as they would for a user.
    parsed = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
    with flagsaver.as_parsed(**parsed):
      return experiment_flags.config_from_flags(base_dir=self.root)

  def test_precedence_defaults_file_flags_hparams(self):
    path = os.path.join(self.root, "exp.json")
    with open(path, "w") as f:
      json.dump({"optimization": {"learning_rate": 0.5}, "data": {"batch_size": 9},
                 "run": {"train_steps": 99, "keep_best": 4}}, f)
    cfg = self._cfg(config="exp.json", batch_size=17, hparams="learning_rate=0.125")
    self.assertEqual(cfg.data.batch_size, 17)  # flag beats file
    self.assertEqual(cfg.run.keep_best, 4)  # file beats default
    self.assertEqual(cfg.optimization.learning_rate, 0.125)  # hparams beat file
    self.assertEqual(cfg.run.train_steps, 60)  # flag set in _cfg beats file
    self.assertEqual(cfg.data.eval_batch_size, config_lib.DataConfig().eval_batch_size)
    self.assertEqual(cfg.run.model_dir, os.path.join(self.root, "run"))

  def test_every_flag_is_documented(self):
    for name in experiment_flags.flag_names():
      help_text = FLAGS[name].help
      self.assertGreater(len(help_text.split()), 3, f"--{name} has no real help: {help_text!r}")

  def test_train_writes_config_and_record_then_resumes(self):
    cfg = self._cfg()
    result = runner.train(cfg, argv=["train"])
    self.assertEqual(result.global_step, 60)
    self.assertGreater(result.metrics["eval"]["accuracy"], 0.5)
    self.assertIn("eval accuracy ", train.summary(cfg, result))
    # Saved as run, with what the dataset decides resolved (a multiclass label: accuracy).
    self.assertEqual(cfg.run.best_metric, "")
    resolved = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, best_metric="accuracy"))
    self.assertEqual(config_lib.load_saved(cfg.run.model_dir), resolved)
    self.assertTrue(os.path.isdir(os.path.join(cfg.run.model_dir, "eval_quick")))
    record = run_record.read(cfg.run.model_dir)[0]
    self.assertEqual(record["tensorflow"], tf.__version__)
    self.assertEqual(record["seed"], cfg.run.seed)
    self.assertEqual(len(record["data"][self.data_dir]), 64)  # manifest sha256
    # Same command with more steps continues from the last checkpoint.
    longer = self._cfg(train_steps=90)
    self.assertEqual(runner.train(longer).global_step, 90)
    records = run_record.read(cfg.run.model_dir)
    self.assertEqual(len(records), 2)
    # Each start keeps its own resolved config: the first start's is not lost to the resume.
    self.assertEqual([r["config"]["run"]["train_steps"] for r in records], [60, 90])
    self.assertEqual([r["resolved"]["decay_steps"] for r in records], [60, 90])
    self.assertEqual(records[0]["config"], resolved.to_json_dict())

  def test_run_record_keeps_the_command_line_and_every_source(self):
    other = os.path.join(self.root, "digits2")
    estimator_lib.load_dataset(other, create_default=True, seed=7)
    cfg = self._cfg(train_steps=10, save_checkpoints_steps=10, quick_eval_steps=0,
                    log_every_steps=10, train_data="digits:0.5,digits2:0.5")
    argv = ["scripts/train.py", "--train_steps=10", "--train_data=digits:0.5,digits2:0.5",
            "--data_dir=gs://b/x?access_token=s3cr3t"]
    runner.train(cfg, argv=argv)
    record = run_record.read(cfg.run.model_dir)[0]
    self.assertEqual(record["argv"][:3], argv[:3])  # flags and all, not only the program
    self.assertEqual(record["argv"][3], "--data_dir=gs://b/x?access_token=REDACTED")
    self.assertEqual(sorted(record["data"]), sorted([self.data_dir, other]))
    for digest in record["data"].values():
      self.assertLen(digest, 64)

  def test_main_records_sys_argv(self):
    cfg = self._cfg(train_steps=5, save_checkpoints_steps=5, log_every_steps=5)
    argv = ["train.py", "--train_steps=5", f"--model_dir={cfg.run.model_dir}"]
    with flagsaver.as_parsed(data_dir=self.data_dir, model_dir=cfg.run.model_dir,
                             model="dnn", train_steps="5", export="false"), \
        mock.patch.object(sys, "argv", argv):
      train.main(["train.py"])  # absl hands main only what is left after the flags
    self.assertEqual(run_record.read(cfg.run.model_dir)[0]["argv"], argv)

  def test_learning_rate_stays_above_zero_to_the_end(self):
    cfg = self._cfg(train_steps=60, log_every_steps=10)
    runner.train(cfg)
    lrs = sorted((e.step, v.simple_value)
                 for path in tf.io.gfile.glob(os.path.join(cfg.run.model_dir, "events.*"))
                 for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value
                 if v.tag == "learning_rate")
    self.assertGreaterEqual(len(lrs), 5)
    self.assertGreaterEqual(lrs[-1][0], 50)  # summarised into the run's last tenth
    values = [lr for _, lr in lrs]
    self.assertEqual(values, sorted(values, reverse=True))  # cosine: decreasing
    self.assertGreater(min(values), 0.0)  # and above 0 to the end (it hit 0 at step 2000)
    # The step the run ends on is where the schedule ends.
    self.assertEqual(cfg.train_config.decay_steps, cfg.run.train_steps)

  def test_other_architecture_is_refused_and_nothing_changes(self):
    cfg = self._cfg(train_steps=30)
    runner.train(cfg)
    tf.compat.v1.summary.FileWriterCache.clear()  # flush this process's open event files
    before = _dir_bytes(cfg.run.model_dir)
    other = self._cfg(hparams="hidden_units=[7]")
    with self.assertRaisesRegex(config_lib.ConfigError, "different architecture"):
      runner.train(other)
    self.assertEqual(_dir_bytes(cfg.run.model_dir), before)
    # --fresh moves the old run aside, byte for byte, and starts over.
    runner.train(dataclasses_replace_steps(other, 30), fresh=True)
    aside = [d for d in os.listdir(self.root) if d.startswith("run.old-")]
    self.assertLen(aside, 1)
    self.assertEqual(_dir_bytes(os.path.join(self.root, aside[0])), before)

  def test_deterministic_runs_are_identical(self):
    finals = []
    for name in ("a", "b"):
      cfg = self._cfg(model_dir=name, deterministic=True, quick_eval_steps=0)
      runner.train(cfg)
      ckpt = tf.train.latest_checkpoint(cfg.run.model_dir)
      finals.append({n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)})
    self.assertEqual(finals[0].keys(), finals[1].keys())
    for n in finals[0]:
      np.testing.assert_array_equal(finals[0][n], finals[1][n], err_msg=n)

  def test_missing_data_dir_is_a_user_error(self):
    with self.assertRaisesRegex(Exception, "manifest.json not found"):
      runner.train(self._cfg(data_dir="nowhere"))


def dataclasses_replace_steps(cfg, steps):
  import dataclasses  # pylint: disable=g-import-not-at-top
  return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, train_steps=steps))


if __name__ == "__main__":
  tf.test.main()
