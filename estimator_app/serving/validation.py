"""Parity check of an export: what TF Serving would answer == what estimator.predict answers.

The SavedModel is loaded in another Python process, the serving process, the way TF Serving
loads it: a TF1 session, the `serve` tag, every signature called by its tensor names. Nothing
of the exporting process (graph, variables, Keras name counters, imported modules) can leak
into the answer. The serving process sees no GPU (CUDA_VISIBLE_DEVICES=-1: it never takes the
training job's) and runs no XLA. It calls every signature on the same N eval examples (labels
and example weights stripped, as a client sends them):

  * a string input of rank 1 (`inputs`, `examples`) gets the serialized tf.Examples;
  * every other input gets the raw feature of the same name, decoded with the dataset's spec
    (a TABLE's string columns as bytes, multivalent columns padded with their missing value,
    NaN for missing numbers: what `warmup.parse_features` makes of the same records);

and replays the warm-up requests. It also lists the files the export's lookup tables read
that are not its own assets (`files_outside_export`: a vocabulary left in the dataset
directory), each a problem. The parent computes the reference with
`estimator.predict` over the dataset's own evaluation input_fn (`input_fns.input_fn`) fed with
the same records, computed the way serving computes: the model's own precision, on the CPU,
without training-only session options (XLA's global_jit_level, a distribution strategy), even
when the Estimator given is the training one. Then it compares, per signature, by the
dataset's label kind (binary works like multiclass, with C = 2):

  * Predict signatures of a classifier: `probabilities` within the tolerance and `class_ids`
    equal; of a regression: `predictions` within the tolerance; every other shared float
    output is reported;
  * Classify signatures (CLASSIFY_METHOD): `scores` vs probabilities within the tolerance, and
    the top class vs the reference's top class; each row of `classes` must be the label names;
  * Regress signatures (REGRESS_METHOD): `outputs` vs the reference predictions[:, 0] within
    the tolerance.

The tolerance follows the model's precision (`TOLERANCES`): |export - estimator| <= atol +
rtol * |estimator| per value, tight for float32, looser for the 16-bit precisions, with a
relative part for a regression's unbounded predictions (`tolerance_for`). A class that
differs only counts when the reference's probabilities of the two classes are further apart
than that tolerance allows (`class_mismatches`): 16-bit models make near-ties (bfloat16 exact
ones) that rounding may flip, while a wrong export differs by far more.

The report (a JSON-able dict) says `passed`, the tolerance used and the worst value (signature,
output, example, class, both values), and holds the figures. `ValidationError` (a
UserInputError) is what callers raise on a failed report.

One serving process serves all the validations of a parent process: importing TensorFlow
takes seconds, loading a small export a fraction of one. It starts on the first validation, or
earlier with `prestart()` (a training job calls it when it builds its exporters, so the import
overlaps training), and runs `sys.executable -m estimator_app.serving.validation --serve`:
one request path per line on stdin, one JSON answer line per request on stdout, the outputs in
the request's files. Each request is loaded in its own new tf.Graph and Session, so nothing of
one request reaches the next. It exits at stdin EOF (its parent died) and is stopped at the
parent's exit (`shutdown()`). If it dies, hangs past `_REQUEST_TIMEOUT_S` or answers garbage,
that validation fails with the tail of its stderr (kept in an unlinked temporary file, so no
pipe fills up) and the next one starts a new serving process. `python -m
estimator_app.serving.validation REQUEST.json` still answers one request and exits.
"""

import atexit
import dataclasses
import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from estimator_app.serving import warmup
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# The output a Predict signature's parity is judged by, per label kind.
_HEADLINE = {fs.MULTICLASS: "probabilities", fs.BINARY: "probabilities",
             fs.REGRESSION: "predictions"}
_SPLIT = "eval"
_TEXT_FILE_INITIALIZERS = ("InitializeTableFromTextFile", "InitializeTableFromTextFileV2")
_REQUEST_TIMEOUT_S = 600  # one request's answer, the serving process's start included
_SERVE_FLAG = "--serve"
_STDERR_TAIL_LINES = 6
_STDERR_MAX_BYTES = 1 << 20  # its stderr file is emptied past this, between requests


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


