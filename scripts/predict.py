r"""Batch inference with a trained checkpoint over TFRecords or an image folder, to JSONL or CSV.

  ./bazelw run //scripts:predict -- --model_dir=runs/digits --output=/tmp/predictions.jsonl
  ./bazelw run //scripts:predict -- --model_dir=runs/digits --data_dir=data/other --split=eval \
      --output=/tmp/predictions.csv
  ./bazelw run //scripts:predict -- --model_dir=runs/digits --images=path/to/pngs --output=p.csv
  ./bazelw run //scripts:predict -- --model_dir=runs/digits --images=path/to/pngs --output=p.csv \
      --skip_unreadable

The model, its hyperparameters and preprocessing come from model_dir/config.json. Images are
resized and converted to the model's input as the writer does it (one warning line says how
many were); one that cannot be decoded stops the run, naming it, unless --skip_unreadable.
"""

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import config as config_lib
from estimator_app import paths
from input_fns import errors
from scripts import run_flags

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# run() and main() import the prediction library (and TensorFlow).

_IMAGES = flags.DEFINE_string("images", None, "A folder of PNG/JPEG images instead of TFRecords.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file: .jsonl or .csv.")
_FORMAT = flags.DEFINE_string("format", "", "jsonl or csv (default: from --output's extension).")
_SKIP_UNREADABLE = flags.DEFINE_bool(
    "skip_unreadable", False, "With --images: skip images that cannot be decoded, predict the "
    "rest and list the skipped ones at the end (default: stop at the first, naming it).")


def run(model_dir: str, checkpoint: str, data_dir, split: str, images, output: str, fmt: str,
        skip_unreadable: bool = False):
  """Predicts and writes the rows; returns (how many, the skipped images' (path, why))."""
  from estimator_app.analysis import prediction  # pylint: disable=g-import-not-at-top
  from estimator_app.checkpoints import info as checkpoint_info  # pylint: disable=g-import-not-at-top
  from input_fns import manifest as manifest_lib  # pylint: disable=g-import-not-at-top
  cfg = config_lib.load_saved(model_dir)
  if cfg is None:
    raise errors.UserInputError(f"--model_dir {model_dir} has no {config_lib.CONFIG_FILENAME}: "
                                "not a run made by //scripts:train")
  fmt = prediction.output_format(output, fmt)
  prefix = checkpoint_info.resolve(model_dir, checkpoint, cfg.run.best_metric,
                               cfg.run.best_metric_higher_is_better)
  skipped = ()
  if images:
    spec = manifest_lib.read(cfg.data.data_dir).spec
    loaded = prediction.load_images(spec, prediction.list_images(images), skip_unreadable)
    rows = prediction.predict_images(cfg, spec, loaded, prefix)
    skipped = loaded.skipped
  else:
    rows = prediction.predict_records(cfg, manifest_lib.read(data_dir or cfg.data.data_dir),
                                      split, prefix)
  return prediction.write_rows(rows, output, fmt), skipped


def main(argv):
  del argv
  from estimator_app.analysis import prediction  # pylint: disable=g-import-not-at-top
  if not _OUTPUT.value:
    raise errors.UserInputError("--output is required (a .jsonl or .csv file)")
  output = paths.resolve_path(_OUTPUT.value)
  images = paths.resolve_path(_IMAGES.value) if _IMAGES.value else None
  n, skipped = run(run_flags.model_dir(), run_flags.checkpoint(), run_flags.data_dir(),
                   run_flags.SPLIT.value, images, output, _FORMAT.value, _SKIP_UNREADABLE.value)
  print(f"wrote {n} predictions to {output}")
  if skipped:
    print(prediction.format_skipped(skipped))


if __name__ == "__main__":
  cli.run(main)
