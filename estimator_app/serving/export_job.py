"""One export job of a finished run: a checkpoint made a TF Serving version, or an export checked.

run(ExportJob) takes the model as the run trained it (model, hparams, optimization config,
dataset and preprocessing chain from MODEL_DIR/config.json, each overridable), exports the
resolved checkpoint as the next integer version under EXPORT_BASE/MODEL_NAME/ (validated in a
separate serving process when asked, so a mismatch never becomes visible) and publishes it to gs://; or,
given an existing export, validates it against the checkpoint it was made from.

Entry points: ExportJob, run and its Outcome (behind //scripts:export); export.py does the
exporting itself.
"""

import dataclasses
import os
from typing import Optional, Tuple

import tensorflow as tf

from estimator_app import config as config_lib
from estimator_app import paths
from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.serving import export
from estimator_app.serving import publish
from estimator_app.serving import validation as serving_validation
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns import splits
from model_fns import model_fn as model_fn_lib
from model_fns import registry

_FALLBACK_DATA_DIR = "data/digits"
_FALLBACK_PREPROCESSING = "scale"


@dataclasses.dataclass(frozen=True)
class ExportJob:
  """What one run of //scripts:export does (flags of the same names, paths resolved).

  model, data_dir and preprocessing are None when not given: the run's saved config (or the
  fallback defaults) provides them.

  Attributes:
    model_dir: the training run (holds config.json and checkpoints).
    checkpoint: "latest", "best", or a checkpoint prefix or directory.
    best_metric: the eval metric that decides "best" when the run kept no best checkpoints;
      "" for the run's own (its config.json; accuracy for a run without one).
    higher_is_better: whether a larger best_metric is better (read when best_metric is set).
    model: registered model name, or None.
    data_dir: dataset directory holding manifest.json, or None.
    preprocessing: the chain built into the export ('' for none), or None.
    export_base: versions go to EXPORT_BASE/MODEL_NAME/<version>.
    model_name: TF Serving model name ('': the dataset directory's name).
    validate: check every signature against estimator.predict in a separate serving process.
    validate_examples: eval examples the validation compares.
    tolerance: the largest difference of probabilities the validation accepts.
    warmup_examples: eval examples per TF Serving warm-up request (0: none).
    export_dir: with validate, an existing export to validate instead of making one ('': none).
    publish_to: gs://BUCKET/models/NAME to publish the new version to ('': none).
  """
  model_dir: str
  checkpoint: str
  best_metric: str
  higher_is_better: bool
  model: Optional[str]
  data_dir: Optional[str]
  preprocessing: Optional[str]
  export_base: str
  model_name: str
  validate: bool
  validate_examples: int
  tolerance: float
  warmup_examples: int
  export_dir: str
  publish_to: str


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What the job did: the version made (if any), its directory, report and publish URI."""
  export_dir: str
  version: Optional[int]
  checkpoint: str
  validation: Optional[dict]
  published: Optional[str]
  model_name: str
  signatures: Tuple[str, ...] = ()


def _serving_model(job: ExportJob) -> Tuple[export.ServingModel, manifest_lib.Manifest]:
  """The model as the run trained it: its saved config, overridden by what the job gives."""
  if job.model_dir and not job.export_dir and not tf.io.gfile.isdir(job.model_dir):
    raise export.ExportError(f"--model_dir {job.model_dir} does not exist (expected a run "
                             f"made by //scripts:train)")
  saved = config_lib.load_saved(job.model_dir) if job.model_dir else None
  name = job.model or (saved.model if saved else registry.DEFAULT_MODEL)
  model_def = registry.get(name)
  same_model = saved is not None and saved.model == name
  hparams = saved.hparams if same_model else model_def.hparams_cls()
  train_cfg = saved.optimization if saved else model_fn_lib.TrainConfig()
  data_dir = job.data_dir or (saved.data.data_dir if saved else
                              paths.resolve_path(_FALLBACK_DATA_DIR))
  chain = job.preprocessing
  if chain is None:
    chain = saved.data.preprocessing if saved else _FALLBACK_PREPROCESSING
  m = manifest_lib.read(data_dir)
  return export.ServingModel(model_def, hparams, m.spec, preprocessing.parse_chain(chain),
                             train_cfg), m


def _resolve_checkpoint(job: ExportJob) -> str:
  metric, higher = job.best_metric, job.higher_is_better
  if not metric:
    saved = config_lib.load_saved(job.model_dir) if job.model_dir else None
    metric, higher = ((saved.run.best_metric, saved.run.best_metric_higher_is_better)
                      if saved is not None and saved.run.best_metric else ("accuracy", True))
  return checkpoint_info.resolve(job.model_dir, job.checkpoint, metric, higher)


def run(job: ExportJob) -> Outcome:
  """Exports (or, with export_dir, validates) as the job says.

  Raises:
    UserInputError subclasses: bad flags, paths or checkpoint, or a failed validation.
  """
  if job.export_dir and not job.validate:
    raise export.ExportError("--export_dir names an export to validate: add --validate")
  if job.publish_to:
    publish.parse_uri(job.publish_to)  # fail before the work, not after
  if job.validate and job.validate_examples < 1:
    raise export.ExportError(f"--validate_examples must be >= 1, got {job.validate_examples}")
  model, m = _serving_model(job)
  model_name = job.model_name or os.path.basename(os.path.normpath(m.directory))
  examples = export.read_examples(
      m, splits.EVAL, max(job.warmup_examples, job.validate_examples if job.validate else 0, 1))

  if job.export_dir:
    return _validate_existing(job, model, examples, model_name)

  ckpt = _resolve_checkpoint(job)
  options = export.ExportOptions(
      model_name=model_name, warmup_examples=job.warmup_examples,
      validate_examples=job.validate_examples if job.validate else 0, tolerance=job.tolerance)
  result = export.export_version(os.path.join(job.export_base, model_name), model, ckpt,
                                 examples, options, exporter="scripts/export")
  published = None
  if job.publish_to:
    published = publish.publish_version(result.export_dir, job.publish_to, result.version,
                                        publish.make_client())
  return Outcome(result.export_dir, result.version, ckpt, result.validation, published, model_name,
                 export.signatures_for(model.spec))


def _validate_existing(job: ExportJob, model: export.ServingModel, examples,
                       model_name: str) -> Outcome:
  """Validates an existing export against the checkpoint it was made from."""
  if not os.path.exists(os.path.join(job.export_dir, "saved_model.pb")):
    raise export.ExportError(f"--export_dir {job.export_dir} holds no saved_model.pb")
  meta = export.read_metadata(job.export_dir) or {}
  ckpt = meta.get("checkpoint")
  if not ckpt or not os.path.exists(ckpt + ".index"):
    ckpt = _resolve_checkpoint(job)
  report = serving_validation.validate(
      job.export_dir, model_fn=model.model_fn(), spec=model.spec,
      preprocessing=model.preprocessing, checkpoint_path=ckpt,
      records=examples[:job.validate_examples], tolerance=job.tolerance)
  path = serving_validation.report_path(job.export_dir)
  serving_validation.write_report(report, path)
  if not report["passed"]:
    raise serving_validation.ValidationError(serving_validation.summary(report, path))
  return Outcome(job.export_dir, None, ckpt, report, None, model_name,
                 export.signatures_for(model.spec))
