"""Parity check of an export: what TF Serving would answer == what estimator.predict answers.

The SavedModel is loaded in a FRESH Python process (`sys.executable -m
estimator_app.serving_validation REQUEST.json`), the way TF Serving loads it: a TF1 session,
the `serve` tag, every signature called by its tensor names. Nothing of the exporting process
(graph, variables, Keras name counters, imported modules) can leak into the answer. The child
calls every signature on the same N eval examples (labels stripped, as a client sends them):

  * string inputs get the serialized tf.Examples;
  * other inputs get the raw feature of the same name, decoded with the dataset's spec;

and replays the warm-up requests. The parent computes the reference with
`estimator.predict` over the dataset's own evaluation input_fn (`input_fns.dataset`) fed with
the same records, then compares, per signature:

  * Predict signatures: `probabilities` (max abs difference <= tolerance) and `class_ids`
    (equal); every other shared float output is reported;
  * Classify signatures: `scores` vs probabilities, and the top class name vs the label name
    of the reference class id; each row of `classes` must be the label names.

The report (a JSON-able dict) says `passed` and holds the figures. `ValidationError` (a
UserInputError) is what callers raise on a failed report.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from estimator_app import warmup
from input_fns import dataset
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib

CLASSIFY_METHOD = "tensorflow/serving/classify"
_SPLIT = "eval"
_CHILD_TIMEOUT_S = 600


class ValidationError(errors.UserInputError):
  """An export does not answer like estimator.predict (or cannot be loaded/called)."""


def _reference_predictions(records: Sequence[bytes], work_dir: str, model_fn, spec: fs.FeatureSpec,
                           preprocessing: Sequence[str], checkpoint_path: str,
                           estimator: Optional[tf.estimator.Estimator]) -> Dict[str, np.ndarray]:
  """estimator.predict over the evaluation input_fn, reading exactly `records` in order."""
  name = "eval-00000-of-00001.tfrecord"
  path = os.path.join(work_dir, name)
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r)
  m = manifest_lib.Manifest(
      directory=work_dir, spec=spec,
      splits={_SPLIT: (manifest_lib.Shard(name, len(records), os.path.getsize(path),
                                          manifest_lib.file_sha256(path)),)},
      compression="", source={"format": "validation"})
  input_fn = dataset.make_input_fn(
      m, _SPLIT, dataset.InputConfig(batch_size=len(records), preprocessing=tuple(preprocessing)),
      training=False)
  est = estimator or tf.estimator.Estimator(model_fn, model_dir=os.path.join(work_dir, "estimator"))
  batches = list(est.predict(input_fn, checkpoint_path=checkpoint_path,
                             yield_single_examples=False))
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _run_child(export_dir: str, spec: fs.FeatureSpec, records: Sequence[bytes],
               work_dir: str) -> Dict[str, Any]:
  """Runs every signature of the export in a fresh process; returns its outputs and info."""
  stripped = warmup.strip_labels(records)
  records_path = os.path.join(work_dir, "requests.tfrecord")
  with tf.io.TFRecordWriter(records_path) as w:
    for r in stripped:
      w.write(r)
  raw_path = os.path.join(work_dir, "raw.npz")
  np.savez(raw_path, **warmup.parse_features(spec, stripped))
  request = {"export_dir": export_dir, "records": records_path, "raw": raw_path,
             "arrays_out": os.path.join(work_dir, "outputs.npz"),
             "info_out": os.path.join(work_dir, "outputs.json")}
  request_path = os.path.join(work_dir, "request.json")
  with open(request_path, "w") as f:
    json.dump(request, f)
  env = dict(os.environ)
  # The child must import this package the way the parent did (bazel runfiles or a checkout).
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  proc = subprocess.run([sys.executable, "-m", "estimator_app.serving_validation", request_path],
                        env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S,
                        check=False)
  if proc.returncode != 0:
    tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
    return {"error": f"loading or calling the SavedModel in a fresh process failed "
                     f"(exit {proc.returncode}): {tail}"}
  with open(request["info_out"]) as f:
    info = json.load(f)
  with np.load(request["arrays_out"]) as arrays:
    info["outputs"] = {k: arrays[k] for k in arrays.files}
  return info


def _compare_predict(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                     tolerance: float) -> Dict[str, Any]:
  res: Dict[str, Any] = {"max_abs_diff": {}}
  problems = []
  if "probabilities" not in outputs:
    problems.append("no probabilities output")
  for key, value in outputs.items():
    if key not in ref:
      continue
    if value.shape != ref[key].shape:
      problems.append(f"{key} has shape {value.shape}, estimator.predict {ref[key].shape}")
      continue
    if np.issubdtype(value.dtype, np.floating):
      res["max_abs_diff"][key] = float(np.max(np.abs(value - ref[key]))) if value.size else 0.0
    else:
      res.setdefault("mismatches", {})[key] = int(np.sum(np.any(
          (value != ref[key]).reshape(len(value), -1), axis=1)))
  diff = res["max_abs_diff"].get("probabilities")
  if diff is not None and diff > tolerance:
    problems.append(f"max |probabilities - estimator| = {diff:.3g} > {tolerance:g}")
  classes = outputs.get("class_ids")
  if classes is None and "probabilities" in outputs:
    classes = np.argmax(outputs["probabilities"], axis=-1)
  if classes is not None and classes.shape == ref["class_ids"].shape:
    res["class_mismatches"] = int(np.sum(classes != ref["class_ids"]))
    if res["class_mismatches"]:
      problems.append(f"{res['class_mismatches']}/{len(classes)} classes differ")
  res["problems"] = problems
  return res


def _compare_classify(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                      spec: fs.FeatureSpec, tolerance: float) -> Dict[str, Any]:
  problems = []
  scores, classes = outputs.get("scores"), outputs.get("classes")
  if scores is None or classes is None:
    return {"problems": [f"Classify outputs must be scores and classes, got {sorted(outputs)}"]}
  res: Dict[str, Any] = {}
  if scores.shape != ref["probabilities"].shape or classes.shape != scores.shape:
    return {"problems": [f"scores {scores.shape} / classes {classes.shape} do not match "
                         f"estimator probabilities {ref['probabilities'].shape}"]}
  res["max_abs_diff"] = {"scores": float(np.max(np.abs(scores - ref["probabilities"])))}
  if res["max_abs_diff"]["scores"] > tolerance:
    problems.append(f"max |scores - probabilities| = {res['max_abs_diff']['scores']:.3g} > {tolerance:g}")
  names = np.array(spec.label_names)
  decoded = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else str(b))(classes)
  if not np.all(decoded == names[np.newaxis]):
    problems.append("classes rows are not the label names in label order")
  top = decoded[np.arange(len(scores)), np.argmax(scores, axis=-1)]
  res["class_mismatches"] = int(np.sum(top != names[ref["class_ids"]]))
  if res["class_mismatches"]:
    problems.append(f"{res['class_mismatches']}/{len(scores)} top classes differ")
  res["problems"] = problems
  return res


def validate(export_dir: str, *, model_fn, spec: fs.FeatureSpec, preprocessing: Sequence[str],
             checkpoint_path: str, records: Sequence[bytes], tolerance: float = 1e-5,
             estimator: Optional[tf.estimator.Estimator] = None) -> Dict[str, Any]:
  """Compares every signature of an export with estimator.predict on `records`.

  Args:
    export_dir: a local SavedModel directory.
    model_fn: the Estimator model_fn the reference runs (ignored if `estimator` is given).
    spec: the dataset's feature spec (decodes the raw inputs, names the classes).
    preprocessing: the evaluation preprocessing chain (the reference's, not the export's).
    checkpoint_path: the checkpoint the export was made from.
    records: serialized eval tf.Examples WITH labels (the eval input_fn parses them).
    tolerance: max abs difference of probabilities accepted.
    estimator: an Estimator to take predict() from (e.g. the one train_and_evaluate runs).

  Returns:
    The report: passed, per-signature figures, warm-up replay results, timings.

  Raises:
    ValidationError: no records.
  """
  if not records:
    raise ValidationError(f"validating {export_dir} needs at least one eval example")
  start = time.time()
  report: Dict[str, Any] = {
      "export_dir": export_dir, "checkpoint": checkpoint_path, "num_examples": len(records),
      "tolerance": tolerance, "reference_preprocessing": list(preprocessing), "signatures": {},
  }
  with tempfile.TemporaryDirectory(prefix="serving-validation-") as work:
    ref = _reference_predictions(records, work, model_fn, spec, preprocessing, checkpoint_path,
                                 estimator)
    ref_done = time.time()
    child = _run_child(export_dir, spec, records, work)
  report["seconds"] = {"estimator_predict": round(ref_done - start, 2),
                       "fresh_process": round(time.time() - ref_done, 2)}
  if "error" in child:
    report.update(passed=False, error=child["error"])
    return report
  problems = []
  for name, sig in sorted(child["signatures"].items()):
    outs = {k.split("/", 1)[1]: v for k, v in child["outputs"].items() if k.split("/", 1)[0] == name}
    if sig["method_name"] == CLASSIFY_METHOD:
      res = _compare_classify(outs, ref, spec, tolerance)
    else:
      res = _compare_predict(outs, ref, tolerance)
    res.update(method_name=sig["method_name"], inputs=sig["inputs"], outputs=sig["outputs"])
    report["signatures"][name] = res
    problems += [f"{name}: {p}" for p in res["problems"]]
  report["warmup"] = child["warmup"]
  report["validated_in_pid"] = child["pid"]
  problems += [f"warm-up request {w['signature']}: {w['error']}"
               for w in child["warmup"] if w.get("error")]
  report["passed"] = not problems
  report["problems"] = problems
  return report


def summary(report: Dict[str, Any], report_path: Optional[str]) -> str:
  """One line for a failed (or passed) report, naming the export and where the details are."""
  where = f" (details: {report_path})" if report_path else ""
  if report.get("passed"):
    worst = max((d for s in report["signatures"].values() for d in s.get("max_abs_diff", {}).values()),
                default=0.0)
    return (f"export {report['export_dir']} matches estimator.predict on {report['num_examples']} "
            f"eval examples: {len(report['signatures'])} signatures, max abs diff {worst:.3g}{where}")
  what = report.get("error") or "; ".join(report.get("problems", []))
  return (f"export {report['export_dir']} does not match estimator.predict on "
          f"{report['num_examples']} eval examples: {what}{where}")


def write_report(report: Dict[str, Any], path: str) -> None:
  """Writes the report as JSON (temporary name, then rename)."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(report, indent=2, sort_keys=True, default=str))
  tf.io.gfile.rename(tmp, path, overwrite=True)


