"""Parity validation in the serving process: passes on a faithful export, fails loudly otherwise."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from estimator_app.serving import export
from estimator_app.serving import validation as serving_validation
from tests.testing import serving as test_serving

_SIGNATURES = ["serving_default", "classification", "predict_examples"]

# Stand-ins for the serving process, each failing its first request in its own way.
_FAKE_SERVERS = {
    "garbage": "import sys; sys.stdin.readline(); sys.stderr.write('fake server complains\\n'); "
               "sys.stderr.flush(); print('not json', flush=True); sys.stdin.readline()",
    "hang": "import sys, time; sys.stdin.readline(); sys.stderr.write('fake server complains\\n'); "
            "sys.stderr.flush(); time.sleep(120)",
    "exit": "import sys; sys.stdin.readline(); sys.stderr.write('fake server complains\\n'); "
            "sys.exit(3)",
}


def _gone(pid: int) -> bool:
  """Whether `pid` has exited (a zombie nobody reaped counts as exited)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
  except FileNotFoundError:
    return True


def _wait_gone(pid: int, timeout_s: float = 120) -> bool:
  deadline = time.time() + timeout_s
  while not _gone(pid) and time.time() < deadline:
    time.sleep(0.05)
  return _gone(pid)


@dataclasses.dataclass(frozen=True)
class _Trained:
  """One trained model and its exports, shared read-only by the tests."""
  model: export.ServingModel
  estimator: tf.estimator.Estimator
  ckpt: str  # step 20
  earlier_ckpt: str  # step 10 of the same run: other weights
  good: str  # an export of `ckpt`
  unscaled: str  # an export of `ckpt` without the `scale` preprocessing evaluation runs