def tolerance_for(precision: str, explicit: Union[None, float, Tolerance] = None,
                  label_kind: str = fs.MULTICLASS) -> Tolerance:
  """The tolerance a parity check uses: `explicit` if given, else the precision's default.

  A regression's predictions are not bounded like probabilities: a value of 1e4 carries float32
  rounding of ~1e-3, so a regression's default adds a relative part at least as large as the
  absolute one (float32: 1e-5 + 1e-5 * |estimator|; the 16-bit defaults are relative already).

  Args:
    precision: the model's precision (TrainConfig.precision): float32, float16 or bfloat16.
    explicit: a Tolerance, or a float (an absolute tolerance, rtol 0); None for the default.
    label_kind: the dataset's label kind (feature_spec.MULTICLASS, BINARY or REGRESSION).

  Returns:
    The tolerance.

  Raises:
    ValidationError: no explicit tolerance and an unknown precision, or a negative tolerance.
  """
  if explicit is None:
    if precision not in TOLERANCES:
      raise ValidationError(f"no default parity tolerance for precision {precision!r} "
                            f"(known: {', '.join(TOLERANCES)}); give one explicitly")
    default = TOLERANCES[precision]
    if label_kind == fs.REGRESSION:
      return dataclasses.replace(default, rtol=max(default.rtol, default.atol))
    return default
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
  """The serving process's environment: this package importable, no GPU, no XLA flags."""
  env = dict(os.environ)
  # The child must import this package the way the parent did (bazel runfiles or a checkout).
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # It must never take the GPUs (and their memory) the training job holds, and it runs the
  # export as a default TF Serving does: without the job's XLA auto-clustering flags.
  env["CUDA_VISIBLE_DEVICES"] = "-1"
  env.pop("TF_XLA_FLAGS", None)
  return env


def _serving_command() -> List[str]:
  return [sys.executable, "-m", "estimator_app.serving.validation", _SERVE_FLAG]


class _ServingProcess:
  """The parent's handle on one serving process: a request path in, one JSON answer line out."""

  def __init__(self):
    # Unlinked at once: only the two processes' descriptors hold it, nothing is left behind.
    # O_APPEND: the child always writes at the end, even after the parent empties the file.
    fd, path = tempfile.mkstemp(prefix="serving-validation-", suffix=".stderr")
    os.unlink(path)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    self._stderr = fd
    self._owner = os.getpid()
    self._answers: "queue.Queue[Optional[bytes]]" = queue.Queue()
    try:
      self.proc = subprocess.Popen(_serving_command(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=fd, env=_child_env())
    except OSError:
      os.close(fd)
      raise
    # A thread reads the answers, so waiting for one can time out.
    threading.Thread(target=self._read_answers, args=(self.proc.stdout,), daemon=True,
                     name=f"serving-validation-{self.proc.pid}").start()

  def _read_answers(self, stream) -> None:
    with stream:  # closed here, never under a blocked read
      for line in iter(stream.readline, b""):
        self._answers.put(line)
    self._answers.put(None)  # EOF: the process is gone

  def usable(self) -> bool:
    """Whether this process made it (not a fork's inherited copy) and it still runs."""
    return self._owner == os.getpid() and self.proc.poll() is None

  def _stderr_tail(self, since: int) -> str:
    size = os.fstat(self._stderr).st_size
    begin = max(min(since, size), size - 65536)
    text = os.pread(self._stderr, size - begin, begin).decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-_STDERR_TAIL_LINES:]) or "(nothing on its stderr)"

  def serve(self, request_path: str, timeout_s: float) -> Dict[str, Any]:
    """Sends one request; its answer, or {"error": ...}.

    A request that raised leaves this process serving; after a death, a hang or garbage it is
    stopped (the next validation starts another).
    """
    if os.fstat(self._stderr).st_size > _STDERR_MAX_BYTES:
      os.ftruncate(self._stderr, 0)
    since = os.fstat(self._stderr).st_size
    what = f"the serving process (pid {self.proc.pid})"
    try:
      self.proc.stdin.write(request_path.encode() + b"\n")
      self.proc.stdin.flush()
      line = self._answers.get(timeout=timeout_s)
    except OSError:  # its stdin closed: it died before reading the request
      line = None
    except queue.Empty:
      tail = self.stop(grace_s=0, since=since)
      return {"error": f"{what} did not answer within {timeout_s:g} s: {tail}"}
    if line is None:
      tail = self.stop(grace_s=10, since=since)
      return {"error": f"{what} exited (status {self.proc.returncode}) before answering: {tail}"}
    try:
      answer = json.loads(line)
      if not isinstance(answer, dict) or answer.get("request") != request_path:
        raise ValueError(f"not an answer to {request_path}")
    except ValueError:
      tail = self.stop(grace_s=0, since=since)
      return {"error": f"{what} answered garbage ({line[:200]!r}): {tail}"}
    if not answer.get("ok"):
      return {"error": f"loading or calling the SavedModel in {what} failed: "
                       f"{answer.get('error') or self._stderr_tail(since)}"}
    return answer

  def stop(self, grace_s: float, since: int = 0) -> str:
    """Closes its stdin (it exits at EOF), then kills it if it is still there after `grace_s`.

    Returns:
      The tail of what it wrote to stderr from offset `since` on.
    """
    if self._owner != os.getpid():
      return ""  # stopped already, or a fork's copy of the parent's process
    try:
      self.proc.stdin.close()
    except OSError:
      pass
    if grace_s:
      try:
        self.proc.wait(timeout=grace_s)
      except subprocess.TimeoutExpired:
        pass
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait()
    tail = self._stderr_tail(since)
    os.close(self._stderr)
    self._owner = None  # stopped: never usable again, and a second stop does nothing
    return tail


