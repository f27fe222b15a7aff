r"""Exports a checkpoint as a TF Serving model version, optionally validated and published.

  ./bazelw run //scripts:export -- --model_dir=runs/digits               # latest checkpoint
  ./bazelw run //scripts:export -- --model_dir=runs/digits --checkpoint=best --validate
  ./bazelw run //scripts:export -- --model_dir=runs/digits \
      --checkpoint=runs/digits/model.ckpt-400 --export_base=exports --model_name=digits
  ./bazelw run //scripts:export -- --model_dir=runs/digits --validate \
      --export_dir=exports/digits/3                                     # check an existing export
  ./bazelw run //scripts:export -- --model_dir=runs/digits --publish_to=gs://BUCKET/models/digits

The export lands in EXPORT_BASE/MODEL_NAME/<next integer version>/ (see docs/serving.md).
The model, its hparams, the optimization config, the dataset and the preprocessing chain come
from the run's saved config (MODEL_DIR/config.json) when it has one; --model, --data_dir and
--preprocessing override it when given (and are needed for a run without one). With --validate, every signature is checked in a fresh process against
estimator.predict on --validate_examples eval examples; a mismatch exits with status 2 and
the version never becomes visible.
"""

import dataclasses
import os
from typing import Optional, Tuple

import tensorflow as tf
from absl import flags

from estimator_app import config as config_lib
from estimator_app import paths
from estimator_app.checkpoints import retention as checkpoints
from estimator_app.serving import export
from estimator_app.serving import publish
from estimator_app.serving import validation as serving_validation
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns import splits
from model_fns import model_fn as model_fn_lib
from model_fns import registry
from scripts import cli
from scripts import run_flags

_BEST_METRIC = flags.DEFINE_string(
    "best_metric", "accuracy", "Eval metric for --checkpoint=best when the run kept no best "
    "checkpoints (otherwise <model_dir>/best decides).")
_HIGHER_IS_BETTER = flags.DEFINE_boolean("higher_is_better", True,
                                         "Whether a larger --best_metric is better.")
_MODEL = flags.DEFINE_string(
    "model", None, f"Model the checkpoint was trained as: {', '.join(registry.names())} "
    f"(default: the run's config.json, else {registry.DEFAULT_MODEL}).")
_PREPROCESSING = flags.DEFINE_string(
    "preprocessing", None, "Preprocessing chain the model was evaluated with, built into the "
    "export (default: the run's config.json, else scale; '' for none).")
_EXPORT_BASE = flags.DEFINE_string("export_base", "exports", "Exports go to EXPORT_BASE/MODEL_NAME/<version>.")
_MODEL_NAME = flags.DEFINE_string("model_name", "", "TF Serving model name (default: the dataset directory's name).")
_VALIDATE = flags.DEFINE_boolean("validate", False,
                                 "Check every signature against estimator.predict in a fresh process.")
_VALIDATE_EXAMPLES = flags.DEFINE_integer("validate_examples", 32, "Eval examples --validate compares.")
_TOLERANCE = flags.DEFINE_float("tolerance", 1e-5, "Max abs difference of probabilities --validate accepts.")
_WARMUP_EXAMPLES = flags.DEFINE_integer("warmup_examples", 4,
                                        "Eval examples per TF Serving warm-up request (0: none).")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", "", "With --validate: validate this existing export instead of making one.")
_PUBLISH_TO = flags.DEFINE_string("publish_to", "", "gs://BUCKET/models/NAME to publish the new version to.")


_FALLBACK_DATA_DIR = "data/digits"
_FALLBACK_PREPROCESSING = "scale"


@dataclasses.dataclass(frozen=True)
class ExportJob:
  """What one run of //scripts:export does (flags of the same names, paths resolved).

  model, data_dir and preprocessing are None when not given: the run's saved config (or the
  fallback defaults) provides them.
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


def job_from_flags() -> ExportJob:
  """Reads the flags once into the frozen job passed down."""
  model_dir = run_flags.model_dir()
  checkpoint = run_flags.checkpoint()
  data_dir = run_flags.data_dir()
  return ExportJob(
      model_dir=model_dir, checkpoint=checkpoint, best_metric=_BEST_METRIC.value,
      higher_is_better=_HIGHER_IS_BETTER.value, model=_MODEL.value, data_dir=data_dir,
      preprocessing=_PREPROCESSING.value,
      export_base=paths.resolve_path(_EXPORT_BASE.value),
      model_name=_MODEL_NAME.value,
      validate=_VALIDATE.value, validate_examples=_VALIDATE_EXAMPLES.value,
      tolerance=_TOLERANCE.value, warmup_examples=_WARMUP_EXAMPLES.value,
      export_dir=paths.resolve_path(_EXPORT_DIR.value) if _EXPORT_DIR.value else "",
      publish_to=_PUBLISH_TO.value)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What the job did: the version made (if any), its directory, report and publish URI."""
  export_dir: str
  version: Optional[int]
  checkpoint: str
  validation: Optional[dict]
  published: Optional[str]
  model_name: str


def _serving_model(job: ExportJob) -> Tuple[export.ServingModel, manifest_lib.Manifest]:
  """The model as the run trained it: its saved config, overridden by the flags given."""
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

  ckpt = checkpoints.resolve(job.model_dir, job.checkpoint, job.best_metric,
                             job.higher_is_better)
  options = export.ExportOptions(
      model_name=model_name, warmup_examples=job.warmup_examples,
      validate_examples=job.validate_examples if job.validate else 0, tolerance=job.tolerance)
  result = export.export_version(os.path.join(job.export_base, model_name), model, ckpt,
                                 examples, options, exporter="scripts/export")
  published = None
  if job.publish_to:
    published = publish.publish_version(result.export_dir, job.publish_to, result.version,
                                        publish.make_client())
  return Outcome(result.export_dir, result.version, ckpt, result.validation, published, model_name)


def _validate_existing(job: ExportJob, model: export.ServingModel, examples,
                       model_name: str) -> Outcome:
  """Validates an existing export against the checkpoint it was made from."""
  if not os.path.exists(os.path.join(job.export_dir, "saved_model.pb")):
    raise export.ExportError(f"--export_dir {job.export_dir} holds no saved_model.pb")
  meta = export.read_metadata(job.export_dir) or {}
  ckpt = meta.get("checkpoint")
  if not ckpt or not os.path.exists(ckpt + ".index"):
    ckpt = checkpoints.resolve(job.model_dir, job.checkpoint, job.best_metric,
                               job.higher_is_better)
  report = serving_validation.validate(
      job.export_dir, model_fn=model.model_fn(), spec=model.spec,
      preprocessing=model.preprocessing, checkpoint_path=ckpt,
      records=examples[:job.validate_examples], tolerance=job.tolerance)
  path = serving_validation.report_path(job.export_dir)
  serving_validation.write_report(report, path)
  if not report["passed"]:
    raise serving_validation.ValidationError(serving_validation.summary(report, path))
  return Outcome(job.export_dir, None, ckpt, report, None, model_name)


def main(argv):
  del argv
  job = job_from_flags()
  out = run(job)
  if out.version is not None:
    print(f"exported version {out.version} of {out.model_name!r} from {out.checkpoint}")
    print(f"  {out.export_dir}")
    print(f"  signatures: {', '.join(export.SIGNATURES)}")
  if out.validation is not None:
    print(serving_validation.summary(out.validation, serving_validation.report_path(out.export_dir)))
  if out.published:
    print(f"published: {out.published}")


if __name__ == "__main__":
  cli.run(main)
