"""Exports of models trained on a TABLE, per label kind, served in a fresh process.

For binary, multiclass and regression labels over one table (a numeric column with missing
values, a categorical column and a multivalent one with vocabulary files, a text column whose
name is no TF op name), a registered table model is trained 30 steps and exported with parity
validation. Then the dataset directory is moved away and a fresh Python process loads the
SavedModel the way TF Serving does (a TF1 session, the `serve` tag, signatures by tensor name)
and answers eval examples, examples with categories no vocabulary holds, and examples lacking
columns, on every signature; its answers must equal Estimator.predict's.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized
from tensorflow.core.protobuf import saved_model_pb2

from estimator_app.serving import export
from estimator_app.serving import validation as serving_validation
from estimator_app.serving import warmup
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from model_fns import registry
from tests.testing import serving as test_serving

_KINDS = (fs.BINARY, fs.MULTICLASS, fs.REGRESSION)
# Each label kind trains another table model, so every table model's graph is served once.
_MODELS = {fs.BINARY: "wide_deep", fs.MULTICLASS: "dnn", fs.REGRESSION: "linear"}
_ATOL = 1e-5  # the float32 parity tolerance (the regression default adds as much relative)

# A fresh process serving an export as TF Serving would; argv[1] names a JSON request:
# export_dir, probes (name -> path prefix of <prefix>.tfrecord and <prefix>.npz, the raw
# features), arrays_out and info_out.
_SERVE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from estimator_app.serving import validation, warmup
    req = json.load(open(sys.argv[1]))
    arrays, info = {}, {"signatures": {}, "warmup": []}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], req["export_dir"])
      # The TF1 builder lists its assets in a collection (loaders read both places).
      from tensorflow.core.protobuf import meta_graph_pb2
      assets = list(meta.asset_file_def) or [
          meta_graph_pb2.AssetFileDef.FromString(v.value)
          for v in meta.collection_def["saved_model_assets"].any_list.value]
      info["asset_files"] = sorted({a.filename for a in assets})  # wide_deep: 2 tables a file
      shape = lambda t: [d.size for d in t.tensor_shape.dim]
      for name, sig in meta.signature_def.items():
        info["signatures"][name] = {
            "method_name": sig.method_name,
            "inputs": {k: [tf.as_dtype(v.dtype).name, shape(v)] for k, v in sig.inputs.items()},
            "outputs": {k: [tf.as_dtype(v.dtype).name, shape(v)] for k, v in sig.outputs.items()}}
      for probe, prefix in req["probes"].items():
        records = list(tf.compat.v1.io.tf_record_iterator(prefix + ".tfrecord"))
        with np.load(prefix + ".npz", allow_pickle=True) as f:
          raw = {k: f[k] for k in f.files}
        for name, sig in meta.signature_def.items():
          if name == "serving_default":
            feeds = {v.name: raw[k] for k, v in sig.inputs.items()}
          else:
            feeds = {v.name: records for v in sig.inputs.values()}
          for k, v in sess.run({k: v.name for k, v in sig.outputs.items()}, feeds).items():
            arrays[f"{probe}/{name}/{k}"] = v.astype(np.bytes_) if v.dtype == object else v
      for log in warmup.read(req["export_dir"]):
        info["warmup"].append(validation.replay_warmup(sess, meta, log))
    np.savez(req["arrays_out"], **arrays)
    json.dump(info, open(req["info_out"], "w"))
    """)


@dataclasses.dataclass(frozen=True)
class _Exported:
  """One label kind's dataset, trained model, export and answers, shared read-only."""
  m: manifest_lib.Manifest
  model: export.ServingModel
  estimator: tf.estimator.Estimator
  ckpt: str  # step 30
  earlier_ckpt: str  # step 10 of the same run: other weights
  result: export.ExportResult
  probes: Dict[str, List[bytes]]  # probe name -> serialized examples (no labels)
  reference: Dict[str, Dict[str, np.ndarray]]  # probe -> Estimator.predict's predictions
  served: Dict[str, Any]  # the fresh process's info and its outputs ("probe/signature/key")
  dataset_seen_by_server: bool  # whether the dataset directory existed while it served