_serving: Optional[_ServingProcess] = None
_serving_lock = threading.RLock()


def _serving_process() -> _ServingProcess:
  """This process's serving process, started if there is none or it is gone."""
  global _serving
  if _serving is None or not _serving.usable():
    if _serving is not None:
      _serving.stop(grace_s=0)  # gone already (or a fork's copy, left alone): frees descriptors
    _serving = _ServingProcess()
  return _serving


def prestart() -> int:
  """Starts this process's serving process now (if not running) so its TF import overlaps work.

  Returns:
    Its pid.

  Raises:
    OSError: the Python interpreter could not be started.
  """
  with _serving_lock:
    return _serving_process().proc.pid


def shutdown(grace_s: float = 5) -> None:
  """Stops this process's serving process, if any (also done at exit); the next one is new."""
  global _serving
  with _serving_lock:
    if _serving is not None:
      _serving.stop(grace_s=grace_s)
      _serving = None


def _shutdown_at_exit() -> None:
  # Killed at once: requests are synchronous, so at exit it only waits on its stdin, and its
  # own TensorFlow teardown after EOF kept every script's exit waiting ~5 s.
  shutdown(grace_s=0)


atexit.register(_shutdown_at_exit)


def _serve(request_path: str) -> Dict[str, Any]:
  with _serving_lock:
    try:
      process = _serving_process()
    except OSError as e:
      return {"error": f"cannot start the serving process: {e}"}
    return process.serve(request_path, _REQUEST_TIMEOUT_S)


def _run_in_serving_process(export_dir: str, spec: fs.FeatureSpec, records: Sequence[bytes],
                            work_dir: str) -> Dict[str, Any]:
  """Runs every signature of the export in the serving process; returns its outputs and info."""
  stripped = warmup.strip_labels(records)
  records_path = os.path.join(work_dir, "requests.tfrecord")
  with tf.io.TFRecordWriter(records_path) as w:
    for r in stripped:
      w.write(r)
  raw_path = os.path.join(work_dir, "raw.npz")
  np.savez(raw_path, **_without_objects(warmup.parse_features(spec, stripped)))
  request = {"export_dir": export_dir, "records": records_path, "raw": raw_path,
             "arrays_out": os.path.join(work_dir, "outputs.npz"),
             "info_out": os.path.join(work_dir, "outputs.json")}
  request_path = os.path.join(work_dir, "request.json")
  with open(request_path, "w") as f:
    json.dump(request, f)
  answer = _serve(request_path)
  if "error" in answer:
    return answer
  with open(request["info_out"]) as f:
    info = json.load(f)
  with np.load(request["arrays_out"]) as arrays:
    info["outputs"] = {k: arrays[k] for k in arrays.files}
  info["served"] = answer.get("served")
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


