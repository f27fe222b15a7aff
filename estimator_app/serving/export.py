"""Exports trained models for TF Serving: one SavedModel with three signatures per version.

Signatures (all in one graph, one set of weights, one call of the model_fn in PREDICT mode),
by the dataset's label kind (`signatures_for(spec)`):

  multiclass and binary (SIGNATURES):
  * `serving_default` (Predict API): the dataset's raw feature tensors, exactly as
    `FeatureSpec.serving_signature()` describes them (e.g. `image` uint8 [-1, 8, 8, 1]; a
    TABLE's columns: numeric float32 [-1, *shape] with NaN = missing, categorical string or
    int64 [-1, 1], multivalent [-1, -1] padded with "" / -1, text string [-1, 1]) ->
    `class_ids` int64 [-1], `probabilities` float32 [-1, C], `logits` float32 [-1, C]
    (binary: [-1, 1], plus `logistic` float32 [-1, 1], the positive class's probability).
  * `classification` (Classify API): `inputs`, serialized tf.Examples string [-1] ->
    `classes` string [-1, C] (the label names) and `scores` float32 [-1, C] (binary: C = 2).
  * `predict_examples` (Predict API): `examples`, serialized tf.Examples string [-1] -> every
    prediction of the model_fn.

  regression (REGRESSION_SIGNATURES):
  * `serving_default` (Predict API): the raw feature tensors as above -> `predictions`
    float32 [-1, 1].
  * `regression` (Regress API): `inputs`, serialized tf.Examples string [-1] -> `outputs`
    float32 [-1] (predictions[:, 0]).
  * `predict_examples` (Predict API): as above.

TF Serving's Predict API needs every input of `serving_default` in a request; on the
Example-based signatures a column an Example lacks parses to its missing value (NaN, "" or -1,
feature_spec.Feature.missing_value), as it does in evaluation, and a category the vocabulary
does not hold gets an out-of-vocabulary id, so both get an answer, never an error.

Vocabulary files (a TABLE's categorical columns; model_fns/tabular.py reads them through
tf.lookup.TextFileInitializer, which lists each file in the graph's ASSET_FILEPATHS) are
copied into the SavedModel's `assets/`, and the loader points the lookup tables there: a
served model never reads the dataset directory.

The preprocessing chain runs inside the graph with `training=False`, the very function the
evaluation input_fn runs, so a served answer equals an evaluated one. The example path feeds
the raw path: each raw input is a `placeholder_with_default` whose default is the parse of the
`examples` placeholder (itself defaulting to an empty batch), so whichever inputs a signature
feeds, the same preprocessing and model ops run.

Layout of a model base (TF Serving's `base_path`):

  MODEL_BASE/
    1/  saved_model.pb  variables/  [assets/ (vocabularies)]
        assets.extra/{tf_serving_warmup_requests,export_metadata.json}
    1.validation.json           parity report of version 1 (see serving_validation.py)
    .tmp-<host>-<pid>-<hex>/     an export being written (non-integer: TF Serving ignores it)
    .rejected-2/                 an export that failed validation (never served)

A version directory appears by one atomic rename of a complete, validated export; versions
are increasing integers (1 + the highest number ever used in the base). Temporary directories
left by a killed export are removed by the next export. A `gs://` model base is written
through estimator_app/serving/publish.py (GCS has no rename; see there what TF Serving sees).

A checkpoint is built and validated at most once per process. The exporters of a run often
export the same checkpoint (latest and best after one evaluation, latest and final at the
end), so `_VALIDATED` remembers, for the last `_MAX_VALIDATED` passed exports, a key (the
checkpoint's path and its .index mtime and size, the repr of the model, the reference and the
options, the reference Estimator's model_dir, a digest of the examples used) and the versions
holding that SavedModel. An equal export copies one that still exists instead: every file
hard-linked (copied where linking fails; visible versions are never written to), a new
export_metadata.json (its own exporter and eval metrics, `same_as` naming the copied version),
and the validation report with its version, export_dir and `validated_as` (the directory that
was validated); then the same atomic rename. A version deleted since (garbage_collect) is not
used; if none is left the export is built and validated again. A gs:// export's local build is
kept (one at most, in a temporary directory removed at exit) so the next equal export, local or
gs://, can copy it.
"""

import atexit
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
from absl import logging

from estimator_app import model_call
from estimator_app.serving import publish
from estimator_app.serving import validation as serving_validation
from estimator_app.serving import warmup
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import gcs
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from model_fns import head as head_lib
from model_fns import model_fn as model_fn_lib

