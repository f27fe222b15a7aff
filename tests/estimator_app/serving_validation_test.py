"""Parity validation in a fresh process: passes on a faithful export, fails loudly otherwise."""

import json
import os
import shutil
import tempfile

import tensorflow as tf
from absl.testing import absltest

from estimator_app import export
from estimator_app import serving_validation
from tests.estimator_app import serving_testlib as testlib


class ServingValidationTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.m = testlib.write_digits(os.path.join(root, "data"))
    cls.model = testlib.serving_model("dnn", cls.m)
    cls.estimator, cls.ckpt = testlib.train(cls.model, cls.m, os.path.join(root, "dnn"), steps=20)
    cls.examples = export.read_examples(cls.m, "eval", 16)
    no_check = export.ExportOptions(warmup_examples=2, validate_examples=0)
    cls.good = export.export_version(os.path.join(root, "good"), cls.model, cls.ckpt,
                                     cls.examples, no_check).export_dir
    unscaled = export.ServingModel(cls.model.model_def, cls.model.hparams, cls.m.spec, (),
                                   cls.model.train_cfg)
    cls.unscaled = export.export_version(os.path.join(root, "unscaled"), unscaled, cls.ckpt,
                                         cls.examples, no_check).export_dir

  def _validate(self, export_dir, **kwargs):
    args = dict(model_fn=self.model.model_fn(), spec=self.m.spec,
                preprocessing=self.model.preprocessing, checkpoint_path=self.ckpt,
                records=self.examples)
    args.update(kwargs)
    return serving_validation.validate(export_dir, **args)

  def test_faithful_export_passes_in_a_fresh_process(self):
    report = self._validate(self.good)
    self.assertTrue(report["passed"], report.get("problems") or report.get("error"))
    self.assertNotEqual(report["validated_in_pid"], os.getpid())
    self.assertCountEqual(report["signatures"],
                          ["serving_default", "classification", "predict_examples"])
    self.assertEqual(report["signatures"]["classification"]["method_name"],
                     serving_validation.CLASSIFY_METHOD)
    self.assertLessEqual(report["signatures"]["serving_default"]["max_abs_diff"]["probabilities"], 1e-5)
    self.assertLessEqual(report["signatures"]["classification"]["max_abs_diff"]["scores"], 1e-5)
    self.assertEqual(report["signatures"]["predict_examples"]["class_mismatches"], 0)
    self.assertEqual(report["signatures"]["serving_default"]["inputs"]["image"],
                     {"dtype": "uint8", "shape": [-1, 8, 8, 1]})
    self.assertEqual([w["signature"] for w in report["warmup"]],
                     ["serving_default", "classification", "predict_examples"])
    self.assertIn("matches estimator.predict on 16 eval examples",
                  serving_validation.summary(report, None))
    path = os.path.join(self.create_tempdir().full_path, "r.json")
    serving_validation.write_report(report, path)
    with open(path) as f:
      self.assertTrue(json.load(f)["passed"])

  def test_passes_with_the_training_estimator(self):
    report = self._validate(self.good, records=self.examples[:4], estimator=self.estimator)
    self.assertTrue(report["passed"])
    self.assertEqual(report["num_examples"], 4)

  def test_export_with_other_preprocessing_fails(self):
    report = self._validate(self.unscaled)
    self.assertFalse(report["passed"])
    for name in ("serving_default", "classification", "predict_examples"):
      self.assertTrue(any(p.startswith(name) for p in report["problems"]), report["problems"])
    self.assertGreater(report["signatures"]["serving_default"]["max_abs_diff"]["probabilities"], 1e-3)
    message = serving_validation.summary(report, "/x/1.validation.json")
    self.assertIn("does not match estimator.predict on 16 eval examples: ", message)
    self.assertRegex(message, r"serving_default: max \|probabilities - estimator\| = [\d.]+ > 1e-05")
    self.assertRegex(message, r"classification: max \|scores - probabilities\| = [\d.]+ > 1e-05")
    self.assertIn("(details: /x/1.validation.json)", message)

  def test_reference_with_other_preprocessing_fails(self):
    # The same mismatch seen from the other side: a correct export, evaluated differently.
    report = self._validate(self.good, preprocessing=(), records=self.examples[:8])
    self.assertFalse(report["passed"])

  def test_unloadable_export_fails_with_the_child_error(self):
    broken = os.path.join(self.create_tempdir().full_path, "1")
    shutil.copytree(self.good, broken)
    shutil.rmtree(os.path.join(broken, "variables"))
    report = self._validate(broken, records=self.examples[:2])
    self.assertFalse(report["passed"])
    self.assertIn("fresh process failed", report["error"])
    self.assertIn("fresh process failed", serving_validation.summary(report, None))

  def test_needs_records(self):
    with self.assertRaisesRegex(serving_validation.ValidationError, "at least one eval example"):
      self._validate(self.good, records=[])

  def test_report_path_is_beside_the_version(self):
    self.assertEqual(serving_validation.report_path("/e/digits/3/"), "/e/digits/3.validation.json")


if __name__ == "__main__":
  tf.test.main()