def report_path(export_dir: str) -> str:
  """Where a version's report lives: beside it, `<base>/<version>.validation.json`."""
  return os.path.normpath(export_dir) + ".validation.json"


# --- The fresh process ------------------------------------------------------------------------


def _tensor_info(info) -> Dict[str, Any]:
  dims = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
  return {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": dims}


def replay_warmup(sess, meta_graph, log) -> Dict[str, Any]:
  """Runs one warm-up PredictionLog the way TF Serving would; returns what it produced."""
  kind = log.WhichOneof("log_type")
  request = getattr(log, kind).request
  sig_name = request.model_spec.signature_name or "serving_default"
  out = {"signature": sig_name, "kind": kind}
  if sig_name not in meta_graph.signature_def:
    out["error"] = f"signature {sig_name!r} is not in the export"
    return out
  sig = meta_graph.signature_def[sig_name]
  if kind == "classify_log":
    serialized = [e.SerializeToString() for e in request.input.example_list.examples]
    feeds = {sig.inputs["inputs"].name: serialized}
  elif kind == "predict_log":
    feeds = {sig.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
  else:
    out["error"] = f"unsupported warm-up log type {kind}"
    return out
  try:
    values = sess.run({k: v.name for k, v in sig.outputs.items()}, feeds)
  except (tf.errors.OpError, KeyError) as e:
    out["error"] = str(e).splitlines()[0]
    return out
  out["output_shapes"] = {k: list(v.shape) for k, v in values.items()}
  return out


def _child_main(request_path: str) -> None:
  with open(request_path) as f:
    req = json.load(f)
  records = list(tf.compat.v1.io.tf_record_iterator(req["records"]))
  with np.load(req["raw"]) as raw_file:
    raw = {k: raw_file[k] for k in raw_file.files}
  arrays: Dict[str, np.ndarray] = {}
  info: Dict[str, Any] = {"signatures": {}, "warmup": [], "pid": os.getpid(),
                          "tensorflow": tf.__version__}
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, [tf.saved_model.SERVING], req["export_dir"])
    for name, sig in sorted(meta.signature_def.items()):
      feeds = {}
      for key, tinfo in sig.inputs.items():
        if tinfo.dtype == tf.string.as_datatype_enum:
          feeds[tinfo.name] = records
        elif key in raw:
          feeds[tinfo.name] = raw[key]
        else:
          raise KeyError(f"signature {name} input {key!r} is neither serialized examples nor a "
                         f"feature of the dataset ({sorted(raw)})")
      values = sess.run({k: v.name for k, v in sig.outputs.items()}, feeds)
      for k, v in values.items():
        arrays[f"{name}/{k}"] = v.astype(np.bytes_) if v.dtype == object else v
      info["signatures"][name] = {
          "method_name": sig.method_name,
          "inputs": {k: _tensor_info(v) for k, v in sig.inputs.items()},
          "outputs": {k: _tensor_info(v) for k, v in sig.outputs.items()}}
    for log in warmup.read(req["export_dir"]):
      info["warmup"].append(replay_warmup(sess, meta, log))
  np.savez(req["arrays_out"], **arrays)
  with open(req["info_out"], "w") as f:
    json.dump(info, f)


if __name__ == "__main__":
  _child_main(sys.argv[1])
