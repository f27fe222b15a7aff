"""The one model_fn builder shared by every model: loss, optimizer, metrics, EstimatorSpecs."""

import dataclasses

import tensorflow as tf

from input_fns import feature_spec as fs

PREDICT_KEYS = ("class_ids", "probabilities", "logits")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimization settings shared by all models.

  Attributes:
    optimizer: "adam" or "sgd".
    learning_rate: base learning rate.
  """
  optimizer: str = "adam"
  learning_rate: float = 1e-3


def _optimizer(cfg: TrainConfig):
  if cfg.optimizer == "adam":
    return tf.compat.v1.train.AdamOptimizer(cfg.learning_rate)
  if cfg.optimizer == "sgd":
    return tf.compat.v1.train.GradientDescentOptimizer(cfg.learning_rate)
  raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: adam, sgd")


def build_model_fn(model_def, hparams, spec: fs.FeatureSpec, train_cfg: TrainConfig):
  """Returns an Estimator model_fn for `model_def` with `hparams` on data described by `spec`."""

  def model_fn(features, labels, mode):
    training = mode == tf.estimator.ModeKeys.TRAIN
    logits = model_def.build_logits(features, spec, hparams, training)
    probabilities = tf.nn.softmax(logits)
    class_ids = tf.argmax(logits, axis=-1)
    predictions = {"class_ids": class_ids, "probabilities": probabilities, "logits": logits}
    if mode == tf.estimator.ModeKeys.PREDICT:
      return tf.estimator.EstimatorSpec(
          mode, predictions=predictions,
          export_outputs={"serving_default": tf.estimator.export.PredictOutput(predictions)})
    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
    if training:
      train_op = _optimizer(train_cfg).minimize(
          loss, global_step=tf.compat.v1.train.get_or_create_global_step())
      return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
    metrics = {"accuracy": tf.compat.v1.metrics.accuracy(labels, class_ids)}
    return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)

  return model_fn
