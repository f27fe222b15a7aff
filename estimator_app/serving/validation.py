"""Parity check of an export: what TF Serving would answer == what estimator.predict answers.

The SavedModel is loaded in a FRESH Python process (`sys.executable -m
estimator_app.serving.validation REQUEST.json`), the way TF Serving loads it: a TF1 session,
the `serve` tag, every signature called by its tensor names. Nothing of the exporting process
(graph, variables, Keras name counters, imported modules) can leak into the answer. The child
sees no GPU (CUDA_VISIBLE_DEVICES=-1: it never takes the training job's) and runs no XLA. It
calls every signature on the same N eval examples (labels stripped, as a client sends them):

  * string inputs get the serialized tf.Examples;
  * other inputs get the raw feature of the same name, decoded with the dataset's spec;

and replays the warm-up requests. The parent computes the reference with
`estimator.predict` over the dataset's own evaluation input_fn (`input_fns.input_fn`) fed with
the same records, computed the way serving computes: the model's own precision, on the CPU,
without training-only session options (XLA's global_jit_level, a distribution strategy), even
when the Estimator given is the training one. Then it compares, per signature:

  * Predict signatures: `probabilities` within the tolerance and `class_ids` equal; every
    other shared float output is reported;
  * Classify signatures: `scores` vs probabilities within the tolerance, and the top class vs
    the reference class id; each row of `classes` must be the label names.

The tolerance follows the model's precision (`TOLERANCES`): |export - estimator| <= atol +
rtol * |estimator| per value, tight for float32, looser for the 16-bit precisions. A class that
differs only counts when the reference's probabilities of the two classes are further apart
than that tolerance allows (`class_mismatches`): 16-bit models make near-ties (bfloat16 exact
ones) that rounding may flip, while a wrong export differs by far more.

The report (a JSON-able dict) says `passed`, the tolerance used and the worst value (signature,
output, example, class, both values), and holds the figures. `ValidationError` (a
UserInputError) is what callers raise on a failed report.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from estimator_app.serving import warmup
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib

CLASSIFY_METHOD = "tensorflow/serving/classify"
_SPLIT = "eval"
_CHILD_TIMEOUT_S = 600


class ValidationError(errors.UserInputError):
  """An export does not answer like estimator.predict (or cannot be loaded/called)."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
  """How far an export's value may be from the reference's: |a - b| <= atol + rtol * |b|.

  Attributes:
    atol: the absolute part.
    rtol: the part relative to the reference value |b|.
    precision: the model precision whose default this is; None for a tolerance given explicitly.
  """
  atol: float
  rtol: float = 0.0
  precision: Optional[str] = None

  def allowed(self, reference: np.ndarray) -> np.ndarray:
    """The largest |export - reference| accepted at each reference value."""
    return self.atol + self.rtol * np.abs(reference)

  def describe(self) -> str:
    source = f"{self.precision} default" if self.precision else "explicit"
    return f"|export - estimator| <= {self.atol:g} + {self.rtol:g} * |estimator| ({source})"


# Chosen from measurements on the digits models (dnn 16 and 128x64 wide, lenet5; 40 steps;
# 256 eval examples; CPU), as the largest share of atol=1e-3 + rtol=1e-2 any value used:
#   float16, same model computed otherwise (XLA, batch of 1 or 7, float32 compute): <= 0.21;
#     a real mismatch (the checkpoint of step 20 instead of 40; no `scale`): >= 7.6 and >= 240.
#   bfloat16, XLA and other batch sizes: 0 (bit-identical); float32 compute: <= 0.41;
#     step 20 instead of 40: >= 14; no `scale`: >= 270.
# float16 at 1x and bfloat16 at 2x that shape leave ~5x headroom over the legitimate spread
# and catch the closest real mismatch by ~7x. float32 keeps the absolute 1e-5 (measured: 0).
TOLERANCES = {
    "float32": Tolerance(atol=1e-5, rtol=0.0, precision="float32"),
    "float16": Tolerance(atol=1e-3, rtol=1e-2, precision="float16"),
    "bfloat16": Tolerance(atol=2e-3, rtol=2e-2, precision="bfloat16"),
}


