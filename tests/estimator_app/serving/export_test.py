"""Exports of real (tiny) trained models: signatures, versions, parity, kills and exporters."""

import dataclasses
import glob
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

from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.serving import export
from estimator_app.serving import publish
from estimator_app.serving import validation as serving_validation
from estimator_app.serving import warmup
from estimator_app.training import early_stopping
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import gcs
from input_fns import input_fn as input_fn_lib
from model_fns import registry
from tests.testing import serving as test_serving

_NO_VALIDATION = export.ExportOptions(model_name="digits", validate_examples=0)


def _parity_models():
  return [(n, n) for n in ("dnn", "lenet5", "rnn") if n in registry.names()]


class ExportTest(parameterized.TestCase, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Read-only fixture shared by the tests: the dataset and one trained dnn checkpoint.
    cls._root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.m = test_serving.write_digits(os.path.join(cls._root, "data"))
    cls.model = test_serving.serving_model("dnn", cls.m)
    cls.estimator, cls.ckpt = test_serving.train(cls.model, cls.m, os.path.join(cls._root, "dnn"))
    cls.examples = export.read_examples(cls.m, "eval", 32)

  def _base(self):
    return os.path.join(self.create_tempdir().full_path, "digits")

  def test_saved_model_cli_lists_three_signatures_with_dtypes_and_shapes(self):
    result = export.export_version(self._base(), self.model, self.ckpt, self.examples, _NO_VALIDATION)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", result.export_dir], check=True,
                         capture_output=True, text=True, env=test_serving.child_env()).stdout
    blocks = {b.split("']", 1)[0]: b for b in out.split("signature_def['")[1:]}
    self.assertCountEqual(blocks, ["serving_default", "classification", "predict_examples"])

    def io(block):
      found = {}
      for kind, key, dtype, shape in re.findall(
          r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([-\d, ]*\))", block):
        found[(kind, key)] = (dtype, shape)
      return found

    self.assertEqual(io(blocks["serving_default"]), {
        ("inputs", "image"): ("DT_UINT8", "(-1, 8, 8, 1)"),
        ("outputs", "class_ids"): ("DT_INT64", "(-1)"),
        ("outputs", "probabilities"): ("DT_FLOAT", "(-1, 10)"),
        ("outputs", "logits"): ("DT_FLOAT", "(-1, 10)")})
    self.assertEqual(io(blocks["classification"]), {
        ("inputs", "inputs"): ("DT_STRING", "(-1)"),
        ("outputs", "classes"): ("DT_STRING", "(-1, 10)"),
        ("outputs", "scores"): ("DT_FLOAT", "(-1, 10)")})
    self.assertIn("Method name is: tensorflow/serving/classify", blocks["classification"])
    examples_io = io(blocks["predict_examples"])
    self.assertEqual(examples_io[("inputs", "examples")], ("DT_STRING", "(-1)"))
    for key in ("class_ids", "probabilities", "logits"):
      self.assertEqual(examples_io[("outputs", key)], io(blocks["serving_default"])[("outputs", key)])
    self.assertIn("Method name is: tensorflow/serving/predict", blocks["predict_examples"])

  def test_signatures_follow_the_label_kind(self):
    self.assertEqual(export.signatures_for(self.m.spec), export.SIGNATURES)
    columns = [fs.numeric_column("x")]
    self.assertEqual(export.signatures_for(fs.table_spec(columns, ("n", "y"), fs.BINARY)),
                     ("serving_default", "classification", "predict_examples"))
    self.assertEqual(export.signatures_for(fs.table_spec(columns, label_kind=fs.REGRESSION)),
                     ("serving_default", "regression", "predict_examples"))

  def test_tf2_loader_serves_the_raw_signature(self):
    result = export.export_version(self._base(), self.model, self.ckpt, self.examples, _NO_VALIDATION)
    loaded = tf.saved_model.load(result.export_dir)
    self.assertCountEqual(loaded.signatures, export.SIGNATURES)
    raw = warmup.parse_features(self.m.spec, warmup.strip_labels(self.examples[:5]))
    out = loaded.signatures["serving_default"](image=tf.constant(raw["image"]))
    by_examples = loaded.signatures["predict_examples"](
        examples=tf.constant(warmup.strip_labels(self.examples[:5])))
    self.assertAllClose(out["probabilities"], by_examples["probabilities"], atol=1e-6)
    self.assertEqual(out["probabilities"].shape, (5, 10))

  def test_versions_are_increasing_complete_directories(self):
    base = self._base()
    first = export.export_version(base, self.model, self.ckpt, self.examples, _NO_VALIDATION)
    second = export.export_version(base, self.model, self.ckpt, self.examples, _NO_VALIDATION)
    self.assertEqual((first.version, second.version), (1, 2))
    self.assertEqual(sorted(os.listdir(base)), ["1", "2"])  # nothing hidden left behind
    for v in ("1", "2"):
      self.assertCountEqual(os.listdir(os.path.join(base, v)),
                            ["saved_model.pb", "variables", "assets.extra"])
      self.assertCountEqual(os.listdir(os.path.join(base, v, "assets.extra")),
                            [warmup.FILENAME, export.METADATA_FILE])
    meta = export.read_metadata(second.export_dir)
    self.assertEqual(meta["model"], "dnn")
    self.assertEqual(meta["preprocessing"], ["scale"])
    self.assertEqual(meta["global_step"], 30)
    self.assertEqual(meta["checkpoint"], self.ckpt)
    self.assertEqual(meta["hparams"]["hidden_units"], [16])
    # Deleting old versions never lets a number be reused.
    self.assertEqual(export.garbage_collect(base, keep=1), [1])
    self.assertEqual(export.list_versions(base), [2])
    third = export.export_version(base, self.model, self.ckpt, self.examples, _NO_VALIDATION)
    self.assertEqual(third.version, 3)
    self.assertEqual(sorted(os.listdir(base)), ["2", "3"])

  def test_garbage_collect_caps_versions_and_rejected_exports(self):
    base = self._base()
    for name in ("1", "2", "3", ".rejected-4", ".rejected-5"):
      os.makedirs(os.path.join(base, name))
      with open(os.path.join(base, name + ".validation.json"), "w") as f:
        f.write("{}")
    self.assertEqual(export.garbage_collect(base, keep=2), [1])
    self.assertCountEqual(os.listdir(base), ["2", "2.validation.json", "3", "3.validation.json",
                                             ".rejected-4", ".rejected-4.validation.json",
                                             ".rejected-5", ".rejected-5.validation.json"])
    export.garbage_collect(base, keep=1)
    self.assertCountEqual(os.listdir(base), ["3", "3.validation.json", ".rejected-5",
                                             ".rejected-5.validation.json"])
    with self.assertRaisesRegex(export.ExportError, "keep must be >= 1"):
      export.garbage_collect(base, keep=0)

  @parameterized.named_parameters(*_parity_models())
  def test_parity_with_estimator_predict(self, name):
    if name == "dnn":
      model, ckpt = self.model, self.ckpt
    else:
      model = test_serving.serving_model(name, self.m)
      _, ckpt = test_serving.train(model, self.m, self.create_tempdir().full_path, steps=20)
    base = self._base()
    result = export.export_version(base, model, ckpt, self.examples,
                                   export.ExportOptions(model_name="digits", validate_examples=24))
    report = result.validation
    self.assertTrue(report["passed"], report.get("problems") or report.get("error"))
    self.assertEqual(report["num_examples"], 24)
    self.assertEqual(report["tolerance"], {"atol": 1e-5, "rtol": 0.0, "precision": "float32"})
    self.assertCountEqual(report["signatures"], export.SIGNATURES)
    for sig in report["signatures"].values():
      self.assertLessEqual(max(sig["max_abs_diff"].values()), 1e-5)
      self.assertEqual(sig["class_mismatches"], 0)
    self.assertLen(report["warmup"], 3)
    with open(os.path.join(base, "1.validation.json")) as f:
      self.assertEqual(json.load(f)["passed"], True)

  def test_float16_xla_run_exports_with_its_training_estimator_and_passes_validation(self):
    # Issue 13, item 2: with --xla --precision=float16 the exporters' parity reference was the
    # training Estimator's predict() under its XLA session config, the export ran without XLA,
    # and the final export was rejected (max |probabilities - estimator| = 0.000308 > 1e-05 here).
    # XLA clusters CPU graphs only with TF_XLA_FLAGS=--tf_xla_cpu_global_jit, which TensorFlow
    # reads at process start: hence a child process.
    model_dir = self.create_tempdir().full_path
    base = os.path.join(model_dir, "export", "final")
    code = textwrap.dedent(f"""
        from estimator_app.training import distribution
        from estimator_app.serving import export
        from input_fns import manifest
        from tests.testing import serving as test_serving
        m = manifest.read({self.m.directory!r})
        model = test_serving.serving_model("dnn", m, precision="float16")
        estimator, ckpt = test_serving.train(model, m, {model_dir!r}, steps=20,
                                        **distribution.run_config_kwargs(
                                            distribution.DistributionConfig(xla=True)))
        exporter = export.FinalExporter(model, export.read_examples(m, "eval", 32))
        exporter.export(estimator, {base!r}, ckpt, {{}}, is_the_final_export=True)
        """)
    env = dict(test_serving.child_env(), TF_XLA_FLAGS="--tf_xla_cpu_global_jit", TF_CPP_MIN_LOG_LEVEL="0")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("Compiled cluster using XLA", proc.stderr)  # the run really trained under XLA
    self.assertEqual(export.list_versions(base), [1])
    with open(os.path.join(base, "1.validation.json")) as f:
      report = json.load(f)
    self.assertTrue(report["passed"], report["problems"])
    self.assertEqual(report["tolerance"]["precision"], "float16")
    # The reference ran as serving runs the export (no XLA, same precision, the CPU): the same
    # float16 numbers, far inside even the float32 tolerance.
    for sig in report["signatures"].values():
      self.assertLessEqual(max(sig["max_abs_diff"].values()), 1e-5)

  def test_wrong_preprocessing_fails_validation_and_is_never_visible(self):
    base = self._base()
    unscaled = export.ServingModel(self.model.model_def, self.model.hparams, self.m.spec, (),
                                   self.model.train_cfg)
    with mock.patch.object(serving_validation, "validate", wraps=serving_validation.validate) as validate:
      for _ in range(2):  # a rejected export is never reused: the second is validated again
        with self.assertRaisesRegex(serving_validation.ValidationError,
                                    r"does not match estimator.predict.*probabilities"):
          export.export_version(base, unscaled, self.ckpt, self.examples,
                                export.ExportOptions(validate_examples=16), reference=self.model)
    self.assertEqual(validate.call_count, 2)
    self.assertEqual(export.list_versions(base), [])
    self.assertCountEqual(os.listdir(base), [".rejected-1", ".rejected-1.validation.json",
                                             ".rejected-2", ".rejected-2.validation.json"])
    with open(os.path.join(base, ".rejected-1.validation.json")) as f:
      report = json.load(f)
    self.assertFalse(report["passed"])
    self.assertNotIn("validated_as", report)
    self.assertEqual(report["reference_preprocessing"], ["scale"])
    self.assertGreater(report["signatures"]["serving_default"]["max_abs_diff"]["probabilities"], 1e-3)
    # The rejected numbers are used up; the next good export is version 3.
    self.assertEqual(export.export_version(base, self.model, self.ckpt, self.examples,
                                           _NO_VALIDATION).version, 3)

  def _answers(self, export_dir):
    """serving_default's probabilities for 5 eval examples, from the loaded SavedModel."""
    raw = warmup.parse_features(self.m.spec, warmup.strip_labels(self.examples[:5]))
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures["serving_default"](image=tf.constant(raw["image"]))["probabilities"].numpy()

  def test_latest_and_best_of_one_checkpoint_share_one_validated_saved_model(self):
    root = self.create_tempdir().full_path
    # A model name of this test's own: no other test's export of self.ckpt is equal to these.
    options = export.ExportOptions(model_name="digits-shared", warmup_examples=2, validate_examples=8)
    latest = export.LatestExporter(self.model, self.examples, options)
    best = export.BestExporter(self.model, self.examples, options)
    final = export.FinalExporter(self.model, self.examples, options)
    metrics = {"accuracy": 0.5, "loss": 1.0}
    with mock.patch.object(serving_validation, "validate", wraps=serving_validation.validate) as validate, \
         self.assertLogs("absl", level="INFO") as logs:
      first = latest.export(self.estimator, os.path.join(root, "latest"), self.ckpt, metrics, False)
      second = best.export(self.estimator, os.path.join(root, "best"), self.ckpt, metrics, False)
    self.assertEqual(validate.call_count, 1)  # the best export was copied, not validated again
    self.assertEqual((first, second), (os.path.join(root, "latest", "1"), os.path.join(root, "best", "1")))
    lines = [r.getMessage() for r in logs.records if r.getMessage().startswith("exported ")]
    self.assertLen(lines, 2)
    self.assertRegex(lines[0], rf"^exported latest v1 of digits-shared to {re.escape(first)} "
                               r"\(validated, \d+\.\d s\)$")
    self.assertRegex(lines[1], rf"^exported best v1 of digits-shared to {re.escape(second)} "
                               r"\(same SavedModel as latest/1, \d+\.\d s\)$")

    meta = {d: export.read_metadata(d) for d in (first, second)}
    self.assertEqual((meta[first]["exporter"], meta[second]["exporter"]), ("latest", "best"))
    self.assertNotIn("same_as", meta[first])
    self.assertEqual(meta[second]["same_as"], first)
    self.assertEqual(meta[second]["eval_metrics"], metrics)
    self.assertEqual(meta[second]["checkpoint"], self.ckpt)
    reports = {}
    for d in (first, second):
      with open(d + ".validation.json") as f:
        reports[d] = json.load(f)
    self.assertTrue(reports[first]["passed"])
    self.assertNotIn("validated_as", reports[first])
    self.assertEqual((reports[second]["export_dir"], reports[second]["version"]), (second, 1))
    self.assertEqual(reports[second]["validated_as"], first)
    self.assertTrue(reports[second]["passed"])
    self.assertEqual(reports[second]["validated_in_pid"], reports[first]["validated_in_pid"])
    self.assertEqual(reports[second]["serving_process_requests"],
                     reports[first]["serving_process_requests"])
    # Every file but the metadata is a hard link; the metadata is a file of its own.
    for rel in ("saved_model.pb", os.path.join("assets.extra", warmup.FILENAME),
                *[os.path.relpath(p, first) for p in glob.glob(os.path.join(first, "variables", "*"))]):
      self.assertEqual(os.stat(os.path.join(first, rel)).st_ino,
                       os.stat(os.path.join(second, rel)).st_ino, rel)
    rel = os.path.join("assets.extra", export.METADATA_FILE)
    self.assertNotEqual(os.stat(os.path.join(first, rel)).st_ino, os.stat(os.path.join(second, rel)).st_ino)
    answers = self._answers(first)
    self.assertAllEqual(self._answers(second), answers)

    # The first version garbage-collected: the second still serves, and is the next one copied.
    shutil.rmtree(first)
    self.assertAllEqual(self._answers(second), answers)
    with mock.patch.object(serving_validation, "validate", wraps=serving_validation.validate) as validate:
      third = final.export(self.estimator, os.path.join(root, "final"), self.ckpt, metrics, True)
      self.assertEqual(validate.call_count, 0)
      self.assertEqual(export.read_metadata(third)["same_as"], second)
      with open(third + ".validation.json") as f:
        self.assertEqual(json.load(f)["validated_as"], first)
      self.assertAllEqual(self._answers(third), answers)
      # None left: the next export is built and validated again.
      shutil.rmtree(second)
      shutil.rmtree(third)
      again = latest.export(self.estimator, os.path.join(root, "latest"), self.ckpt, metrics, False)
      self.assertEqual(validate.call_count, 1)
    self.assertEqual(again, os.path.join(root, "latest", "2"))
    self.assertNotIn("same_as", export.read_metadata(again))
    self.assertAllEqual(self._answers(again), answers)

  def test_gcs_and_local_exports_of_one_checkpoint_share_one_validation(self):
    options = export.ExportOptions(model_name="digits-gcs", warmup_examples=2, validate_examples=8)
    with test_serving.GcsEmulator() as emulator, \
         mock.patch.dict(os.environ, {gcs.EMULATOR_ENV: emulator.url}), \
         mock.patch.object(serving_validation, "validate", wraps=serving_validation.validate) as validate:
      gcs.make_client().create_bucket("shared")
      # Built and validated locally, published, and its local build kept for the next ones.
      first = export.export_version("gs://shared/models/latest", self.model, self.ckpt,
                                    self.examples, options, exporter="latest")
      local = export.export_version(self._base(), self.model, self.ckpt, self.examples, options,
                                    exporter="best")
      remote = export.export_version("gs://shared/models/final", self.model, self.ckpt,
                                     self.examples, options, exporter="final")
      self.assertEqual(validate.call_count, 1)
      self.assertEqual(first.export_dir, "gs://shared/models/latest/1")
      self.assertNotIn("validated_as", first.validation)
      # Each copies the newest copy still there; all were validated as the first.
      for copied, source in ((local, first), (remote, local)):
        self.assertEqual(copied.validation["validated_as"], first.export_dir)
        self.assertEqual(export.read_metadata(copied.export_dir)["same_as"], source.export_dir)
      self.assertEqual(remote.export_dir, "gs://shared/models/final/1")
      self.assertEqual(export.read_metadata(remote.export_dir)["exporter"], "final")
      self.assertEqual(json.loads(publish.read_text("gs://shared/models/final", "1.validation.json",
                                                    gcs.make_client()))["export_dir"], remote.export_dir)
      self.assertEqual(export.list_versions("gs://shared/models/final"), [1])
      published = sorted(b.name[len("models/final/1/"):] for b in
                         gcs.make_client().list_blobs("shared", prefix="models/final/1/"))
    self.assertEqual(published, sorted(os.path.relpath(os.path.join(d, f), local.export_dir)
                                       for d, _, names in os.walk(local.export_dir) for f in names))
    self.assertEqual(export.read_metadata(local.export_dir)["exporter"], "best")
    built = export.export_version(self._base(), self.model, self.ckpt, self.examples, _NO_VALIDATION)
    self.assertAllEqual(self._answers(local.export_dir), self._answers(built.export_dir))

  def test_another_checkpoint_is_validated_again(self):
    options = export.ExportOptions(model_name="digits-other", warmup_examples=2, validate_examples=8)
    # The same weights under another path, then that checkpoint rewritten (a new .index mtime).
    other = os.path.join(self.create_tempdir().full_path, os.path.basename(self.ckpt))
    for path in glob.glob(self.ckpt + ".*"):
      shutil.copy2(path, other + path[len(self.ckpt):])
    with mock.patch.object(serving_validation, "validate", wraps=serving_validation.validate) as validate:
      results = [export.export_version(self._base(), self.model, self.ckpt, self.examples, options),
                 export.export_version(self._base(), self.model, other, self.examples, options)]
      self.assertEqual(validate.call_count, 2)
      stat = os.stat(other + ".index")
      os.utime(other + ".index", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
      results.append(export.export_version(self._base(), self.model, other, self.examples, options))
      self.assertEqual(validate.call_count, 3)
      # Unchanged since: copied.
      results.append(export.export_version(self._base(), self.model, other, self.examples, options))
      self.assertEqual(validate.call_count, 3)
    self.assertEqual([r.validation.get("validated_as") for r in results],
                     [None, None, None, results[2].export_dir])
    for r in results:
      self.assertTrue(r.validation["passed"])

  def test_a_bad_tolerance_is_refused_before_anything_is_written(self):
    base = self._base()
    with self.assertRaisesRegex(serving_validation.ValidationError, "must not be negative"):
      export.export_version(base, self.model, self.ckpt, self.examples,
                            export.ExportOptions(validate_examples=4, tolerance=-1e-5))
    self.assertFalse(os.path.exists(base))

  def test_killed_export_leaves_no_visible_version(self):
    base = self._base()
    code = textwrap.dedent(f"""
        from estimator_app.serving import export
        from tests.testing import serving as test_serving
        from input_fns import manifest
        m = manifest.read({self.m.directory!r})
        export.export_version({base!r}, test_serving.serving_model("dnn", m), {self.ckpt!r},
                              export.read_examples(m, "eval", 16),
                              export.ExportOptions(validate_examples=16))
        """)
    child = subprocess.Popen([sys.executable, "-c", code], env=test_serving.child_env(),
                             start_new_session=True, stderr=subprocess.PIPE)
    staged = None
    deadline = time.time() + 120
    while staged is None and time.time() < deadline and child.poll() is None:
      for name in os.listdir(base) if os.path.isdir(base) else []:
        if name.startswith(".tmp-") and os.path.exists(os.path.join(base, name, "saved_model.pb")):
          staged = name
      time.sleep(0.02)
    self.assertIsNotNone(staged, f"the export never reached its temporary directory "
                                 f"(exit {child.poll()}): {child.stderr.read() if child.poll() is not None else ''}")
    os.killpg(child.pid, signal.SIGKILL)  # the child and its validation process, mid-export
    child.wait()
    child.stderr.close()
    self.assertEqual(child.returncode, -signal.SIGKILL)
    self.assertEqual(export.list_versions(base), [])
    self.assertEqual([n for n in os.listdir(base) if not n.startswith(".")], [])
    result = export.export_version(base, self.model, self.ckpt, self.examples, _NO_VALIDATION)
    self.assertEqual(result.version, 1)
    self.assertEqual(os.listdir(base), ["1"])  # the killed export's leftovers are gone

  def test_exporters_in_train_and_evaluate(self):
    model_dir = self.create_tempdir().full_path
    est = tf.estimator.Estimator(self.model.model_fn(), model_dir=model_dir, config=tf.estimator.RunConfig(
        tf_random_seed=1, save_checkpoints_steps=10))
    cfg = export.ExportersConfig(
        keep_latest=2, keep_best=2, keep_final=1,
        options=export.ExportOptions(model_name="digits", warmup_examples=2, validate_examples=0))
    exporters = export.make_exporters(self.model, self.examples, cfg)
    self.assertEqual([e.name for e in exporters], ["latest", "best", "final"])
    train_in = input_fn_lib.make_input_fn(self.m, "train", input_fn_lib.InputConfig(
        batch_size=32, seed=1), training=True)
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(train_in, max_steps=30),
        tf.estimator.EvalSpec(test_serving.eval_input_fn(self.m, self.model), steps=None,
                              throttle_secs=0, start_delay_secs=0, exporters=exporters))
    root = os.path.join(model_dir, "export")
    latest = export.list_versions(os.path.join(root, "latest"))
    self.assertLen(latest, 2)
    self.assertGreaterEqual(latest[-1], 3)  # one export per evaluation, oldest deleted
    self.assertEqual(export.read_metadata(os.path.join(root, "latest", str(latest[-1])))["global_step"], 30)
    final = export.list_versions(os.path.join(root, "final"))
    self.assertEqual(final, [1])
    final_meta = export.read_metadata(os.path.join(root, "final", "1"))
    self.assertEqual((final_meta["global_step"], final_meta["exporter"]), (30, "final"))
    best = export.list_versions(os.path.join(root, "best"))
    self.assertBetween(len(best), 1, 2)
    accuracies = [export.read_metadata(os.path.join(root, "best", str(v)))["eval_metrics"]["accuracy"]
                  for v in best]
    self.assertEqual(accuracies, sorted(accuracies))
    self.assertLen(set(accuracies), len(accuracies))  # each best export beat the earlier ones

  def test_best_exporter_resumes_from_exported_metadata(self):
    base = self._base()
    exporter = export.BestExporter(self.model, self.examples, _NO_VALIDATION, keep=2)
    export_path = exporter.export(self.estimator, base, self.ckpt, {"accuracy": 0.5}, False)
    self.assertEqual(export_path, os.path.join(base, "1"))
    again = export.BestExporter(self.model, self.examples, _NO_VALIDATION, keep=2)
    self.assertIsNone(again.export(self.estimator, base, self.ckpt, {"accuracy": 0.5}, False))
    self.assertIsNotNone(again.export(self.estimator, base, self.ckpt, {"accuracy": 0.6}, False))
    lower = export.BestExporter(self.model, self.examples, _NO_VALIDATION, metric="loss",
                                higher_is_better=False)
    with self.assertRaisesRegex(export.ExportError, r"metric 'loss' is not in the evaluation"):
      lower.export(self.estimator, base, self.ckpt, {"accuracy": 0.7}, False)

  def test_resolve_checkpoint(self):
    model_dir = self.create_tempdir().full_path
    est = tf.estimator.Estimator(self.model.model_fn(), model_dir=model_dir, config=tf.estimator.RunConfig(
        tf_random_seed=1, save_checkpoints_steps=10, keep_checkpoint_max=10))
    train_in = input_fn_lib.make_input_fn(self.m, "train", input_fn_lib.InputConfig(
        batch_size=32, seed=1), training=True)
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(train_in, max_steps=20),
        tf.estimator.EvalSpec(test_serving.eval_input_fn(self.m, self.model), steps=None,
                              throttle_secs=0, start_delay_secs=0))
    # No model_dir/best here: "best" falls back to the evaluations of the kept checkpoints.
    self.assertEqual(checkpoint_info.resolve(model_dir, "latest"), tf.train.latest_checkpoint(model_dir))
    scores = {step: m["loss"] for step, m in
              early_stopping.read_eval_metrics(os.path.join(model_dir, "eval")).items()}
    self.assertGreaterEqual(len(scores), 2)
    best_loss_step = min(scores, key=scores.get)
    self.assertEqual(checkpoint_info.resolve(model_dir, "best", "loss", higher_is_better=False),
                     os.path.join(model_dir, f"model.ckpt-{best_loss_step}"))
    prefix = os.path.join(model_dir, "model.ckpt-10")
    self.assertEqual(checkpoint_info.resolve(model_dir, prefix), prefix)
    with self.assertRaisesRegex(errors.UserInputError, r"model.ckpt-7 does not exist"):
      checkpoint_info.resolve(model_dir, os.path.join(model_dir, "model.ckpt-7"))
    with self.assertRaisesRegex(errors.UserInputError, r"holds no checkpoint"):
      checkpoint_info.resolve(self.create_tempdir().full_path, "best")
    with self.assertRaisesRegex(errors.UserInputError, r"no evaluation of 'auc'"):
      checkpoint_info.resolve(model_dir, "best", "auc")

  def test_checkpoint_of_another_model_is_a_user_error(self):
    other = test_serving.serving_model("dnn", self.m)
    wider = dataclasses.replace(other, hparams=dataclasses.replace(other.hparams, hidden_units=(32,)))
    with self.assertRaisesRegex(export.ExportError, r"does not match model 'dnn'"):
      export.export_version(self._base(), wider, self.ckpt, self.examples, _NO_VALIDATION)
    with self.assertRaisesRegex(export.ExportError, r"not found"):
      export.export_version(self._base(), self.model, self.ckpt + "-nope", self.examples,
                            _NO_VALIDATION)

  def test_read_examples_takes_the_first_n_in_file_order(self):
    got = export.read_examples(self.m, "eval", 5)
    self.assertLen(got, 5)
    first = next(iter(tf.compat.v1.io.tf_record_iterator(self.m.files("eval")[0])))
    self.assertEqual(got[0], first)
    self.assertLen(export.read_examples(self.m, "eval", 10**6), self.m.count("eval"))
    self.assertTrue(np.all([len(r) > 0 for r in got]))


if __name__ == "__main__":
  tf.test.main()