class ServingValidationTest(parameterized.TestCase, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.m = test_serving.write_digits(os.path.join(root, "data"))
    cls.examples = export.read_examples(cls.m, "eval", 16)
    no_check = export.ExportOptions(warmup_examples=2, validate_examples=0)
    cls.trained = {}
    for precision in ("float32", "float16"):
      model = test_serving.serving_model("dnn", cls.m, precision=precision)
      estimator, ckpt = test_serving.train(model, cls.m, os.path.join(root, precision), steps=20,
                                      save_checkpoints_steps=10)
      unscaled = dataclasses.replace(model, preprocessing=())
      cls.trained[precision] = _Trained(
          model, estimator, ckpt, ckpt.replace("model.ckpt-20", "model.ckpt-10"),
          export.export_version(os.path.join(root, precision, "good"), model, ckpt,
                                cls.examples, no_check).export_dir,
          export.export_version(os.path.join(root, precision, "unscaled"), unscaled, ckpt,
                                cls.examples, no_check).export_dir)

  def _validate(self, export_dir, precision="float32", **kwargs):
    trained = self.trained[precision]
    args = dict(model_fn=trained.model.model_fn(), spec=self.m.spec,
                preprocessing=trained.model.preprocessing, checkpoint_path=trained.ckpt,
                records=self.examples, precision=precision)
    args.update(kwargs)
    return serving_validation.validate(export_dir, **args)

  def test_faithful_export_passes_in_the_serving_process(self):
    report = self._validate(self.trained["float32"].good)
    self.assertTrue(report["passed"], report.get("problems") or report.get("error"))
    self.assertNotEqual(report["validated_in_pid"], os.getpid())
    self.assertCountEqual(report["seconds"], ["estimator_predict", "serving_process"])
    self.assertCountEqual(report["signatures"], _SIGNATURES)
    self.assertEqual(report["signatures"]["classification"]["method_name"],
                     serving_validation.CLASSIFY_METHOD)
    self.assertLessEqual(report["signatures"]["serving_default"]["max_abs_diff"]["probabilities"], 1e-5)
    self.assertLessEqual(report["signatures"]["classification"]["max_abs_diff"]["scores"], 1e-5)
    self.assertEqual(report["signatures"]["predict_examples"]["class_mismatches"], 0)
    self.assertEqual(report["signatures"]["serving_default"]["inputs"]["image"],
                     {"dtype": "uint8", "shape": [-1, 8, 8, 1]})
    self.assertEqual([w["signature"] for w in report["warmup"]], _SIGNATURES)
    self.assertEqual(report["tolerance"], {"atol": 1e-5, "rtol": 0.0, "precision": "float32"})
    self.assertIn(report["worst"]["signature"], _SIGNATURES)
    self.assertBetween(report["worst"]["example"], 0, 15)
    self.assertLessEqual(report["worst"]["tolerance_share"], 1.0)
    line = serving_validation.summary(report, None)
    self.assertIn("matches estimator.predict on 16 eval examples", line)
    self.assertRegex(line, r"; worst \w+ (probabilities|scores) at example \d+ class \d: "
                           r"export [\d.e-]+, estimator [\d.e-]+; tolerance \|export - estimator\| "
                           r"<= 1e-05 \+ 0 \* \|estimator\| \(float32 default\)$")
    path = os.path.join(self.create_tempdir().full_path, "r.json")
    serving_validation.write_report(report, path)
    with open(path) as f:
      self.assertTrue(json.load(f)["passed"])

  def test_passes_with_the_training_estimator(self):
    trained = self.trained["float32"]
    report = self._validate(trained.good, records=self.examples[:4], estimator=trained.estimator)
    self.assertTrue(report["passed"])
    self.assertEqual(report["num_examples"], 4)

  def test_float16_export_passes_under_the_float16_tolerance(self):
    trained = self.trained["float16"]
    report = self._validate(trained.good, "float16", estimator=trained.estimator)
    self.assertTrue(report["passed"], report.get("problems") or report.get("error"))
    self.assertEqual(report["tolerance"], dataclasses.asdict(serving_validation.TOLERANCES["float16"]))
    self.assertIn("(float16 default)", serving_validation.summary(report, None))

  @parameterized.parameters("float32", "float16")
  def test_export_with_other_preprocessing_fails(self, precision):
    report = self._validate(self.trained[precision].unscaled, precision)
    self.assertFalse(report["passed"])
    self.assertEqual(report["tolerance"]["precision"], precision)
    for name in _SIGNATURES:
      self.assertTrue(any(p.startswith(name) for p in report["problems"]), report["problems"])
    self.assertGreater(report["signatures"]["serving_default"]["max_abs_diff"]["probabilities"], 0.1)
    self.assertGreater(report["worst"]["tolerance_share"], 10)
    message = serving_validation.summary(report, "/x/1.validation.json")
    self.assertIn("does not match estimator.predict on 16 eval examples: ", message)
    self.assertRegex(message, r"serving_default: max \|probabilities - estimator\| = [\d.]+, "
                              r"\d+/160 values out of tolerance")
    self.assertRegex(message, r"classification: max \|scores - probabilities\| = [\d.]+, ")
    worst = report["worst"]
    self.assertIn(f"; worst {worst['signature']} {worst['output']} at example {worst['example']} "
                  f"class {worst['class']}: export {worst['export']:.6g}, "
                  f"estimator {worst['estimator']:.6g}; tolerance ", message)
    self.assertIn(f"({precision} default) (details: /x/1.validation.json)", message)

  @parameterized.parameters("float32", "float16")
  def test_export_of_another_checkpoint_fails(self, precision):
    # The export holds step 20's weights; the reference predicts with step 10's.
    trained = self.trained[precision]
    report = self._validate(trained.good, precision, checkpoint_path=trained.earlier_ckpt)
    self.assertFalse(report["passed"])
    self.assertEqual(report["tolerance"]["precision"], precision)
    self.assertTrue(any(p.startswith("serving_default: max |probabilities - estimator|")
                        for p in report["problems"]), report["problems"])
    self.assertGreater(report["worst"]["tolerance_share"], 1)

  def test_reference_with_other_preprocessing_fails(self):
    # The same mismatch seen from the other side: a correct export, evaluated differently.
    report = self._validate(self.trained["float32"].good, preprocessing=(), records=self.examples[:8])
    self.assertFalse(report["passed"])

  def test_unloadable_export_fails_with_the_serving_process_error_and_it_serves_on(self):
    broken = os.path.join(self.create_tempdir().full_path, "1")
    shutil.copytree(self.trained["float32"].good, broken)
    shutil.rmtree(os.path.join(broken, "variables"))
    report = self._validate(broken, records=self.examples[:2])
    self.assertFalse(report["passed"])
    self.assertRegex(report["error"], r"^loading or calling the SavedModel in the serving process "
                                      r"\(pid \d+\) failed: .*\n.*variables")
    self.assertIn("serving process (pid", serving_validation.summary(report, None))
    # The failure was that request's alone: the same process answers the next one.
    after = self._validate(self.trained["float32"].good, records=self.examples[:2])
    self.assertTrue(after["passed"], after.get("error"))
    self.assertEqual(after["validated_in_pid"], int(re.search(r"pid (\d+)", report["error"])[1]))

  def test_validations_in_a_row_share_one_serving_process(self):
    first = self._validate(self.trained["float32"].good, records=self.examples[:4])
    second = self._validate(self.trained["float32"].good, records=self.examples[:4])
    self.assertTrue(first["passed"] and second["passed"])
    self.assertEqual(first["validated_in_pid"], second["validated_in_pid"])
    self.assertNotEqual(first["validated_in_pid"], os.getpid())
    self.assertEqual(second["serving_process_requests"], first["serving_process_requests"] + 1)
    self.assertEqual(serving_validation.prestart(), first["validated_in_pid"])

  def test_a_killed_serving_process_is_replaced_by_the_next_validation(self):
    first = self._validate(self.trained["float32"].good, records=self.examples[:4])
    os.kill(first["validated_in_pid"], signal.SIGKILL)
    self.assertTrue(_wait_gone(first["validated_in_pid"]))
    second = self._validate(self.trained["float32"].good, records=self.examples[:4])
    self.assertTrue(second["passed"], second.get("error"))
    self.assertNotIn(second["validated_in_pid"], (first["validated_in_pid"], os.getpid()))
    self.assertEqual(second["serving_process_requests"], 1)

  @parameterized.named_parameters(
      ("garbage", "garbage", r"answered garbage \(b'not json\\n'\)"),
      ("hang", "hang", r"did not answer within 2 s"),
      ("exit", "exit", r"exited \(status 3\) before answering"))
  def test_a_broken_serving_process_fails_that_validation_and_the_next_gets_a_new_one(
      self, fake, error):
    serving_validation.shutdown()
    with mock.patch.object(serving_validation, "_serving_command",
                           return_value=[sys.executable, "-c", _FAKE_SERVERS[fake]]), \
         mock.patch.object(serving_validation, "_REQUEST_TIMEOUT_S", 2):
      fake_pid = serving_validation.prestart()
      report = self._validate(self.trained["float32"].good, records=self.examples[:2])
    self.assertFalse(report["passed"])
    self.assertRegex(report["error"], rf"^the serving process \(pid {fake_pid}\) {error}: "
                                      r"fake server complains$")
    self.assertTrue(_wait_gone(fake_pid, timeout_s=10))  # stopped, not left hanging
    after = self._validate(self.trained["float32"].good, records=self.examples[:2])
    self.assertTrue(after["passed"], after.get("error"))
    self.assertNotEqual(after["validated_in_pid"], fake_pid)

  def test_serving_process_exits_when_its_parent_dies(self):
    code = textwrap.dedent("""
        import os
        from estimator_app.serving import validation
        print(validation.prestart(), flush=True)
        os._exit(0)  # no atexit: as if killed
        """)
    proc = subprocess.run([sys.executable, "-c", code], env=test_serving.child_env(),
                          capture_output=True, text=True, timeout=300, check=True)
    pid = int(proc.stdout.split()[-1])
    self.assertTrue(_wait_gone(pid), f"serving process {pid} outlived its parent")

  def test_one_request_runs_in_a_process_of_its_own_too(self):
    def run_alone(request_path):
      subprocess.run([sys.executable, "-m", "estimator_app.serving.validation", request_path],
                     env=test_serving.child_env(), check=True, timeout=300, capture_output=True)
      return {"served": None}

    with mock.patch.object(serving_validation, "_serve", run_alone):
      report = self._validate(self.trained["float32"].good, records=self.examples[:4])
    self.assertTrue(report["passed"], report.get("problems"))
    self.assertNotEqual(report["validated_in_pid"], os.getpid())

  def test_needs_records(self):
    with self.assertRaisesRegex(serving_validation.ValidationError, "at least one eval example"):
      self._validate(self.trained["float32"].good, records=[])

  def test_report_path_is_beside_the_version(self):
    self.assertEqual(serving_validation.report_path("/e/digits/3/"), "/e/digits/3.validation.json")


class ToleranceTest(tf.test.TestCase):

  def test_follows_the_precision_and_an_explicit_one_wins(self):
    self.assertEqual(serving_validation.tolerance_for("float32"),
                     serving_validation.Tolerance(1e-5, 0.0, "float32"))
    f16 = serving_validation.tolerance_for("float16")
    bf16 = serving_validation.tolerance_for("bfloat16")
    self.assertGreater(f16.rtol, 0)
    self.assertGreater(bf16.rtol, f16.rtol)  # bfloat16 keeps 3 fewer mantissa bits
    self.assertEqual(serving_validation.tolerance_for("float16", 1e-5),
                     serving_validation.Tolerance(1e-5, 0.0, None))
    explicit = serving_validation.Tolerance(0.1, 0.2)
    self.assertIs(serving_validation.tolerance_for("nope", explicit), explicit)
    self.assertIn("(explicit)", explicit.describe())
    np.testing.assert_allclose(f16.allowed(np.array([0.0, 0.5, -1.0])),
                               [f16.atol, f16.atol + 0.5 * f16.rtol, f16.atol + f16.rtol])

  def test_a_regression_default_adds_a_relative_part(self):
    f32 = serving_validation.tolerance_for("float32", label_kind="regression")
    self.assertEqual(f32, serving_validation.Tolerance(1e-5, 1e-5, "float32"))
    # 1e4 +- 2 float32 ulps passes; the classifiers' absolute 1e-5 would refuse it.
    value = np.float32(1e4)
    nudged = np.nextafter(np.nextafter(value, np.float32(2e4)), np.float32(2e4))
    self.assertLessEqual(abs(float(nudged) - float(value)), f32.allowed(np.array(1e4)))
    self.assertGreater(abs(float(nudged) - float(value)),
                       serving_validation.tolerance_for("float32").allowed(np.array(1e4)))
    self.assertEqual(serving_validation.tolerance_for("float16", label_kind="regression"),
                     serving_validation.TOLERANCES["float16"])  # relative already
    self.assertEqual(serving_validation.tolerance_for("float32", 1e-4, label_kind="regression"),
                     serving_validation.Tolerance(1e-4, 0.0, None))  # an explicit one wins

  def test_unknown_precision_and_negative_tolerance_are_user_errors(self):
    with self.assertRaisesRegex(serving_validation.ValidationError, r"precision 'float8'"):
      serving_validation.tolerance_for("float8")
    with self.assertRaisesRegex(serving_validation.ValidationError, "must not be negative"):
      serving_validation.tolerance_for("float32", -1.0)

  def test_near_ties_are_not_class_mismatches_but_real_flips_are(self):
    f16 = serving_validation.tolerance_for("float16")
    probabilities = np.array([[0.4500, 0.4502, 0.0998],   # a near-tie of classes 1 and 0
                              [0.2, 0.7, 0.1],            # class 1 by far
                              [0.3, 0.3, 0.4]])           # class 2 by far
    class_ids = np.argmax(probabilities, axis=-1)
    same = serving_validation.class_mismatches(class_ids, probabilities, class_ids, f16)
    self.assertEqual(same, (0, 0))
    flipped_tie = serving_validation.class_mismatches(np.array([0, 1, 2]), probabilities, class_ids, f16)
    self.assertEqual(flipped_tie, (0, 1))
    wrong = serving_validation.class_mismatches(np.array([0, 0, 7]), probabilities, class_ids, f16)
    self.assertEqual(wrong, (2, 1))  # a clearly worse class and a class that does not exist
    # Under float32 the same 2e-4 gap is far outside the tolerance: a real mismatch.
    f32 = serving_validation.tolerance_for("float32")
    self.assertEqual(serving_validation.class_mismatches(np.array([0, 1, 2]), probabilities,
                                                         class_ids, f32), (1, 0))


if __name__ == "__main__":
  tf.test.main()