def tolerance_for(precision: str, explicit: Union[None, float, Tolerance] = None) -> Tolerance:
  """The tolerance a parity check uses: `explicit` if given, else the precision's default.

  Args:
    precision: the model's precision (TrainConfig.precision): float32, float16 or bfloat16.
    explicit: a Tolerance, or a float (an absolute tolerance, rtol 0); None for the default.

  Raises:
    ValidationError: no explicit tolerance and an unknown precision, or a negative tolerance.
  """
  if explicit is None:
    if precision not in TOLERANCES:
      raise ValidationError(f"no default parity tolerance for precision {precision!r} "
                            f"(known: {', '.join(TOLERANCES)}); give one explicitly")
    return TOLERANCES[precision]
  tol = explicit if isinstance(explicit, Tolerance) else Tolerance(atol=float(explicit))
  if tol.atol < 0 or tol.rtol < 0:
    raise ValidationError(f"parity tolerance must not be negative, got {tol.describe()}")
  return tol


def _reference_estimator(model_fn, estimator: Optional[tf.estimator.Estimator],
                         work_dir: str) -> tf.estimator.Estimator:
  """An Estimator that predicts as serving computes: CPU only, no XLA, no strategy.

  Given the training Estimator, keeps its model_fn (and so its params and precision), its
  model_dir and, through TF_CONFIG, its cluster, plus the device filters of its session config
  (which tasks a cluster session talks to; they change no number). Everything else of that
  config (XLA's global_jit_level, GPU options) is training's, not serving's.
  """
  config = warmup.cpu_session_config()
  if estimator is None:
    return tf.estimator.Estimator(model_fn, model_dir=os.path.join(work_dir, "estimator"),
                                  config=tf.estimator.RunConfig(session_config=config))
  training = estimator.config.session_config
  if training is not None:
    config.device_filters.extend(training.device_filters)
  return tf.estimator.Estimator(estimator.model_fn, model_dir=estimator.model_dir,
                                config=tf.estimator.RunConfig(session_config=config))


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
  input_fn = input_fn_lib.make_input_fn(
      m, _SPLIT, input_fn_lib.InputConfig(batch_size=len(records), preprocessing=tuple(preprocessing)),
      training=False)
  est = _reference_estimator(model_fn, estimator, work_dir)
  batches = list(est.predict(input_fn, checkpoint_path=checkpoint_path,
                             yield_single_examples=False))
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _child_env() -> Dict[str, str]:
  """The validation child's environment: this package importable, no GPU, no XLA flags."""
  env = dict(os.environ)
  # The child must import this package the way the parent did (bazel runfiles or a checkout).
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # It must never take the GPUs (and their memory) the training job holds, and it runs the
  # export as a default TF Serving does: without the job's XLA auto-clustering flags.
  env["CUDA_VISIBLE_DEVICES"] = "-1"
  env.pop("TF_XLA_FLAGS", None)
  return env


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
  proc = subprocess.run([sys.executable, "-m", "estimator_app.serving.validation", request_path],
                        env=_child_env(), capture_output=True, text=True,
                        timeout=_CHILD_TIMEOUT_S, check=False)
  if proc.returncode != 0:
    tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
    return {"error": f"loading or calling the SavedModel in a fresh process failed "
                     f"(exit {proc.returncode}): {tail}"}
  with open(request["info_out"]) as f:
    info = json.load(f)
  with np.load(request["arrays_out"]) as arrays:
    info["outputs"] = {k: arrays[k] for k in arrays.files}
  return info


# --- Comparing ---------------------------------------------------------------------------------


def _check_values(value: np.ndarray, ref: np.ndarray, tol: Tolerance) -> Tuple[int, Dict[str, Any]]:
  """(values out of tolerance, the worst value) of an output [N, C] against the reference's.

  The worst value is the one using the largest share of what the tolerance allows there.
  NaN counts as out of tolerance unless both sides are NaN.
  """
  value, ref = value.astype(np.float64), ref.astype(np.float64)
  diff = np.abs(value - ref)
  allowed = tol.allowed(ref)
  close = diff <= allowed
  within = close | (value == ref) | (np.isnan(value) & np.isnan(ref))
  with np.errstate(divide="ignore", invalid="ignore"):
    share = diff / allowed  # 0/0 (an exact match under a zero tolerance) is NaN
  share = np.where(close, np.nan_to_num(share, nan=0.0),
                   np.where(within, 0.0, np.where(np.isnan(share), np.inf, share)))
  index = np.unravel_index(int(np.argmax(share)), share.shape)
  worst = {"example": int(index[0]), "export": float(value[index]),
           "estimator": float(ref[index]), "abs_diff": float(diff[index]),
           "allowed": float(allowed[index]), "tolerance_share": float(share[index])}
  if len(index) == 2:
    worst["class"] = int(index[1])
  return int(np.sum(~within)), worst