SERVING_DEFAULT = "serving_default"
CLASSIFICATION = "classification"
REGRESSION = "regression"
PREDICT_EXAMPLES = "predict_examples"
SIGNATURES = (SERVING_DEFAULT, CLASSIFICATION, PREDICT_EXAMPLES)  # of a classifier's export
REGRESSION_SIGNATURES = (SERVING_DEFAULT, REGRESSION, PREDICT_EXAMPLES)
CLASSIFY_INPUT_KEY = "inputs"  # fixed by TF Serving's Classify and Regress APIs
EXAMPLES_INPUT_KEY = "examples"
METADATA_FILE = "export_metadata.json"
VALIDATION_SUFFIX = publish.VALIDATION_SUFFIX
# What serving_default returns, per label kind: the head's predictions of that kind.
_PREDICTION_KEYS = {fs.MULTICLASS: head_lib.PREDICT_KEYS, fs.BINARY: head_lib.BINARY_PREDICT_KEYS,
                    fs.REGRESSION: head_lib.REGRESSION_PREDICT_KEYS}
_NOT_IN_OP_NAMES = re.compile(r"[^A-Za-z0-9_.\-/]")
_TMP_PREFIX = ".tmp-"
_REJECTED_PREFIX = ".rejected-"
_DELETING_PREFIX = ".deleting-"
_NUMBERED = re.compile(r"^(?:\.rejected-)?(\d+)(?:\.validation\.json)?$")
_METADATA_REL = os.path.join(warmup.ASSETS_EXTRA, METADATA_FILE)
_MAX_VALIDATED = 4  # checkpoints remembered; a run's exporters share the newest one or two


class ExportError(errors.UserInputError):
  """An export cannot be made from what the user gave (checkpoint, base path, metric...)."""


@dataclasses.dataclass(frozen=True)
class ServingModel:
  """Everything needed to rebuild a trained model's inference graph; all plain values.

  Attributes:
    model_def: the registry entry (model_fns.registry.ModelDef).
    hparams: the model's resolved hyperparameters (its frozen dataclass).
    spec: the dataset's feature spec (serving inputs and label names).
    preprocessing: the preset chain the model was evaluated with (e.g. ("scale",)).
    train_cfg: the model_fn builder's training config (unused by inference, needed to build).
  """
  model_def: Any
  hparams: Any
  spec: fs.FeatureSpec
  preprocessing: Tuple[str, ...]
  train_cfg: Any = model_fn_lib.TrainConfig()

  def __post_init__(self):
    chain = self.preprocessing
    # A chain as typed ("scale,resize=32x32") or as parsed (a sequence of steps).
    object.__setattr__(self, "preprocessing", preprocessing.parse_chain(chain)
                       if isinstance(chain, str) else tuple(chain))

  def model_fn(self):
    return model_fn_lib.build_model_fn(self.model_def, self.hparams, self.spec, self.train_cfg)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  """How each export is made.

  Attributes:
    model_name: the name TF Serving serves it under (used in warm-up requests and metadata).
    warmup_examples: examples per warm-up request (one request per signature); 0 writes none.
    validate_examples: eval examples the parity check compares; 0 skips validation.
    tolerance: what probabilities (regression: predictions) may differ by in the parity
      check: a serving_validation.Tolerance, or a float (absolute); None (default) takes the
      one of the model's precision and label kind (serving_validation.tolerance_for: 1e-5
      absolute for float32, plus 1e-5 relative for a regression; looser and relative for
      float16 and bfloat16).
  """
  model_name: str = "model"
  warmup_examples: int = 4
  validate_examples: int = 32
  tolerance: Union[None, float, serving_validation.Tolerance] = None


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """One finished export: its version, its directory (or gs:// URI) and its parity report."""
  version: int
  export_dir: str
  validation: Optional[Dict[str, Any]]


# --- The serving graph -----------------------------------------------------------------------


def signatures_for(spec: fs.FeatureSpec) -> Tuple[str, ...]:
  """The names of the signatures an export of a model of `spec` has, in warm-up order.

  Args:
    spec: the dataset's feature spec (its label kind decides).

  Returns:
    SIGNATURES for a multiclass or binary label, REGRESSION_SIGNATURES for a regression one.
  """
  return REGRESSION_SIGNATURES if spec.label_kind == fs.REGRESSION else SIGNATURES


def _placeholder_name(feature: str) -> str:
  """The op name of a raw input's placeholder: table column names may hold any character."""
  return "input_" + _NOT_IN_OP_NAMES.sub("_", feature)


