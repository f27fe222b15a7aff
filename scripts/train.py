r"""Trains a model with tf.estimator.train_and_evaluate: the project's main job.

  ./bazelw run //scripts:train                      # digits, default model, no flags needed
  ./bazelw run //scripts:train -- --model=dnn --train_steps=2000 --model_dir=runs/exp1

With the default --data_dir, the embedded digits dataset is written there on first use.
"""

from absl import flags

from estimator_app import cli
from estimator_app import config as config_lib
from estimator_app import runner
from model_fns import registry

_DEFAULTS = config_lib.ExperimentConfig()

_MODEL = flags.DEFINE_string("model", _DEFAULTS.model, f"Model name: {', '.join(registry.names())}.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", _DEFAULTS.data_dir,
    "Dataset directory holding manifest.json (relative to where you ran the command). "
    "The default location gets the embedded digits dataset on first use.")
_MODEL_DIR = flags.DEFINE_string("model_dir", _DEFAULTS.model_dir, "Checkpoints, summaries, exports.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", _DEFAULTS.train_steps, "Global step to train to.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Base learning rate.")
_OPTIMIZER = flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "Optimizer name.")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")


def config_from_flags() -> config_lib.ExperimentConfig:
  """Reads the flags once into the frozen config passed down."""
  return config_lib.with_resolved_paths(config_lib.ExperimentConfig(
      model=_MODEL.value, data_dir=_DATA_DIR.value, model_dir=_MODEL_DIR.value,
      train_steps=_TRAIN_STEPS.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value, optimizer=_OPTIMIZER.value, seed=_SEED.value))


def main(argv):
  del argv
  cfg = config_from_flags()
  m = runner.load_dataset(
      cfg.data_dir, create_default=cfg.data_dir == config_lib.resolve_path(_DEFAULTS.data_dir))
  metrics = runner.train_and_evaluate(cfg, m)
  print(f"\nTrained {cfg.model} on {cfg.data_dir} to step {int(metrics['global_step'])}.")
  print(f"eval accuracy: {metrics['accuracy']:.4f}  (eval loss {metrics['loss']:.4f}, "
        f"{m.count('eval')} examples)")
  print(f"checkpoints and TensorBoard logs: {cfg.model_dir}")
  print(f"  tensorboard --logdir {cfg.model_dir}")


if __name__ == "__main__":
  cli.run(main)