def _unseen_examples(spec: fs.FeatureSpec) -> List[bytes]:
  """Rows with categories and words no vocabulary or training row holds; the last is the first
  with a known color."""
  text = test_serving.TEXT_COLUMN
  rows = [
      {"age": 33.0, "color": "purple", "tags": ["zzz"], text: "never seen"},
      {"age": 50.0, "color": "violet", "tags": ["a", "yyy", "b"], text: "good unheard"},
      {"age": 33.0, "color": "red", "tags": ["zzz"], text: "never seen"},
  ]
  label = 0.5 if spec.label_kind == fs.REGRESSION else 0
  return warmup.strip_labels([spec.encode(r, label) for r in rows])


def _lacking_columns(spec: fs.FeatureSpec, record: bytes) -> List[bytes]:
  """`record` without each column in turn, then without any column (an empty Example)."""
  out = []
  for f in spec.features:
    example = tf.train.Example.FromString(record)
    del example.features.feature[f.name]
    out.append(example.SerializeToString())
  out.append(tf.train.Example().SerializeToString())
  return out


def _predict(estimator: tf.estimator.Estimator, spec: fs.FeatureSpec,
             records: List[bytes]) -> Dict[str, np.ndarray]:
  """Estimator.predict on serialized examples parsed with the dataset's own spec."""
  def input_fn():
    ds = tf.data.Dataset.from_tensors(tf.constant(records, tf.string))
    return ds.map(lambda s: spec.parse_batch(s, with_label=False)[0])

  batches = list(estimator.predict(input_fn, yield_single_examples=False))
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _serve_in_fresh_process(export_dir: str, spec: fs.FeatureSpec,
                            probes: Dict[str, List[bytes]], work: str) -> Dict[str, Any]:
  request = {"export_dir": export_dir, "probes": {},
             "arrays_out": os.path.join(work, "outputs.npz"),
             "info_out": os.path.join(work, "info.json")}
  for name, records in probes.items():
    prefix = os.path.join(work, name)
    with tf.io.TFRecordWriter(prefix + ".tfrecord") as w:
      for r in records:
        w.write(r)
    np.savez(prefix + ".npz", **warmup.parse_features(spec, records))
    request["probes"][name] = prefix
  path = os.path.join(work, "request.json")
  with open(path, "w") as f:
    json.dump(request, f)
  env = dict(test_serving.child_env(), CUDA_VISIBLE_DEVICES="-1")
  proc = subprocess.run([sys.executable, "-c", _SERVE, path], env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  if proc.returncode:
    raise AssertionError(f"the fresh serving process failed:\n{proc.stderr[-3000:]}")
  with open(request["info_out"]) as f:
    served = json.load(f)
  with np.load(request["arrays_out"]) as arrays:
    served["outputs"] = {k: arrays[k] for k in arrays.files}
  return served


def _export_one(root: str, label_kind: str) -> _Exported:
  data = os.path.join(root, f"data-{label_kind}")
  m = test_serving.write_table(data, label_kind)
  name = _MODELS[label_kind]
  model = test_serving.serving_model(name, m, preprocessing=())
  # shuffle_buffer=0: the training input_fn cannot yet shuffle a multivalent column (its
  # window permutation needs static shapes).
  estimator, ckpt = test_serving.train(model, m, os.path.join(root, f"model-{label_kind}"),
                                       steps=30, shuffle_buffer=0, save_checkpoints_steps=10)
  examples = export.read_examples(m, "eval", m.count("eval"))
  result = export.export_version(
      os.path.join(root, "exports", label_kind), model, ckpt, examples,
      export.ExportOptions(model_name=f"table-{label_kind}", warmup_examples=4,
                           validate_examples=32),
      estimator=estimator)
  probes = {"eval": warmup.strip_labels(examples), "unseen": _unseen_examples(m.spec),
            "lacking": _lacking_columns(m.spec, warmup.strip_labels(examples[:1])[0])}
  # The reference reads the vocabularies from the dataset directory, so it runs first: the
  # eval records through the evaluation input_fn, the probes parsed with the spec.
  batches = list(estimator.predict(test_serving.eval_input_fn(m, model),
                                   yield_single_examples=False))
  reference = {"eval": {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}}
  reference.update({p: _predict(estimator, m.spec, probes[p]) for p in ("unseen", "lacking")})
  # The server must not read the dataset directory: move it away while it serves.
  moved = data + ".moved"
  os.rename(data, moved)
  try:
    with tempfile.TemporaryDirectory(dir=root) as work:
      seen = os.path.exists(data)
      served = _serve_in_fresh_process(result.export_dir, m.spec, probes, work)
  finally:
    os.rename(moved, data)
  return _Exported(m, model, estimator, ckpt, ckpt.replace("model.ckpt-30", "model.ckpt-10"),
                   result, probes, reference, served, seen)


class TableServingTest(parameterized.TestCase, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.exported = {kind: _export_one(cls._root, kind) for kind in _KINDS}

  def _outputs(self, kind: str, probe: str, signature: str) -> Dict[str, np.ndarray]:
    prefix = f"{probe}/{signature}/"
    return {k[len(prefix):]: v for k, v in self.exported[kind].served["outputs"].items()
            if k.startswith(prefix)}

  def test_every_table_model_is_registered_for_tables(self):
    for name in set(_MODELS.values()):
      self.assertIn(fs.TABLE, registry.get(name).input_kinds, name)

  @parameterized.parameters(*_KINDS)
  def test_signatures_follow_the_label_kind(self, kind):
    e = self.exported[kind]
    sigs = e.served["signatures"]
    self.assertEqual(export.signatures_for(e.m.spec),
                     export.REGRESSION_SIGNATURES if kind == fs.REGRESSION else export.SIGNATURES)
    self.assertCountEqual(sigs, export.signatures_for(e.m.spec))
    self.assertEqual(export.read_metadata(e.result.export_dir)["signatures"],
                     list(export.signatures_for(e.m.spec)))
    self.assertEqual(sigs["serving_default"]["inputs"], {
        "age": ["float32", [-1, 1]], "color": ["string", [-1, 1]], "tags": ["string", [-1, -1]],
        test_serving.TEXT_COLUMN: ["string", [-1, 1]]})
    self.assertEqual(sigs["predict_examples"]["inputs"], {"examples": ["string", [-1]]})
    c = len(test_serving.TABLE_LABELS[kind])
    if kind == fs.REGRESSION:
      self.assertEqual(sigs["serving_default"]["outputs"], {"predictions": ["float32", [-1, 1]]})
      self.assertEqual(sigs["regression"], {
          "method_name": serving_validation.REGRESS_METHOD,
          "inputs": {"inputs": ["string", [-1]]}, "outputs": {"outputs": ["float32", [-1]]}})
      return
    classifier_outputs = {"class_ids": ["int64", [-1]], "probabilities": ["float32", [-1, c]],
                          "logits": ["float32", [-1, c if kind == fs.MULTICLASS else 1]]}
    if kind == fs.BINARY:
      classifier_outputs["logistic"] = ["float32", [-1, 1]]
    self.assertEqual(sigs["serving_default"]["outputs"], classifier_outputs)
    self.assertEqual(sigs["classification"], {
        "method_name": serving_validation.CLASSIFY_METHOD,
        "inputs": {"inputs": ["string", [-1]]},
        "outputs": {"classes": ["string", [-1, c]], "scores": ["float32", [-1, c]]}})

  @parameterized.parameters(*_KINDS)
  def test_vocabularies_are_assets_and_the_server_never_reads_the_dataset(self, kind):
    e = self.exported[kind]
    self.assertFalse(e.dataset_seen_by_server)
    assets = os.path.join(e.result.export_dir, "assets")
    self.assertCountEqual(os.listdir(assets), ["color.vocab", "tags.vocab"])
    self.assertEqual(e.served["asset_files"], ["color.vocab", "tags.vocab"])
    for name in ("color.vocab", "tags.vocab"):
      with open(os.path.join(assets, name), "rb") as a, \
           open(os.path.join(e.m.directory, name), "rb") as d:
        self.assertEqual(a.read(), d.read())

  @parameterized.parameters(*_KINDS)
  def test_export_was_validated_on_every_signature_of_its_kind(self, kind):
    report = self.exported[kind].result.validation
    self.assertTrue(report["passed"], report.get("problems") or report.get("error"))
    self.assertCountEqual(report["signatures"], export.signatures_for(self.exported[kind].m.spec))
    self.assertEqual(report["tolerance"]["rtol"], _ATOL if kind == fs.REGRESSION else 0.0)
    for name, sig in report["signatures"].items():
      self.assertLessEqual(max(sig["max_abs_diff"].values()), _ATOL, name)
      if kind != fs.REGRESSION:
        self.assertEqual(sig["class_mismatches"], 0, name)
    headline = "predictions" if kind == fs.REGRESSION else "probabilities"
    self.assertIn(headline, report["signatures"]["serving_default"]["max_abs_diff"])
    with open(self.exported[kind].result.export_dir + ".validation.json") as f:
      self.assertTrue(json.load(f)["passed"])

  @parameterized.product(kind=_KINDS, probe=("eval", "unseen", "lacking"))
  def test_fresh_process_answers_equal_estimator_predict(self, kind, probe):
    e = self.exported[kind]
    ref = e.reference[probe]
    n = len(e.probes[probe])
    for signature in ("serving_default", "predict_examples"):
      outputs = self._outputs(kind, probe, signature)
      for key, value in outputs.items():
        self.assertEqual(value.shape, ref[key].shape, (signature, key))
        if np.issubdtype(value.dtype, np.floating):
          self.assertTrue(np.all(np.isfinite(value)), (signature, key))
          self.assertAllClose(value, ref[key], atol=_ATOL, rtol=0, msg=f"{signature} {key}")
        else:
          self.assertAllEqual(value, ref[key], msg=f"{signature} {key}")
    if kind == fs.REGRESSION:
      regress = self._outputs(kind, probe, "regression")
      self.assertEqual(regress["outputs"].shape, (n,))
      self.assertAllClose(regress["outputs"], ref["predictions"][:, 0], atol=_ATOL, rtol=_ATOL)
    else:
      classify = self._outputs(kind, probe, "classification")
      self.assertAllClose(classify["scores"], ref["probabilities"], atol=_ATOL, rtol=0)
      self.assertAllEqual(classify["classes"],
                          np.tile(np.array(test_serving.TABLE_LABELS[kind], np.bytes_), [n, 1]))

  @parameterized.parameters(*_KINDS)
  def test_unseen_categories_get_an_answer_of_their_own(self, kind):
    e = self.exported[kind]
    raw = warmup.parse_features(e.m.spec, e.probes["unseen"])
    self.assertAllEqual(raw["tags"], [[b"zzz", b"", b""], [b"a", b"yyy", b"b"],
                                      [b"zzz", b"", b""]])
    for signature in ("serving_default", "predict_examples"):
      out = self._outputs(kind, "unseen", signature)
      headline = out["predictions" if kind == fs.REGRESSION else "probabilities"]
      self.assertTrue(np.all(np.isfinite(headline)))
      # Rows 0 and 2 differ only in the color: an unseen one is not read as "red".
      self.assertNotAllClose(headline[0], headline[2])

  @parameterized.parameters(*_KINDS)
  def test_a_column_an_example_lacks_takes_its_missing_value(self, kind):
    e = self.exported[kind]
    raw = warmup.parse_features(e.m.spec, e.probes["lacking"])
    # Rows: without age, color, tags, note text in turn; then an empty Example.
    self.assertTrue(np.isnan(raw["age"][0, 0]) and np.isnan(raw["age"][-1, 0]))
    self.assertEqual((raw["color"][1, 0], raw["color"][-1, 0]), (b"", b""))
    self.assertTrue(np.all(raw["tags"][2] == b"") and np.all(raw["tags"][-1] == b""))
    self.assertEqual(raw[test_serving.TEXT_COLUMN][3, 0], b"")
    # Examples lacking columns answer as the raw signature fed their missing values does.
    by_examples = self._outputs(kind, "lacking", "predict_examples")
    by_raw = self._outputs(kind, "lacking", "serving_default")
    self.assertCountEqual(by_raw, by_examples)
    for key in by_raw:
      self.assertAllEqual(by_raw[key], by_examples[key], msg=key)

  @parameterized.parameters(*_KINDS)
  def test_warmup_requests_parse_and_run_one_per_signature(self, kind):
    e = self.exported[kind]
    logs = warmup.read(e.result.export_dir)
    self.assertEqual([warmup.signature_of(log) for log in logs],
                     list(export.signatures_for(e.m.spec)))
    by_examples = "regress_log" if kind == fs.REGRESSION else "classify_log"
    self.assertEqual([log.WhichOneof("log_type") for log in logs],
                     ["predict_log", by_examples, "predict_log"])
    raw = logs[0].predict_log.request.inputs
    self.assertCountEqual(raw, [f.name for f in e.m.spec.features])
    self.assertEqual(tf.make_ndarray(raw["tags"]).shape[0], 4)
    self.assertEqual(tf.make_ndarray(raw["color"]).dtype, object)
    examples = getattr(logs[1], by_examples).request.input.example_list.examples
    self.assertLen(examples, 4)
    self.assertNotIn(fs.LABEL_KEY, examples[0].features.feature)
    replays = e.served["warmup"]
    self.assertEqual([r["signature"] for r in replays], list(export.signatures_for(e.m.spec)))
    for replay in replays:
      self.assertNotIn("error", replay)
    if kind == fs.REGRESSION:
      self.assertEqual(replays[1]["output_shapes"], {"outputs": [4]})
    else:
      c = len(test_serving.TABLE_LABELS[kind])
      self.assertEqual(replays[1]["output_shapes"], {"classes": [4, c], "scores": [4, c]})

  @parameterized.parameters(*_KINDS)
  def test_validation_against_another_checkpoint_fails(self, kind):
    e = self.exported[kind]
    report = serving_validation.validate(
        e.result.export_dir, model_fn=e.model.model_fn(), spec=e.m.spec, preprocessing=(),
        checkpoint_path=e.earlier_ckpt, records=export.read_examples(e.m, "eval", 16))
    self.assertFalse(report["passed"])
    headline = "predictions" if kind == fs.REGRESSION else "probabilities"
    problems = "\n".join(report["problems"])
    self.assertIn(f"serving_default: max |{headline} - estimator|", problems)
    self.assertIn(f"predict_examples: max |{headline} - estimator|", problems)
    if kind == fs.REGRESSION:
      self.assertIn("regression: max |outputs - predictions|", problems)
      self.assertNotIn("class", report["worst"])
    else:
      self.assertIn("classification: max |scores - probabilities|", problems)
    self.assertGreater(report["worst"]["tolerance_share"], 1)


  def test_an_export_whose_vocabularies_are_not_its_assets_fails_validation(self):
    e = self.exported[fs.BINARY]
    # The export as a builder without assets_collection writes it: no assets/, and the graph's
    # vocabulary path constants still pointing into the dataset directory.
    broken = os.path.join(self.create_tempdir().full_path, "1")
    shutil.copytree(e.result.export_dir, broken)
    shutil.rmtree(os.path.join(broken, "assets"))
    path = os.path.join(broken, "saved_model.pb")
    with open(path, "rb") as f:
      saved = saved_model_pb2.SavedModel.FromString(f.read())
    del saved.meta_graphs[0].collection_def[tf.compat.v1.saved_model.ASSETS_KEY]
    with open(path, "wb") as f:
      f.write(saved.SerializeToString())
    report = serving_validation.validate(
        broken, model_fn=e.model.model_fn(), spec=e.m.spec, preprocessing=(),
        checkpoint_path=e.ckpt, records=export.read_examples(e.m, "eval", 8))
    self.assertFalse(report["passed"])
    self.assertEqual(report["files_outside_export"],
                     [os.path.join(e.m.directory, "color.vocab"),
                      os.path.join(e.m.directory, "tags.vocab")])
    self.assertIn(f"its lookup tables read {os.path.join(e.m.directory, 'color.vocab')}, which "
                  f"is not among its assets/", "\n".join(report["problems"]))
    # Its answers are right while the dataset is there: only the asset check tells.
    for sig in report["signatures"].values():
      self.assertEqual(sig["problems"], [])
    self.assertEqual(e.result.validation["files_outside_export"], [])


if __name__ == "__main__":
  tf.test.main()
