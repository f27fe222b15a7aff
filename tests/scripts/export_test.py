"""//scripts:export: flags -> job, and the job (estimator_app/serving/export_job.py): export from
latest/best/given checkpoints, --validate, publish."""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

import tensorflow as tf
from absl.testing import absltest
from absl.testing import flagsaver
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from estimator_app import config as config_lib
from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.serving import export
from estimator_app.serving import export_job
from estimator_app.serving import publish
from input_fns import errors
from input_fns import input_fn as input_fn_lib
from scripts import export as export_script
from tests.testing import serving as test_serving


class ExportScriptTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.data_dir = os.path.join(cls.root, "digits")
    m = test_serving.write_digits(cls.data_dir)
    # A run like the training app makes: non-default hparams, its config.json beside the
    # checkpoints, evaluations in eval/.
    cls.model = test_serving.serving_model("dnn", m)
    cls.model_dir = os.path.join(cls.root, "run")
    config_lib.save(config_lib.ExperimentConfig(
        model="dnn", hparams=cls.model.hparams,
        data=config_lib.DataConfig(data_dir=cls.data_dir, preprocessing="scale"),
        run=config_lib.RunSettings(model_dir=cls.model_dir)))
    est = tf.estimator.Estimator(cls.model.model_fn(), model_dir=cls.model_dir,
                                 config=tf.estimator.RunConfig(tf_random_seed=1,
                                                               save_checkpoints_steps=10))
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(input_fn_lib.make_input_fn(
            m, "train", input_fn_lib.InputConfig(batch_size=32, seed=1), training=True),
            max_steps=30),
        tf.estimator.EvalSpec(test_serving.eval_input_fn(m, cls.model), steps=None, throttle_secs=0,
                              start_delay_secs=0))

  def _job(self, **overrides):
    job = export_job.ExportJob(
        model_dir=self.model_dir, checkpoint="latest", best_metric="accuracy",
        higher_is_better=True, model=None, data_dir=None, preprocessing=None,
        export_base=self.create_tempdir().full_path, model_name="", validate=False,
        validate_examples=8, tolerance=1e-5, warmup_examples=2, export_dir="", publish_to="")
    return dataclasses.replace(job, **overrides)

  def test_flags_become_a_job_with_resolved_paths(self):
    with flagsaver.flagsaver(model_dir="runs/x", data_dir="data/mnist", checkpoint="best",
                             export_base="out", validate=True):
      with mock.patch.dict(os.environ, {"BUILD_WORKING_DIRECTORY": "/home/u"}):
        job = export_script.job_from_flags()
    self.assertEqual((job.model_dir, job.data_dir, job.export_base),
                     ("/home/u/runs/x", "/home/u/data/mnist", "/home/u/out"))
    self.assertEqual((job.checkpoint, job.model_name, job.validate), ("best", "", True))
    self.assertEqual((job.model, job.preprocessing), (None, None))  # from the run's config.json
    with flagsaver.flagsaver(checkpoint="runs/x/model.ckpt-5", model_name="m"):
      with mock.patch.dict(os.environ, {"BUILD_WORKING_DIRECTORY": "/home/u"}):
        job = export_script.job_from_flags()
    self.assertEqual((job.checkpoint, job.model_name), ("/home/u/runs/x/model.ckpt-5", "m"))
    with flagsaver.flagsaver(model="rnn", preprocessing=""):
      job = export_script.job_from_flags()
    self.assertEqual((job.model, job.preprocessing, job.data_dir), ("rnn", "", None))

  def test_exports_latest_best_and_given_checkpoints_with_validation(self):
    job = self._job(validate=True)
    out = export_job.run(job)
    self.assertEqual((out.version, out.model_name), (1, "digits"))  # named after the dataset
    self.assertEqual(out.export_dir, os.path.join(job.export_base, "digits", "1"))
    meta = export.read_metadata(out.export_dir)
    self.assertEqual((meta["hparams"]["hidden_units"], meta["preprocessing"]), ([16], ["scale"]))
    self.assertEqual(out.checkpoint, tf.train.latest_checkpoint(self.model_dir))
    self.assertTrue(out.validation["passed"])
    # --tolerance was given (1e-5, as its flag default): it wins over the precision's default.
    self.assertEqual(out.validation["tolerance"], {"atol": 1e-5, "rtol": 0.0, "precision": None})
    with open(out.export_dir + ".validation.json") as f:
      self.assertEqual(json.load(f)["num_examples"], 8)

    best = export_job.run(dataclasses.replace(job, checkpoint="best", validate=False))
    self.assertEqual(best.version, 2)
    self.assertIsNone(best.validation)
    self.assertEqual(best.checkpoint,
                     checkpoint_info.resolve(self.model_dir, "best", "accuracy"))
    given = os.path.join(self.model_dir, "model.ckpt-20")
    out = export_job.run(dataclasses.replace(job, checkpoint=given, validate=False))
    self.assertEqual((out.version, export.read_metadata(out.export_dir)["global_step"]), (3, 20))

  def test_validates_an_existing_export(self):
    made = export_job.run(self._job())
    out = export_job.run(self._job(validate=True, export_dir=made.export_dir))
    self.assertIsNone(out.version)
    self.assertTrue(out.validation["passed"])
    self.assertTrue(os.path.exists(made.export_dir + ".validation.json"))

  def test_validate_mismatch_exits_2_with_one_line(self):
    made = export_job.run(self._job(preprocessing=""))  # the wrong chain, not validated
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.export", "--validate", f"--export_dir={made.export_dir}",
         f"--model_dir={self.model_dir}", "--validate_examples=8"],
        env=test_serving.child_env(), capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    self.assertLen(errors, 1)
    self.assertRegex(errors[0], r"does not match estimator.predict on 8 eval examples: .*"
                                r"; worst \w+ (probabilities|scores) at example \d class \d: "
                                r"export [\d.e-]+, estimator [\d.e-]+; tolerance \|export - "
                                r"estimator\| <= 1e-05 \+ 0 \* \|estimator\| \(explicit\)")
    self.assertNotIn("Traceback", proc.stderr)
    with open(made.export_dir + ".validation.json") as f:
      self.assertFalse(json.load(f)["passed"])

  def test_user_errors(self):
    with self.assertRaisesRegex(export.ExportError, "add --validate"):
      export_job.run(self._job(export_dir="/x"))
    with self.assertRaisesRegex(publish.PublishError, "gs://BUCKET/models/NAME"):
      export_job.run(self._job(publish_to="s3://x/y"))
    with self.assertRaisesRegex(errors.UserInputError, "holds no checkpoint"):
      export_job.run(self._job(model_dir=self.create_tempdir().full_path,
                                  data_dir=self.data_dir))
    with self.assertRaisesRegex(errors.UserInputError, "unknown model"):
      export_job.run(self._job(model="nope"))

  def test_a_run_without_config_needs_the_flags(self):
    bare = self.create_tempdir().full_path  # the checkpoints only, no config.json
    ckpt = tf.train.latest_checkpoint(self.model_dir)
    for path in tf.io.gfile.glob(ckpt + ".*"):
      tf.io.gfile.copy(path, os.path.join(bare, os.path.basename(path)))
    job = self._job(model_dir=bare, checkpoint=os.path.join(bare, os.path.basename(ckpt)),
                    data_dir=self.data_dir, model="dnn")
    # Default dnn hparams are not what this checkpoint was trained with: a clear user error.
    with self.assertRaisesRegex(export.ExportError, r"does not match model 'dnn'.*hidden_0/kernel"):
      export_job.run(job)

  def test_publishes_the_new_version(self):
    with test_serving.GcsEmulator() as emulator, \
        mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": emulator.url}):
      client = storage.Client(project="test", credentials=AnonymousCredentials())
      client.create_bucket("serving")
      out = export_job.run(self._job(publish_to="gs://serving/models/digits"))
      self.assertEqual(out.published, "gs://serving/models/digits/1")
      self.assertEqual(publish.list_versions("gs://serving/models/digits", client), {1: True})


if __name__ == "__main__":
  tf.test.main()