def _compare_classes(chosen: np.ndarray, probabilities: np.ndarray, reference: np.ndarray,
                     tol: Tolerance, what: str) -> Tuple[Dict[str, int], Optional[str]]:
  """(class_mismatches and near_tie_flips, the problem if any class really differs)."""
  real, ties = class_mismatches(chosen, probabilities, reference, tol)
  return ({"class_mismatches": real, "near_tie_flips": ties},
          f"{real}/{len(chosen)} {what} differ" if real else None)


def _compare_predict(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                     tol: Tolerance, label_kind: str) -> Dict[str, Any]:
  """A Predict signature's outputs vs the reference predictions of the same names.

  Args:
    outputs: the signature's outputs, by key.
    ref: estimator.predict's predictions, by key.
    tol: what the headline output (probabilities, or a regression's predictions) may differ by.
    label_kind: the dataset's label kind: classifiers' classes are compared too.

  Returns:
    The signature's figures and its `problems` (empty when it matches).
  """
  headline = _HEADLINE[label_kind]
  res: Dict[str, Any] = {"max_abs_diff": {}}
  problems = []
  if headline not in outputs:
    problems.append(f"no {headline} output")
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
  if headline in res["max_abs_diff"]:
    bad, worst = _check_values(outputs[headline], ref[headline], tol)
    if label_kind == fs.REGRESSION:
      worst.pop("class", None)  # the one column of predictions [N, 1] is no class
    res["worst"] = dict(worst, output=headline)
    if bad:
      problems.append(f"max |{headline} - estimator| = {res['max_abs_diff'][headline]:.3g}, "
                      f"{bad}/{outputs[headline].size} values out of tolerance")
  if label_kind != fs.REGRESSION:
    classes, reference = outputs.get("class_ids"), ref.get("class_ids")
    if (classes is None or reference is None) and "probabilities" in outputs:
      # Without class_ids only the best probability names a class; so it does for the reference.
      classes, reference = (np.argmax(outputs["probabilities"], axis=-1),
                            np.argmax(ref["probabilities"], axis=-1))
    if classes is not None and reference is not None and classes.shape == reference.shape:
      figures, problem = _compare_classes(classes, ref["probabilities"], reference, tol,
                                          "classes")
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
  if "probabilities" not in ref:
    return {"problems": [f"a Classify signature, but estimator.predict gives no probabilities "
                         f"(it gives {sorted(ref)})"]}
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
  # Compared with the reference's best probability, not its class_ids: a binary head's
  # class_ids follow its threshold, while a Classify client reads the scores.
  figures, problem = _compare_classes(np.argmax(scores, axis=-1), ref["probabilities"],
                                      np.argmax(ref["probabilities"], axis=-1), tol,
                                      "top classes")
  res.update(figures)
  problems += [problem] if problem else []
  res["problems"] = problems
  return res


