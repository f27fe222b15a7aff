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
--preprocessing override it when given (and are needed for a run without one). With
--validate, every signature is checked in a separate serving process against
estimator.predict on --validate_examples eval examples; a mismatch exits with status 2 and
the version never becomes visible.
"""

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import paths
from model_fns import registry
from scripts import run_flags

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# job_from_flags() and main() import the serving library (and TensorFlow).

_BEST_METRIC = flags.DEFINE_string(
    "best_metric", "", "Eval metric for --checkpoint=best when the run kept no best "
    "checkpoints (otherwise <model_dir>/best decides); default: the run's own best_metric.")
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
                                 "Check every signature against estimator.predict in a separate serving process.")
_VALIDATE_EXAMPLES = flags.DEFINE_integer("validate_examples", 32, "Eval examples --validate compares.")
_TOLERANCE = flags.DEFINE_float("tolerance", 1e-5, "Max abs difference of probabilities --validate accepts.")
_WARMUP_EXAMPLES = flags.DEFINE_integer("warmup_examples", 4,
                                        "Eval examples per TF Serving warm-up request (0: none).")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", "", "With --validate: validate this existing export instead of making one.")
_PUBLISH_TO = flags.DEFINE_string("publish_to", "", "gs://BUCKET/models/NAME to publish the new version to.")


def job_from_flags():
  """Reads the flags once into the frozen export_job.ExportJob passed down."""
  from estimator_app.serving import export_job  # pylint: disable=g-import-not-at-top
  model_dir = run_flags.model_dir()
  checkpoint = run_flags.checkpoint()
  data_dir = run_flags.data_dir()
  return export_job.ExportJob(
      model_dir=model_dir, checkpoint=checkpoint, best_metric=_BEST_METRIC.value,
      higher_is_better=_HIGHER_IS_BETTER.value, model=_MODEL.value, data_dir=data_dir,
      preprocessing=_PREPROCESSING.value,
      export_base=paths.resolve_path(_EXPORT_BASE.value),
      model_name=_MODEL_NAME.value,
      validate=_VALIDATE.value, validate_examples=_VALIDATE_EXAMPLES.value,
      tolerance=_TOLERANCE.value, warmup_examples=_WARMUP_EXAMPLES.value,
      export_dir=paths.resolve_path(_EXPORT_DIR.value) if _EXPORT_DIR.value else "",
      publish_to=_PUBLISH_TO.value)


def main(argv):
  del argv
  from estimator_app.serving import export_job  # pylint: disable=g-import-not-at-top
  from estimator_app.serving import validation as serving_validation  # pylint: disable=g-import-not-at-top
  out = export_job.run(job_from_flags())
  if out.version is not None:
    print(f"exported version {out.version} of {out.model_name!r} from {out.checkpoint}")
    print(f"  {out.export_dir}")
    print(f"  signatures: {', '.join(out.signatures)}")
  if out.validation is not None:
    print(serving_validation.summary(out.validation, serving_validation.report_path(out.export_dir)))
  if out.published:
    print(f"published: {out.published}")


if __name__ == "__main__":
  cli.run(main)