def build_signatures(model: ServingModel) -> Dict[str, Any]:
  """Builds the inference graph in the current default graph.

  Args:
    model: the model to serve (its spec decides the inputs and, by label kind, the signatures).

  Returns:
    Signature name -> SignatureDef, for `signatures_for(model.spec)`.

  Raises:
    ExportError: the model_fn's predictions lack a key its label kind's head makes
      (class_ids, probabilities, logits[, logistic]; or predictions [B, 1]).
  """
  spec = model.spec
  examples = tf.compat.v1.placeholder_with_default(
      tf.constant([], tf.string), shape=[None], name="input_examples")
  parsed, _ = spec.parse_batch(examples, with_label=False)
  shapes = spec.serving_signature()
  raw = {f.name: tf.compat.v1.placeholder_with_default(
             parsed[f.name], shape=shapes[f.name].shape, name=_placeholder_name(f.name))
         for f in spec.features}
  features = preprocessing.apply(model.preprocessing, dict(raw), spec, training=False)
  tf.compat.v1.train.get_or_create_global_step()
  predictions = model_call.call_model_fn(model.model_fn(), features, None,
                                         tf.estimator.ModeKeys.PREDICT,
                                         config=tf.estimator.RunConfig()).predictions
  keys = _PREDICTION_KEYS[spec.label_kind]
  if not isinstance(predictions, Mapping) or any(k not in predictions for k in keys):
    got = sorted(predictions) if isinstance(predictions, Mapping) else type(predictions).__name__
    raise ExportError(f"model {model.model_def.name!r}: PREDICT predictions of a "
                      f"{spec.label_kind} label must be a dict with {keys}, got {got}")
  sig = tf.compat.v1.saved_model.signature_def_utils
  signatures = {
      SERVING_DEFAULT: sig.predict_signature_def(
          inputs=raw, outputs={k: predictions[k] for k in keys}),
      PREDICT_EXAMPLES: sig.predict_signature_def(
          inputs={EXAMPLES_INPUT_KEY: examples}, outputs=dict(predictions)),
  }
  if spec.label_kind == fs.REGRESSION:
    values = predictions["predictions"]
    if values.shape.rank != 2 or values.shape[-1] not in (None, 1):
      raise ExportError(f"model {model.model_def.name!r}: regression predictions must be "
                        f"[batch, 1] for the Regress API, got {values.shape}")
    signatures[REGRESSION] = sig.regression_signature_def(
        examples, tf.identity(values[:, 0], name="regression_outputs"))
  else:
    scores = predictions["probabilities"]
    classes = tf.tile(tf.constant(spec.label_names)[tf.newaxis], [tf.shape(scores)[0], 1],
                      name="classes")
    signatures[CLASSIFICATION] = sig.classification_signature_def(examples, classes, scores)
  return signatures


def _check_variables(checkpoint_path: str, model: ServingModel) -> None:
  """Checks every variable of the current graph against the checkpoint.

  Saver.restore would silently give a resource variable the checkpoint's shape, so a model
  built with other hparams than it was trained with would export and fail only at serving.

  Raises:
    ExportError: naming the variables missing from the checkpoint or of another shape.
  """
  in_ckpt = dict(tf.train.list_variables(checkpoint_path))
  problems = []
  for v in tf.compat.v1.global_variables():
    name, shape = v.op.name, v.shape.as_list()
    if name not in in_ckpt:
      problems.append(f"{name} is missing")
    elif list(in_ckpt[name]) != shape:
      problems.append(f"{name} is {list(in_ckpt[name])}, the model needs {shape}")
  if problems:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ExportError(f"checkpoint {checkpoint_path} does not match model {model.model_def.name!r} "
                      f"with these hparams: {'; '.join(problems[:3])}{more}")


def write_saved_model(export_dir: str, model: ServingModel, checkpoint_path: str) -> None:
  """Writes the SavedModel (graph + variables restored from `checkpoint_path`) to `export_dir`.

  The files the graph reads when its tables are initialized (ASSET_FILEPATHS: vocabularies)
  are copied into `export_dir/assets/`; loading points the tables at those copies.

  Args:
    export_dir: the directory to write (must not exist).
    model: the model to export.
    checkpoint_path: checkpoint prefix to take the weights from.

  Raises:
    ExportError: the checkpoint does not hold every variable of the inference graph.
  """
  with tf.Graph().as_default() as graph:
    signatures = build_signatures(model)
    saver = tf.compat.v1.train.Saver(sharded=True, allow_empty=True)
    init = tf.compat.v1.group(tf.compat.v1.local_variables_initializer(),
                              tf.compat.v1.tables_initializer())
    _check_variables(checkpoint_path, model)
    # Restoring and saving need no accelerator: leave the training job's GPUs alone.
    with tf.compat.v1.Session(graph=graph, config=warmup.cpu_session_config()) as sess:
      saver.restore(sess, checkpoint_path)
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          sess, [tf.saved_model.SERVING], signature_def_map=signatures, main_op=init,
          saver=saver, strip_default_attrs=True,
          assets_collection=tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS))
      builder.save()


