r"""Trains a model with tf.estimator.train_and_evaluate: the project's main job.

  ./bazelw run //scripts:train                      # digits, default model, no flags needed
  ./bazelw run //scripts:train -- --model=dnn --train_steps=2000 --model_dir=runs/exp1
  ./bazelw run //scripts:train -- --config=experiments/lenet5.json --hparams=dropout=0.3
  ./bazelw run //scripts:train -- --helpfull        # every flag, grouped by config section

Precedence: defaults < --config file < flags you set < --hparams. With the default --data_dir,
the embedded digits dataset is written there on first use. Rerunning the same command resumes
from the latest checkpoint.
"""

import sys

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import config as config_lib
from estimator_app import paths
from scripts import experiment_flags

# Only modules that do not import TensorFlow above, so --help and flag errors answer in well
# under a second; the run library (runner, estimator, hooks) is imported by main() and the
# report functions. (--helpfull imports the models, for their hparams.)

_DIAGNOSE_INPUT = flags.DEFINE_boolean(
    "diagnose_input", False, "Before training, measure the input pipeline alone for a few "
    "seconds against what the model consumes, and log whether the run is input-bound and which "
    "knob to turn (TensorBoard: <model_dir>/diagnose_input).")
_FRESH = flags.DEFINE_boolean(
    "fresh", False, "If --model_dir already holds a run, move it aside (to <model_dir>.old-<time>) "
    "and start over instead of resuming.")


def time_breakdown(seconds) -> str:
  """`in 1:05: train 0:35 (54%), evals 0:08, exports 0:12, set-up 0:10`, or "" without figures."""
  from estimator_app.training import hooks  # pylint: disable=g-import-not-at-top
  total = seconds.get("total")
  if not total:
    return ""
  parts = []
  for key, label in ((hooks.TRAIN, "train"), (hooks.EVALS, "evals"), (hooks.EXPORTS, "exports"),
                     (hooks.SETUP, "set-up")):
    if key == hooks.TRAIN or seconds.get(key, 0) >= 0.5:
      share = f" ({100 * seconds.get(key, 0) / total:.0f}%)" if key == hooks.TRAIN else ""
      parts.append(f"{label} {hooks.format_duration(seconds.get(key, 0))}{share}")
  return f" in {hooks.format_duration(total)}: " + ", ".join(parts)


def summary(cfg: config_lib.ExperimentConfig, result) -> str:
  """The short report printed at the end of the main job.

  Args:
    cfg: the run's config.
    result: the estimator_app.runner.RunResult of the run.
  """
  from estimator_app import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from estimator_app.training import hooks as hooks_lib  # pylint: disable=g-import-not-at-top
  lines = [f"Trained {cfg.model} on {cfg.data.data_dir} to step {result.global_step}"
           f"{time_breakdown(result.seconds)}."]
  if result.primary is not None:
    m = result.primary
    loss = m.get("average_loss", m.get("loss", float("nan")))
    lines.append(f"eval {', '.join(hooks_lib.headline_metrics(m)) or 'done'} "
                 f"(eval loss {loss:.4f})")
  else:
    lines.append("(a worker or the evaluator of a cluster: the chief reports the final evaluation)")
  for name, m in result.metrics.items():
    if name != estimator_lib.PRIMARY_EVAL:
      lines.append(f"  eval set {name}: {', '.join(hooks_lib.headline_metrics(m)) or 'done'} "
                   f"(eval loss {m.get('average_loss', m.get('loss', float('nan'))):.4f})")
  lines.append(f"checkpoints, config.json and TensorBoard logs: {result.model_dir}")
  for name, path in result.exports.items():
    lines.append(f"export ({name}): {path}")
  lines.append(f"open TensorBoard: .venv/bin/tensorboard --logdir {result.model_dir}")
  return "\n".join(lines)


def main(argv):
  del argv  # absl passes what is left after the flags; the run record keeps the whole line
  from estimator_app import runner  # pylint: disable=g-import-not-at-top
  cfg = experiment_flags.config_from_flags()
  default_data = paths.resolve_path(config_lib.DataConfig().data_dir)
  if _DIAGNOSE_INPUT.value:
    runner.diagnose_input(cfg, create_default_data=cfg.data.data_dir == default_data)
  result = runner.train(cfg, fresh=_FRESH.value,
                        create_default_data=cfg.data.data_dir == default_data, argv=sys.argv)
  print("\n" + summary(cfg, result))


KEY_FLAGS = ("model", "data_dir", "model_dir", "train_steps", "batch_size", "learning_rate",
             "hparams", "config", "eval_sets", "strategy", "num_gpus", "precision", "fresh")

if __name__ == "__main__":
  cli.run(main, KEY_FLAGS, experiment_flags.models_help)