def _compare_regress(outputs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                     tol: Tolerance) -> Dict[str, Any]:
  """A Regress signature's `outputs` [N] vs the reference predictions[:, 0]."""
  values = outputs.get("outputs")
  if values is None:
    return {"problems": [f"Regress outputs must be outputs, got {sorted(outputs)}"]}
  if "predictions" not in ref:
    return {"problems": [f"a Regress signature, but estimator.predict gives no predictions "
                         f"(it gives {sorted(ref)})"]}
  expected = ref["predictions"].reshape(len(ref["predictions"]), -1)[:, 0]
  if values.shape != expected.shape:
    return {"problems": [f"outputs {values.shape} do not match estimator predictions[:, 0] "
                         f"{expected.shape}"]}
  res: Dict[str, Any] = {
      "max_abs_diff": {"outputs": float(np.max(np.abs(values - expected))) if values.size else 0.0}}
  bad, worst = _check_values(values, expected, tol)
  res["worst"] = dict(worst, output="outputs")
  problems = []
  if bad:
    problems.append(f"max |outputs - predictions| = {res['max_abs_diff']['outputs']:.3g}, "
                    f"{bad}/{values.size} values out of tolerance")
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
    spec: the dataset's feature spec (decodes the raw inputs, names the classes; its label
      kind decides what is compared).
    preprocessing: the evaluation preprocessing chain (the reference's, not the export's).
    checkpoint_path: the checkpoint the export was made from.
    records: serialized eval tf.Examples WITH labels (the eval input_fn parses them).
    tolerance: what probabilities (regression: predictions) may differ by (a Tolerance, or
      a float: absolute); None takes the default of `precision` and the label kind
      (tolerance_for).
    precision: the model's precision (TrainConfig.precision).
    estimator: an Estimator to take the model_fn from (e.g. the one train_and_evaluate runs);
      its predictions are computed without its training-only session options.

  Returns:
    The report: passed, the tolerance, the worst value, per-signature figures, warm-up replay
    results, the files its tables read outside the export (files_outside_export), timings,
    and which serving process answered (validated_in_pid, and its
    serving_process_requests so far).

  Raises:
    ValidationError: no records, or no tolerance for `precision` (see tolerance_for).
  """
  if not records:
    raise ValidationError(f"validating {export_dir} needs at least one eval example")
  tol = tolerance_for(precision, tolerance, spec.label_kind)
  start = time.time()
  report: Dict[str, Any] = {
      "export_dir": export_dir, "checkpoint": checkpoint_path, "num_examples": len(records),
      "tolerance": dataclasses.asdict(tol), "reference_preprocessing": list(preprocessing),
      "signatures": {},
  }
  try:
    prestart()  # the serving process starts while estimator.predict runs
  except OSError:
    pass  # the request below reports it
  with tempfile.TemporaryDirectory(prefix="serving-validation-") as work:
    ref = _reference_predictions(records, work, model_fn, spec, preprocessing, checkpoint_path,
                                 estimator)
    ref_done = time.time()
    serving = _run_in_serving_process(export_dir, spec, records, work)
  report["seconds"] = {"estimator_predict": round(ref_done - start, 2),
                       "serving_process": round(time.time() - ref_done, 2)}
  if "error" in serving:
    report.update(passed=False, error=serving["error"])
    return report
  problems = []
  worst = None
  for name, sig in sorted(serving["signatures"].items()):
    outs = {k.split("/", 1)[1]: v for k, v in serving["outputs"].items() if k.split("/", 1)[0] == name}
    if sig["method_name"] == CLASSIFY_METHOD:
      res = _compare_classify(outs, ref, spec, tol)
    elif sig["method_name"] == REGRESS_METHOD:
      res = _compare_regress(outs, ref, tol)
    else:
      res = _compare_predict(outs, ref, tol, spec.label_kind)
    res.update(method_name=sig["method_name"], inputs=sig["inputs"], outputs=sig["outputs"])
    report["signatures"][name] = res
    problems += [f"{name}: {p}" for p in res["problems"]]
    if "worst" in res and (worst is None or res["worst"]["tolerance_share"] > worst["tolerance_share"]):
      worst = dict(res["worst"], signature=name)
  report["worst"] = worst
  report["warmup"] = serving["warmup"]
  report["validated_in_pid"] = serving["pid"]
  report["serving_process_requests"] = serving["served"]  # its count, this request included
  problems += [f"warm-up request {w['signature']}: {w['error']}"
               for w in serving["warmup"] if w.get("error")]
  report["files_outside_export"] = serving.get("files_outside_export", [])
  problems += [f"its lookup tables read {path}, which is not among its assets/ (a served model "
               f"must not need the dataset's files)" for path in report["files_outside_export"]]
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


# --- The serving process ----------------------------------------------------------------------


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
  if kind in ("classify_log", "regress_log"):
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


def files_outside_export(graph: tf.Graph, meta_graph) -> List[str]:
  """The files a loaded export's lookup tables read that are not among its assets.

  An asset's path tensor is fed with its copy in `<export>/assets/` when the export is loaded;
  any other constant file name is read where it points (e.g. the dataset directory), which a
  served model must never rely on.

  Args:
    graph: the graph the export was loaded into.
    meta_graph: its MetaGraphDef, as the loader returned it.

  Returns:
    The file names (as the graph holds them), sorted, without repeats.
  """
  if meta_graph.asset_file_def:
    assets = meta_graph.asset_file_def
  elif tf.compat.v1.saved_model.ASSETS_KEY in meta_graph.collection_def:  # the TF1 builder's
    assets = [meta_graph_pb2.AssetFileDef.FromString(v.value) for v in
              meta_graph.collection_def[tf.compat.v1.saved_model.ASSETS_KEY].any_list.value]
  else:
    assets = []
  fed = {a.tensor_info.name for a in assets}
  outside = set()
  for op in graph.get_operations():
    if op.type not in _TEXT_FILE_INITIALIZERS:
      continue
    filename = op.inputs[1]
    while filename.op.type == "Identity" and filename.name not in fed:
      filename = filename.op.inputs[0]
    if filename.name not in fed and filename.op.type == "Const":
      value = tf.make_ndarray(filename.op.get_attr("value")).item()
      outside.add(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
  return sorted(outside)


# String columns are object arrays of bytes. They travel to the serving process as their bytes
# joined (uint8) plus each value's length, not pickled (loading a pickle executes code) and not
# as a fixed-width 'S' array (which drops trailing NUL bytes).
_BYTES, _LENGTHS = "__bytes__", "__lengths__"


def _without_objects(arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  out = {}
  for name, value in arrays.items():
    value = np.asarray(value)
    if value.dtype != object:
      out[name] = value
      continue
    items = [bytes(v) for v in value.ravel()]
    out[name + _BYTES] = np.frombuffer(b"".join(items), np.uint8)
    out[name + _LENGTHS] = np.array([len(v) for v in items], np.int64).reshape(value.shape)
  return out


def _with_objects(arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  out = {}
  for name, value in arrays.items():
    if name.endswith(_LENGTHS):
      continue
    if not name.endswith(_BYTES):
      out[name] = value
      continue
    base = name[:-len(_BYTES)]
    lengths = arrays[base + _LENGTHS]
    data, ends = value.tobytes(), np.cumsum(lengths.ravel())
    items = [data[e - n:e] for e, n in zip(ends, lengths.ravel())]
    out[base] = np.array(items + [None], dtype=object)[:-1].reshape(lengths.shape)
  return out


def _answer(request_path: str) -> None:
  """Runs one request (a JSON file naming the export and the inputs), writing its outputs."""
  with open(request_path) as f:
    req = json.load(f)
  records = list(tf.compat.v1.io.tf_record_iterator(req["records"]))
  with np.load(req["raw"]) as raw_file:
    raw = _with_objects({k: raw_file[k] for k in raw_file.files})
  arrays: Dict[str, np.ndarray] = {}
  info: Dict[str, Any] = {"signatures": {}, "warmup": [], "pid": os.getpid(),
                          "tensorflow": tf.__version__}
  with tf.Graph().as_default(), tf.compat.v1.Session(config=warmup.cpu_session_config()) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, [tf.saved_model.SERVING], req["export_dir"])
    info["files_outside_export"] = files_outside_export(sess.graph, meta)
    for name, sig in sorted(meta.signature_def.items()):
      feeds = {}
      for key, tinfo in sig.inputs.items():
        # Serialized examples are string [-1]; every raw feature has rank 2 or more (a
        # TABLE's string columns are [-1, 1] or [-1, -1]).
        if (tinfo.dtype == tf.string.as_datatype_enum and not tinfo.tensor_shape.unknown_rank
            and len(tinfo.tensor_shape.dim) == 1):
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


def _serve_forever() -> None:
  """The serving process: answers the request paths read from stdin until EOF."""
  # A Ctrl-C in the terminal is for the parent; this process ends when the parent's pipe does.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  answers = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)  # whatever else prints (TF, a model's code) goes to stderr, not into the answers
  sys.stdout = sys.stderr
  served = 0
  for line in iter(sys.stdin.readline, ""):
    path = line.rstrip("\n")
    if not path:
      continue
    served += 1
    answer = {"request": path, "pid": os.getpid(), "served": served, "ok": True}
    try:
      _answer(path)
    except Exception:  # pylint: disable=broad-except; the parent reports it, the next request has its own graph
      trace = traceback.format_exc()
      sys.stderr.write(trace)
      sys.stderr.flush()
      answer.update(ok=False, error="\n".join(trace.strip().splitlines()[-_STDERR_TAIL_LINES:]))
    try:
      answers.write(json.dumps(answer) + "\n")
      answers.flush()
    except OSError:  # the parent is gone
      return


if __name__ == "__main__":
  if sys.argv[1:] == [_SERVE_FLAG]:
    _serve_forever()
  else:
    _answer(sys.argv[1])