# --- Versioned, atomic export ------------------------------------------------------------------


def _numbers_used(names: Sequence[str]) -> List[int]:
  return [int(m.group(1)) for m in map(_NUMBERED.match, names) if m]


def list_versions(model_base: str) -> List[int]:
  """Visible (servable) versions of a local or gs:// model base, ascending."""
  if gcs.is_gcs_path(model_base):
    return sorted(v for v, complete in
                  publish.list_versions(model_base, gcs.make_client()).items() if complete)
  return publish.local_versions(model_base)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_leftovers(model_base: str) -> None:
  """Removes temporary dirs of exports killed on this host and half-deleted old versions."""
  host = socket.gethostname()
  for name in os.listdir(model_base):
    path = os.path.join(model_base, name)
    if name.startswith(_DELETING_PREFIX):
      shutil.rmtree(path, ignore_errors=True)
    elif name.startswith(_TMP_PREFIX):
      parts = name[len(_TMP_PREFIX):].rsplit("-", 2)
      if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
        logging.info("removing %s, left by an export that was killed", path)
        shutil.rmtree(path, ignore_errors=True)


def _write_json(path: str, value: Any) -> None:
  files_lib.write_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str))


def _jsonable(value: Any) -> Any:
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, "tolist"):  # numpy scalars and arrays (e.g. a confusion matrix metric)
    return value.tolist()
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _metadata(model: ServingModel, checkpoint_path: str, options: ExportOptions,
              eval_result: Optional[Mapping[str, Any]], exporter: Optional[str]) -> Dict[str, Any]:
  try:
    step = int(tf.train.load_variable(checkpoint_path, "global_step"))
  except (tf.errors.NotFoundError, ValueError):
    step = None
  return {
      "model_name": options.model_name,
      "model": model.model_def.name,
      "hparams": _jsonable(model.hparams),
      "preprocessing": list(model.preprocessing),
      "feature_spec": model.spec.to_json_dict(),
      "train_config": _jsonable(model.train_cfg),
      "checkpoint": checkpoint_path,
      "global_step": step,
      "eval_metrics": _jsonable(dict(eval_result or {})),
      "exporter": exporter,
      "signatures": list(signatures_for(model.spec)),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "tensorflow": tf.__version__,
  }


def read_metadata(export_dir: str) -> Optional[Dict[str, Any]]:
  """An export's assets.extra/export_metadata.json (local or gs://), or None."""
  rel = f"{warmup.ASSETS_EXTRA}/{METADATA_FILE}"
  if gcs.is_gcs_path(export_dir):
    base, version = export_dir.rstrip("/").rsplit("/", 1)
    text = publish.read_text(base, f"{version}/{rel}", gcs.make_client())
    return json.loads(text) if text else None
  path = os.path.join(export_dir, rel)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _check_checkpoint(checkpoint_path: str) -> None:
  if not checkpoint_path or not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ExportError(f"checkpoint {checkpoint_path!r} not found (expected {checkpoint_path}.index)")


