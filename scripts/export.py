r"""Exports a checkpoint as a TF Serving model version, optionally validated and published.

  ./bazelw run //scripts:export -- --model_dir=runs/digits               # latest checkpoint
  ./bazelw run //scripts:export -- --model_dir=runs/digits --checkpoint=best --validate
  ./bazelw run //scripts:export -- --model_dir=runs/digits \
      --checkpoint=runs/digits/model.ckpt-400 --export_base=exports --model_name=digits
  ./bazelw run //scripts:export -- --model_dir=runs/digits --validate \
      --export_dir=exports/digits/3                                     # check an existing export
  ./bazelw run //scripts:export -- --model_dir=runs/digits --publish_to=gs://BUCKET/models/digits

The export lands in EXPORT_BASE/MODEL_NAME/<next integer version>/ (see docs/serving.md).
--model, --data_dir and --preprocessing must be what the checkpoint was trained and evaluated
with. With --validate, every signature is checked in a fresh process against
estimator.predict on --validate_examples eval examples; a mismatch exits with status 2 and
the version never becomes visible.
"""

import dataclasses
import os
from typing import Optional

from absl import flags

from estimator_app import cli
from estimator_app import config as config_lib
from estimator_app import export
from estimator_app import publish
from estimator_app import serving_validation
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns import splits
from model_fns import model_fn as model_fn_lib
from model_fns import registry

_MODEL_DIR = flags.DEFINE_string("model_dir", "runs/digits", "Training run directory (checkpoints).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest",
    "'latest', 'best' (best --best_metric among the kept checkpoints' evaluations) or a "
    "checkpoint prefix such as runs/digits/model.ckpt-400.")
_BEST_METRIC = flags.DEFINE_string("best_metric", "accuracy", "Eval metric for --checkpoint=best.")
_HIGHER_IS_BETTER = flags.DEFINE_boolean("higher_is_better", True,
                                         "Whether a larger --best_metric is better.")
_MODEL = flags.DEFINE_string("model", registry.DEFAULT_MODEL,
                             f"Model the checkpoint was trained as: {', '.join(registry.names())}.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/digits",
                                "Dataset directory (manifest.json): feature spec and eval examples.")
_PREPROCESSING = flags.DEFINE_string(
    "preprocessing", "scale", "Preprocessing chain the model was evaluated with (built into the export).")
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


@dataclasses.dataclass(frozen=True)
class ExportJob:
  """What one run of //scripts:export does (flags of the same names, paths resolved)."""
  model_dir: str
  checkpoint: str
  best_metric: str
  higher_is_better: bool
  model: str
  data_dir: str
  preprocessing: str
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
  model_dir = config_lib.resolve_path(_MODEL_DIR.value)
  checkpoint = _CHECKPOINT.value
  if checkpoint not in ("latest", "best"):
    checkpoint = config_lib.resolve_path(checkpoint)
  data_dir = config_lib.resolve_path(_DATA_DIR.value)
  return ExportJob(
      model_dir=model_dir, checkpoint=checkpoint, best_metric=_BEST_METRIC.value,
      higher_is_better=_HIGHER_IS_BETTER.value, model=_MODEL.value, data_dir=data_dir,
      preprocessing=_PREPROCESSING.value,
      export_base=config_lib.resolve_path(_EXPORT_BASE.value),
      model_name=_MODEL_NAME.value or os.path.basename(os.path.normpath(data_dir)),
      validate=_VALIDATE.value, validate_examples=_VALIDATE_EXAMPLES.value,
      tolerance=_TOLERANCE.value, warmup_examples=_WARMUP_EXAMPLES.value,
      export_dir=config_lib.resolve_path(_EXPORT_DIR.value) if _EXPORT_DIR.value else "",
      publish_to=_PUBLISH_TO.value)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What the job did: the version made (if any), its directory, report and publish URI."""
  export_dir: str
  version: Optional[int]
  checkpoint: str
  validation: Optional[dict]
  published: Optional[str]


def _serving_model(job: ExportJob, m: manifest_lib.Manifest) -> export.ServingModel:
  model_def = registry.get(job.model)
  return export.ServingModel(model_def, model_def.hparams_cls(), m.spec,
                             preprocessing.parse_chain(job.preprocessing), model_fn_lib.TrainConfig())


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
  m = manifest_lib.read(job.data_dir)
  model = _serving_model(job, m)
  examples = export.read_examples(
      m, splits.EVAL, max(job.warmup_examples, job.validate_examples if job.validate else 0, 1))

  if job.export_dir:
    return _validate_existing(job, model, examples)

  ckpt = export.resolve_checkpoint(job.model_dir, job.checkpoint, job.best_metric,
                                   job.higher_is_better)
  options = export.ExportOptions(
      model_name=job.model_name, warmup_examples=job.warmup_examples,
      validate_examples=job.validate_examples if job.validate else 0, tolerance=job.tolerance)
  result = export.export_version(os.path.join(job.export_base, job.model_name), model, ckpt,
                                 examples, options, exporter="scripts/export")
  published = None
  if job.publish_to:
    published = publish.publish_version(result.export_dir, job.publish_to, result.version,
                                        publish.make_client())
  return Outcome(result.export_dir, result.version, ckpt, result.validation, published)


def _validate_existing(job: ExportJob, model: export.ServingModel, examples) -> Outcome:
  """Validates an existing export against the checkpoint it was made from."""
  if not os.path.exists(os.path.join(job.export_dir, "saved_model.pb")):
    raise export.ExportError(f"--export_dir {job.export_dir} holds no saved_model.pb")
  meta = export.read_metadata(job.export_dir) or {}
  ckpt = meta.get("checkpoint")
  if not ckpt or not os.path.exists(ckpt + ".index"):
    ckpt = export.resolve_checkpoint(job.model_dir, job.checkpoint, job.best_metric,
                                     job.higher_is_better)
  report = serving_validation.validate(
      job.export_dir, model_fn=model.model_fn(), spec=model.spec,
      preprocessing=model.preprocessing, checkpoint_path=ckpt,
      records=examples[:job.validate_examples], tolerance=job.tolerance)
  path = serving_validation.report_path(job.export_dir)
  serving_validation.write_report(report, path)
  if not report["passed"]:
    raise serving_validation.ValidationError(serving_validation.summary(report, path))
  return Outcome(job.export_dir, None, ckpt, report, None)


def main(argv):
  del argv
  job = job_from_flags()
  out = run(job)
  if out.version is not None:
    print(f"exported version {out.version} of {job.model_name!r} from {out.checkpoint}")
    print(f"  {out.export_dir}")
    print(f"  signatures: {', '.join(export.SIGNATURES)}")
  if out.validation is not None:
    print(serving_validation.summary(out.validation, serving_validation.report_path(out.export_dir)))
  if out.published:
    print(f"published: {out.published}")


if __name__ == "__main__":
  cli.run(main)