def class_mismatches(chosen: np.ndarray, probabilities: np.ndarray, class_ids: np.ndarray,
                     tolerance: Tolerance) -> Tuple[int, int]:
  """Counts the examples whose class differs from the reference's: (mismatches, near-ties).

  A difference is a near-tie, not a mismatch, when the reference's own probabilities of its
  class and of the chosen one are so close that values within tolerance of each could swap
  them: p[reference] - p[chosen] <= allowed(p[reference]) + allowed(p[chosen]).

  Args:
    chosen: int array [N], the export's class of each example.
    probabilities: float array [N, C], the reference's probabilities.
    class_ids: int array [N], the reference's class of each example.
    tolerance: what a probability may differ by.

  Returns:
    (real mismatches, differences excused as near-ties).
  """
  rows = np.arange(len(chosen))
  valid = (chosen >= 0) & (chosen < probabilities.shape[-1])
  picked = np.where(valid, chosen, class_ids)
  p_ref, p_chosen = probabilities[rows, class_ids], probabilities[rows, picked]
  tie = valid & (p_ref - p_chosen <= tolerance.allowed(p_ref) + tolerance.allowed(p_chosen))
  differ = chosen != class_ids
  return int(np.sum(differ & ~tie)), int(np.sum(differ & tie))


def _compare_classes(chosen: np.ndarray, ref: Dict[str, np.ndarray], tol: Tolerance,
                     what: str) -> Tuple[Dict[str, int], Optional[str]]:
  """(class_mismatches and near_tie_flips, the problem if any class really differs)."""
  real, ties = class_mismatches(chosen, ref["probabilities"], ref["class_ids"], tol)
  return ({"class_mismatches": real, "near_tie_flips": ties},
          f"{real}/{len(chosen)} {what} differ" if real else None)


def _compare_predict(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                     tol: Tolerance) -> Dict[str, Any]:
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
  if "probabilities" in res["max_abs_diff"]:
    bad, worst = _check_values(outputs["probabilities"], ref["probabilities"], tol)
    res["worst"] = dict(worst, output="probabilities")
    if bad:
      problems.append(f"max |probabilities - estimator| = {res['max_abs_diff']['probabilities']:.3g}, "
                      f"{bad}/{outputs['probabilities'].size} values out of tolerance")
  classes = outputs.get("class_ids")
  if classes is None and "probabilities" in outputs:
    classes = np.argmax(outputs["probabilities"], axis=-1)
  if classes is not None and classes.shape == ref["class_ids"].shape:
    figures, problem = _compare_classes(classes, ref, tol, "classes")
    res.update(figures)
    problems += [problem] if problem else []
  res["problems"] = problems
  return res


def _compare_classify(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                      spec: fs.FeatureSpec, tol: Tolerance) -> Dict[str, Any]:
  problems = []
  scores, classes = outputs.get("scores"), outputs.get("classes")
  if scores is None or classes is None:
    return {"problems": [f"Classify outputs must be scores and classes, got {sorted(outputs)}"]}
  res: Dict[str, Any] = {}
  if scores.shape != ref["probabilities"].shape or classes.shape != scores.shape:
    return {"problems": [f"scores {scores.shape} / classes {classes.shape} do not match "
                         f"estimator probabilities {ref['probabilities'].shape}"]}
  res["max_abs_diff"] = {"scores": float(np.max(np.abs(scores - ref["probabilities"])))}
  bad, worst = _check_values(scores, ref["probabilities"], tol)
  res["worst"] = dict(worst, output="scores")
  if bad:
    problems.append(f"max |scores - probabilities| = {res['max_abs_diff']['scores']:.3g}, "
                    f"{bad}/{scores.size} values out of tolerance")
  names = np.array(spec.label_names)
  decoded = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else str(b))(classes)
  if not np.all(decoded == names[np.newaxis]):
    problems.append("classes rows are not the label names in label order")
  # The top class is the label at the best score's column; the rows were checked just above.
  figures, problem = _compare_classes(np.argmax(scores, axis=-1), ref, tol, "top classes")
  res.update(figures)
  problems += [problem] if problem else []
  res["problems"] = problems
  return res