def export_version(model_base: str, model: ServingModel, checkpoint_path: str,
                   examples: Sequence[bytes], options: ExportOptions = ExportOptions(), *,
                   eval_result: Optional[Mapping[str, Any]] = None,
                   estimator: Optional[tf.estimator.Estimator] = None,
                   reference: Optional[ServingModel] = None,
                   exporter: Optional[str] = None) -> ExportResult:
  """Exports one new version under `model_base`, visible only once complete and validated.

  Steps: write the SavedModel to a hidden temporary directory beside the versions, add the
  warm-up requests and metadata, check parity in the serving process (serving_validation),
  then rename it to `model_base/<next version>` (or `.rejected-<version>` if parity failed) and
  write `<dir>.validation.json` beside it. An export this process already made and validated
  from the same checkpoint with an equal model and options is copied instead of built and
  validated again (see the module docstring). Logs one line.

  Args:
    model_base: local directory (or gs:// prefix) holding the model's integer versions.
    model: the model to export.
    checkpoint_path: checkpoint prefix to take the weights from.
    examples: serialized eval tf.Examples for warm-up and validation (labels allowed).
    options: model name, warm-up and validation sizes, tolerance.
    eval_result: evaluation metrics to record in the metadata (exporters pass theirs).
    estimator: the Estimator whose model_fn the parity reference predicts with (default: a new
      one over `reference`'s model_fn); its training-only session options (XLA, GPUs) are not
      used, the reference computes as serving does.
    reference: what evaluation runs (model_fn and preprocessing) if it differs from `model`.
    exporter: name of the exporter, recorded in the metadata.

  Returns:
    The new version, its directory and its validation report.

  Raises:
    ExportError: bad checkpoint or model base, or too few examples for warm-up/validation.
    serving_validation.ValidationError: the export does not match estimator.predict (it is
      kept as `.rejected-<version>` and never becomes visible), or the tolerance is negative
      (checked before anything is written).
  """
  started = time.monotonic()
  _check_checkpoint(checkpoint_path)
  if (options.warmup_examples or options.validate_examples) and not examples:
    raise ExportError("warm-up and validation need eval examples; got none")
  if options.validate_examples:  # before anything is written
    serving_validation.tolerance_for(model.train_cfg.precision, options.tolerance,
                                     model.spec.label_kind)
  job = _Job(model, checkpoint_path, examples, options, eval_result, estimator, reference,
             exporter, _validation_key(model, checkpoint_path, examples, options, estimator,
                                       reference))
  if gcs.is_gcs_path(model_base):
    result, same_as = _export_to_gcs(model_base, job)
    _log_export(job, result, same_as, started)
    return result
  if "://" in model_base:
    raise ExportError(f"export base {model_base}: only local paths and gs:// are supported")
  tf.io.gfile.makedirs(model_base)
  _remove_leftovers(model_base)
  staging = os.path.join(
      model_base, f"{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
  try:
    report, same_as = _stage(staging, job)
    passed = report is None or report["passed"]
    while True:  # another exporter may take a number between our listing and our rename
      version = max(_numbers_used(os.listdir(model_base)), default=0) + 1
      final = os.path.join(model_base, str(version) if passed else f"{_REJECTED_PREFIX}{version}")
      if os.path.exists(final):
        continue
      try:
        os.rename(staging, final)
        break
      except OSError:
        if not os.path.exists(final):
          raise
    if report is not None:
      report["export_dir"] = final
      report["version"] = version
      _write_json(final + VALIDATION_SUFFIX, report)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  if not passed:
    raise serving_validation.ValidationError(serving_validation.summary(report, final + VALIDATION_SUFFIX))
  if report is not None:
    _remember(job.key, report, final, final, copied=same_as is not None)
  result = ExportResult(version, final, report)
  _log_export(job, result, same_as, started)
  return result


@dataclasses.dataclass(frozen=True)
class _Job:
  """One export_version call's arguments, and the key of what it builds (None: no validation)."""
  model: ServingModel
  checkpoint_path: str
  examples: Sequence[bytes]
  options: ExportOptions
  eval_result: Optional[Mapping[str, Any]]
  estimator: Optional[tf.estimator.Estimator]
  reference: Optional[ServingModel]
  exporter: Optional[str]
  key: Optional[str]


@dataclasses.dataclass
class _Validated:
  """A passed export of this process and the local directories holding it.

  Attributes:
    report: its validation report as written (version and export_dir of the validated one).
    copies: (local directory, the version's export_dir or gs:// URI), oldest first.
  """
  report: Dict[str, Any]
  copies: List[Tuple[str, str]]


_VALIDATED: Dict[str, _Validated] = {}  # _validation_key -> the export; newest last
_owned_copy: List[str] = []  # the kept local build of a gs:// export (one at most)


def _remove_owned_copy() -> None:
  while _owned_copy:
    shutil.rmtree(_owned_copy.pop(), ignore_errors=True)


atexit.register(_remove_owned_copy)


def _validation_key(model: ServingModel, checkpoint_path: str, examples: Sequence[bytes],
                    options: ExportOptions, estimator: Optional[tf.estimator.Estimator],
                    reference: Optional[ServingModel]) -> Optional[str]:
  """What makes two exports' bytes and validations equal; None when nothing is validated.

  The .index's mtime and size tell a checkpoint rewritten under the same path (a restarted
  run) from the one exported before.
  """
  if not options.validate_examples:
    return None
  stat = tf.io.gfile.stat(checkpoint_path + ".index")
  digest = hashlib.sha256()
  for e in examples[:max(options.warmup_examples, options.validate_examples)]:
    digest.update(len(e).to_bytes(8, "little") + e)
  path = checkpoint_path if "://" in checkpoint_path else os.path.abspath(checkpoint_path)
  return json.dumps([path, stat.mtime_nsec, stat.length, repr(model), repr(reference),
                     repr(options), estimator.model_dir if estimator is not None else None,
                     digest.hexdigest()])


def _remember(key: Optional[str], report: Dict[str, Any], local_dir: str, export_dir: str,
              copied: bool) -> None:
  """Records a passed export (a new validation, or a copy of one) under `key`."""
  if key is None or not report.get("passed"):
    return
  if copied:
    entry = _VALIDATED.get(key)
    if entry is None:
      return
  else:  # a new validation replaces what an earlier one of the same key left
    entry = _VALIDATED[key] = _Validated(copy.deepcopy(report), [])
  entry.copies = entry.copies[-(_MAX_VALIDATED - 1):] + [(local_dir, export_dir)]
  _VALIDATED[key] = _VALIDATED.pop(key)  # newest last
  while len(_VALIDATED) > _MAX_VALIDATED:
    del _VALIDATED[next(iter(_VALIDATED))]


def _link_tree(src: str, dst: str, skip: str) -> None:
  """Copies directory `src` to `dst`, hard-linking each file (copying where linking fails)."""
  for root, _, names in os.walk(src):
    target = os.path.normpath(os.path.join(dst, os.path.relpath(root, src)))
    os.makedirs(target, exist_ok=True)
    for name in names:
      path = os.path.join(root, name)
      if os.path.relpath(path, src) == skip:
        continue
      try:
        os.link(path, os.path.join(target, name))
      except OSError:  # another filesystem, or one without hard links
        shutil.copy2(path, os.path.join(target, name))


def _copy_validated(staging: str, job: _Job) -> Optional[Tuple[Dict[str, Any], str]]:
  """Copies an equal export of this process into `staging`: (its report, the copied export_dir).

  None (and nothing in `staging`) when there is none, or none of its versions still exists.
  """
  entry = _VALIDATED.get(job.key) if job.key is not None else None
  for local_dir, export_dir in reversed(entry.copies if entry else []):
    if not os.path.isfile(os.path.join(local_dir, "saved_model.pb")):
      continue
    try:
      _link_tree(local_dir, staging, skip=_METADATA_REL)
    except OSError:  # deleted while being copied: try the next one
      shutil.rmtree(staging, ignore_errors=True)
      continue
    _write_json(os.path.join(staging, _METADATA_REL),
                dict(_metadata(job.model, job.checkpoint_path, job.options, job.eval_result,
                               job.exporter), same_as=export_dir))
    return dict(copy.deepcopy(entry.report), validated_as=entry.report["export_dir"]), export_dir
  return None


def _stage(staging: str, job: _Job) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
  """Writes the export into `staging`: (its report or None, the export_dir it copies or None)."""
  copied = _copy_validated(staging, job)
  if copied is not None:
    return copied
  return _build_and_validate(staging, job.model, job.checkpoint_path, job.examples, job.options,
                             job.eval_result, job.estimator, job.reference, job.exporter), None


def _log_export(job: _Job, result: ExportResult, same_as: Optional[str], started: float) -> None:
  if same_as is not None:
    how = f"same SavedModel as {'/'.join(same_as.rstrip('/').split('/')[-2:])}"
  else:
    how = "validated" if result.validation is not None else "not validated"
  logging.info("exported %sv%d of %s to %s (%s, %.1f s)",
               f"{job.exporter} " if job.exporter else "", result.version,
               job.options.model_name, result.export_dir, how, time.monotonic() - started)


def _build_and_validate(staging, model, checkpoint_path, examples, options, eval_result,
                        estimator, reference, exporter) -> Optional[Dict[str, Any]]:
  write_saved_model(staging, model, checkpoint_path)
  if options.warmup_examples:
    by_examples = ({"regress_signature": REGRESSION} if model.spec.label_kind == fs.REGRESSION
                   else {"classify_signature": CLASSIFICATION})
    warmup.write(staging, warmup.build_requests(
        model.spec, list(examples[:options.warmup_examples]), options.model_name,
        raw_signature=SERVING_DEFAULT, examples_signature=PREDICT_EXAMPLES,
        examples_input_key=EXAMPLES_INPUT_KEY, **by_examples))
  _write_json(os.path.join(staging, warmup.ASSETS_EXTRA, METADATA_FILE),
              _metadata(model, checkpoint_path, options, eval_result, exporter))
  if not options.validate_examples:
    return None
  ref = reference or model
  return serving_validation.validate(
      staging, model_fn=ref.model_fn(), spec=ref.spec, preprocessing=ref.preprocessing,
      checkpoint_path=checkpoint_path, records=list(examples[:options.validate_examples]),
      tolerance=options.tolerance, precision=model.train_cfg.precision, estimator=estimator)


def _export_to_gcs(model_base: str, job: _Job) -> Tuple[ExportResult, Optional[str]]:
  """Builds and validates the export locally (or copies an equal one), then publishes it.

  Returns:
    The result, and the export_dir it copies (None if built).
  """
  client = gcs.make_client()
  tmp = tempfile.mkdtemp(prefix="export-")
  keep = False
  try:
    staging = os.path.join(tmp, "model")
    report, same_as = _stage(staging, job)
    version = max(publish.list_versions(model_base, client), default=0) + 1
    if report is not None:
      report["version"] = version
      report["export_dir"] = f"{model_base.rstrip('/')}/{version}"
      if not report["passed"]:
        rel = f"{_REJECTED_PREFIX}{version}{VALIDATION_SUFFIX}"
        publish.upload_text(model_base, rel, json.dumps(report, indent=2, sort_keys=True, default=str),
                            client)
        raise serving_validation.ValidationError(
            serving_validation.summary(report, f"{model_base.rstrip('/')}/{rel}"))
      _write_json(os.path.join(tmp, "model" + VALIDATION_SUFFIX), report)
    uri = publish.publish_version(staging, model_base, version, client)
    if report is not None and same_as is None and job.key is not None:
      _remove_owned_copy()  # one kept build at most
      _owned_copy.append(tmp)
      keep = True
      _remember(job.key, report, staging, uri, copied=False)
  finally:
    if not keep:
      shutil.rmtree(tmp, ignore_errors=True)
  return ExportResult(version, uri, report), same_as


def garbage_collect(model_base: str, keep: int) -> List[int]:
  """Deletes all but the `keep` highest versions (and their reports); returns the deleted.

  A local version is first renamed to a hidden name, so it disappears atomically. Rejected
  exports (`.rejected-<n>`) are capped the same way.
  """
  if keep < 1:
    raise ExportError(f"keep must be >= 1, got {keep}")
  doomed = list_versions(model_base)[:-keep]
  for v in doomed:
    if gcs.is_gcs_path(model_base):
      publish.delete_version(model_base, v, gcs.make_client())
      continue
    path = os.path.join(model_base, str(v))
    hidden = os.path.join(model_base, f"{_DELETING_PREFIX}{v}-{secrets.token_hex(4)}")
    os.rename(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)
    if os.path.exists(path + VALIDATION_SUFFIX):
      os.remove(path + VALIDATION_SUFFIX)
  if not gcs.is_gcs_path(model_base):
    rejected = sorted(int(n[len(_REJECTED_PREFIX):]) for n in os.listdir(model_base)
                      if n.startswith(_REJECTED_PREFIX) and n[len(_REJECTED_PREFIX):].isdigit())
    for v in rejected[:-keep]:
      path = os.path.join(model_base, f"{_REJECTED_PREFIX}{v}")
      shutil.rmtree(path, ignore_errors=True)
      if os.path.exists(path + VALIDATION_SUFFIX):
        os.remove(path + VALIDATION_SUFFIX)
  return doomed


# --- Inputs: examples and checkpoints ---------------------------------------------------------


def read_examples(m: manifest_lib.Manifest, split: str, n: int) -> List[bytes]:
  """The first `n` serialized examples of a split, in file order (for warm-up and validation).

  Raises:
    ExportError: the split holds no examples.
  """
  options = tf.io.TFRecordOptions(compression_type=m.compression or None)
  out: List[bytes] = []
  for path in m.files(split):
    for record in tf.compat.v1.io.tf_record_iterator(path, options):
      if len(out) >= n:
        return out
      out.append(record)
  if not out and n > 0:
    raise ExportError(f"split {split!r} of {m.directory} holds no examples")
  return out


# --- Exporters for train_and_evaluate -----------------------------------------------------------


class _Exporter(tf.estimator.Exporter):
  """A tf.estimator.Exporter writing versions with export_version, keeping the newest `keep`."""

  def __init__(self, name: str, model: ServingModel, examples: Sequence[bytes],
               options: ExportOptions, keep: int):
    if keep < 1:
      raise ExportError(f"exporter {name!r}: keep must be >= 1, got {keep}")
    self._name = name
    self._model = model
    self._examples = list(examples)
    self._options = options
    self._keep = keep

  @property
  def name(self) -> str:
    return self._name

  def _wants(self, export_path: str, eval_result, is_the_final_export: bool) -> bool:
    raise NotImplementedError

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    if not self._wants(export_path, eval_result, is_the_final_export):
      return None
    result = export_version(export_path, self._model, checkpoint_path, self._examples,
                            self._options, eval_result=eval_result, estimator=estimator,
                            exporter=self._name)
    garbage_collect(export_path, self._keep)
    return result.export_dir


class LatestExporter(_Exporter):
  """Exports after every evaluation; keeps the newest `keep` versions."""

  def __init__(self, model, examples, options=ExportOptions(), keep: int = 5, name: str = "latest"):
    super().__init__(name, model, examples, options, keep)

  def _wants(self, export_path, eval_result, is_the_final_export):
    return True


class FinalExporter(_Exporter):
  """Exports once, after the final evaluation of a run; keeps the newest `keep` versions."""

  def __init__(self, model, examples, options=ExportOptions(), keep: int = 5, name: str = "final"):
    super().__init__(name, model, examples, options, keep)

  def _wants(self, export_path, eval_result, is_the_final_export):
    return bool(is_the_final_export)


class BestExporter(_Exporter):
  """Exports when `metric` beats every earlier export in its base; keeps the best `keep`.

  The best value so far is read back from the exports' metadata, so it survives restarts.
  Since each export beats all earlier ones, the newest versions are the best ones.
  """

  def __init__(self, model, examples, options=ExportOptions(), keep: int = 3,
               metric: str = "accuracy", higher_is_better: bool = True, name: str = "best"):
    super().__init__(name, model, examples, options, keep)
    self._metric = metric
    self._higher = higher_is_better
    self._best: Optional[float] = None
    self._loaded_from: Optional[str] = None

  def _best_exported(self, export_path: str) -> Optional[float]:
    best = None
    for v in list_versions(export_path):
      meta = read_metadata(os.path.join(export_path, str(v)) if not gcs.is_gcs_path(export_path)
                           else f"{export_path.rstrip('/')}/{v}") or {}
      value = meta.get("eval_metrics", {}).get(self._metric)
      if value is not None and (best is None or self._better(float(value), best)):
        best = float(value)
    return best

  def _better(self, value: float, than: Optional[float]) -> bool:
    return than is None or (value > than if self._higher else value < than)

  def _wants(self, export_path, eval_result, is_the_final_export):
    if self._metric not in (eval_result or {}):
      raise ExportError(f"best exporter {self._name!r}: metric {self._metric!r} is not in the "
                        f"evaluation results {sorted(eval_result or {})}")
    if self._loaded_from != export_path:
      self._best, self._loaded_from = self._best_exported(export_path), export_path
    value = float(eval_result[self._metric])
    if not self._better(value, self._best):
      return False
    self._best = value
    return True


@dataclasses.dataclass(frozen=True)
class ExportersConfig:
  """Which exporters train_and_evaluate runs (each writes model_dir/export/<its name>/<v>).

  Attributes:
    keep_latest: versions kept by the "latest" exporter (0 disables it).
    keep_best: versions kept by the "best" exporter (0 disables it).
    best_metric: eval metric the "best" exporter compares.
    higher_is_better: whether a larger best_metric is better.
    keep_final: versions kept by the "final" exporter (0 disables it).
    options: model name, warm-up and validation settings shared by the exporters.
  """
  keep_latest: int = 3
  keep_best: int = 2
  best_metric: str = "accuracy"
  higher_is_better: bool = True
  keep_final: int = 3
  options: ExportOptions = ExportOptions()


def make_exporters(model: ServingModel, examples: Sequence[bytes],
                   cfg: ExportersConfig = ExportersConfig()) -> List[tf.estimator.Exporter]:
  """The exporters for an EvalSpec: latest, best and final, as configured."""
  out: List[tf.estimator.Exporter] = []
  if cfg.keep_latest:
    out.append(LatestExporter(model, examples, cfg.options, keep=cfg.keep_latest))
  if cfg.keep_best:
    out.append(BestExporter(model, examples, cfg.options, keep=cfg.keep_best,
                            metric=cfg.best_metric, higher_is_better=cfg.higher_is_better))
  if cfg.keep_final:
    out.append(FinalExporter(model, examples, cfg.options, keep=cfg.keep_final))
  return out
