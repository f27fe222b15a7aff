r"""Full evaluation of a checkpoint on any dataset: metrics, confusion matrix, JSON and PNG.

  ./bazelw run //scripts:evaluate -- --model_dir=runs/digits
  ./bazelw run //scripts:evaluate -- --model_dir=runs/digits --checkpoint=best
  ./bazelw run //scripts:evaluate -- --model_dir=runs/digits --checkpoint=runs/digits/model.ckpt-400 \
      --data_dir=data/other --split=eval --output_dir=/tmp/eval_report

The model, its hyperparameters and preprocessing come from model_dir/config.json.
"""

import dataclasses
import os

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import config as config_lib
from estimator_app import paths
from input_fns import errors
from scripts import run_flags

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# run() and main() import the evaluation library (and TensorFlow).

_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default: the run's).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where evaluation.json, confusion_matrix.png and the evaluation's "
    "TensorBoard summaries (eval/) go (default: <model_dir>/evaluation/<checkpoint>-<split>).")


def run(model_dir: str, checkpoint: str, data_dir: str, split: str, batch_size, output_dir):
  """Evaluates and writes the report; returns (report, written paths)."""
  from estimator_app.analysis import evaluation  # pylint: disable=g-import-not-at-top
  from estimator_app.checkpoints import info as checkpoint_info  # pylint: disable=g-import-not-at-top
  from input_fns import manifest as manifest_lib  # pylint: disable=g-import-not-at-top
  cfg = config_lib.load_saved(model_dir)
  if cfg is None:
    raise errors.UserInputError(f"--model_dir {model_dir} has no {config_lib.CONFIG_FILENAME}: "
                                "not a run made by //scripts:train")
  if batch_size:
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, eval_batch_size=batch_size))
  prefix = checkpoint_info.resolve(model_dir, checkpoint, cfg.run.best_metric,
                               cfg.run.best_metric_higher_is_better)
  m = manifest_lib.read(data_dir or cfg.data.data_dir)
  output_dir = output_dir or os.path.join(
      model_dir, "evaluation", f"{os.path.basename(prefix)}-{split}")
  # Its TensorBoard summaries beside the report: not one more run among the training's.
  report = evaluation.evaluate(cfg, m, split, prefix, summary_dir=output_dir)
  return report, evaluation.write_report(report, output_dir)


def main(argv):
  del argv
  from estimator_app.analysis import evaluation  # pylint: disable=g-import-not-at-top
  output_dir = paths.resolve_path(_OUTPUT_DIR.value) if _OUTPUT_DIR.value else None
  report, written = run(run_flags.model_dir(), run_flags.checkpoint(), run_flags.data_dir(),
                        run_flags.SPLIT.value, _BATCH_SIZE.value, output_dir)
  print(evaluation.format_report(report))
  for path in written.values():
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