def validate(export_dir: str, *, model_fn, spec: fs.FeatureSpec, preprocessing: Sequence[str],
             checkpoint_path: str, records: Sequence[bytes],
             tolerance: Union[None, float, Tolerance] = None, precision: str = "float32",
             estimator: Optional[tf.estimator.Estimator] = None) -> Dict[str, Any]:
  """Compares every signature of an export with estimator.predict on `records`.

  Args:
    export_dir: a local SavedModel directory.
    model_fn: the Estimator model_fn the reference runs (ignored if `estimator` is given).
    spec: the dataset's feature spec (decodes the raw inputs, names the classes).
    preprocessing: the evaluation preprocessing chain (the reference's, not the export's).
    checkpoint_path: the checkpoint the export was made from.
    records: serialized eval tf.Examples WITH labels (the eval input_fn parses them).
    tolerance: what probabilities may differ by (a Tolerance, or a float: absolute); None
      takes the default of `precision` (TOLERANCES).
    precision: the model's precision (TrainConfig.precision).
    estimator: an Estimator to take the model_fn from (e.g. the one train_and_evaluate runs);
      its predictions are computed without its training-only session options.

  Returns:
    The report: passed, the tolerance, the worst value, per-signature figures, warm-up replay
    results, timings.

  Raises:
    ValidationError: no records, or no tolerance for `precision` (see tolerance_for).
  """
  if not records:
    raise ValidationError(f"validating {export_dir} needs at least one eval example")
  tol = tolerance_for(precision, tolerance)
  start = time.time()
  report: Dict[str, Any] = {
      "export_dir": export_dir, "checkpoint": checkpoint_path, "num_examples": len(records),
      "tolerance": dataclasses.asdict(tol), "reference_preprocessing": list(preprocessing),
      "signatures": {},
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
  worst = None
  for name, sig in sorted(child["signatures"].items()):
    outs = {k.split("/", 1)[1]: v for k, v in child["outputs"].items() if k.split("/", 1)[0] == name}
    if sig["method_name"] == CLASSIFY_METHOD:
      res = _compare_classify(outs, ref, spec, tol)
    else:
      res = _compare_predict(outs, ref, tol)
    res.update(method_name=sig["method_name"], inputs=sig["inputs"], outputs=sig["outputs"])
    report["signatures"][name] = res
    problems += [f"{name}: {p}" for p in res["problems"]]
    if "worst" in res and (worst is None or res["worst"]["tolerance_share"] > worst["tolerance_share"]):
      worst = dict(res["worst"], signature=name)
  report["worst"] = worst
  report["warmup"] = child["warmup"]
  report["validated_in_pid"] = child["pid"]
  problems += [f"warm-up request {w['signature']}: {w['error']}"
               for w in child["warmup"] if w.get("error")]
  report["passed"] = not problems
  report["problems"] = problems
  return report


def _describe_worst(worst: Dict[str, Any]) -> str:
  where = f"example {worst['example']}" + (f" class {worst['class']}" if "class" in worst else "")
  return (f"worst {worst['signature']} {worst['output']} at {where}: export {worst['export']:.6g}, "
          f"estimator {worst['estimator']:.6g}")


def summary(report: Dict[str, Any], report_path: Optional[str]) -> str:
  """One line for a failed (or passed) report: the export, the verdict, the worst value, the
  tolerance and where the details are."""
  where = f" (details: {report_path})" if report_path else ""
  if report.get("error"):
    return (f"export {report['export_dir']} does not match estimator.predict on "
            f"{report['num_examples']} eval examples: {report['error']}{where}")
  figures = ""
  if report.get("worst"):
    figures += f"; {_describe_worst(report['worst'])}"
  figures += f"; tolerance {Tolerance(**report['tolerance']).describe()}"
  if report.get("passed"):
    largest = max((d for s in report["signatures"].values()
                   for d in s.get("max_abs_diff", {}).values()), default=0.0)
    return (f"export {report['export_dir']} matches estimator.predict on {report['num_examples']} "
            f"eval examples: {len(report['signatures'])} signatures, max abs diff "
            f"{largest:.3g}{figures}{where}")
  return (f"export {report['export_dir']} does not match estimator.predict on "
          f"{report['num_examples']} eval examples: {'; '.join(report.get('problems', []))}"
          f"{figures}{where}")


def write_report(report: Dict[str, Any], path: str) -> None:
  """Writes the report as JSON (temporary name, then rename)."""
  files_lib.write_atomically(path, json.dumps(report, indent=2, sort_keys=True, default=str))


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
  with tf.Graph().as_default(), tf.compat.v1.Session(config=warmup.cpu_session_config()) as sess:
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
