"""The one shared run loop: dataset in, model_fn built, train_and_evaluate, final evaluation."""

import os
from typing import Dict

import tensorflow as tf
from absl import logging

from estimator_app import config as config_lib
from input_fns import dataset
from input_fns import digits
from input_fns import manifest as manifest_lib
from input_fns import splits
from input_fns import writer
from model_fns import model_fn as model_fn_lib
from model_fns import registry


def load_dataset(data_dir: str, create_default: bool, seed: int = 0) -> manifest_lib.Manifest:
  """Returns the dataset at `data_dir`.

  Args:
    data_dir: a dataset directory.
    create_default: write the embedded digits dataset there if it holds no manifest yet.
    seed: split seed for the embedded dataset.

  Raises:
    manifest_lib.ManifestError: no dataset there (and create_default is False).
  """
  if not create_default or tf.io.gfile.exists(os.path.join(data_dir, manifest_lib.FILENAME)):
    return manifest_lib.read(data_dir)
  logging.info("writing the embedded digits dataset to %s", data_dir)
  return writer.write_dataset(
      data_dir, digits.SPEC, digits.examples(eval_fraction=0.2, seed=seed), num_shards=2,
      source={"format": digits.NAME, "eval_fraction": 0.2, "seed": seed})


def train_and_evaluate(cfg: config_lib.ExperimentConfig,
                       m: manifest_lib.Manifest) -> Dict[str, float]:
  """Trains `cfg.model` on `m` to `cfg.train_steps`, evaluating on every checkpoint.

  Returns:
    The final full evaluation's metrics (accuracy, loss, global_step).
  """
  model_def = registry.get(cfg.model)
  model_fn = model_fn_lib.build_model_fn(
      model_def, model_def.hparams_cls(), m.spec,
      model_fn_lib.TrainConfig(optimizer=cfg.optimizer, learning_rate=cfg.learning_rate))
  run_config = tf.estimator.RunConfig(
      model_dir=cfg.model_dir, tf_random_seed=cfg.seed,
      save_checkpoints_steps=cfg.save_checkpoints_steps, log_step_count_steps=100)
  estimator = tf.estimator.Estimator(model_fn, config=run_config)
  train_in = dataset.make_input_fn(
      m, splits.TRAIN, dataset.InputConfig(batch_size=cfg.batch_size, seed=cfg.seed), training=True)
  eval_in = dataset.make_input_fn(
      m, splits.EVAL, dataset.InputConfig(batch_size=cfg.eval_batch_size), training=False)
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(train_in, max_steps=cfg.train_steps),
      tf.estimator.EvalSpec(eval_in, steps=None, throttle_secs=0, start_delay_secs=0))
  metrics = estimator.evaluate(eval_in, name="final")
  return {k: float(v) for k, v in metrics.items()}
