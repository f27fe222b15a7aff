"""The classification head: what every model's logits become, in every Estimator mode.

A head owns the per-task math (as tensorflow/ranking's `head.py` does), so the model_fn
builder (model_fns/model_fn.py) only builds the model, asks the head, and adds the train op.
`ClassificationHead(label_names, ...)` takes a model's float32 logits [B, C]:

  predictions     class_ids (int64 [B]), probabilities (float32 [B, C]), logits (float32
                  [B, C]): the keys of PREDICT_KEYS, the same for every mode.
  loss            cross-entropy (optionally label-smoothed) + L1/L2 on the weights + the
                  losses the model put in the REGULARIZATION_LOSSES collection, under the
                  name scope "losses" (never "loss": see model_fns/summaries.py).
  eval metrics    those of model_fns/metrics.py, top-k capped at num_classes - 1.
  export outputs  SERVING_DEFAULT and PREDICT_OUTPUT (PredictOutput of the predictions) and
                  CLASSIFICATION_OUTPUT (ClassificationOutput: scores = probabilities,
                  classes = the label names, string [B, C]).

Entry points: `predict_spec` (PREDICT) and `eval_spec` (EVAL) make a mode's EstimatorSpec from
the logits; TRAIN builds one `loss` per optimizer step (see model_fns/multi_step.py) and
`train_spec` wraps the last step's loss and the train op.
"""

from typing import Dict, Sequence, Tuple

import tensorflow as tf

from model_fns import metrics as metrics_lib
from model_fns import optimization

PREDICT_KEYS = ("class_ids", "probabilities", "logits")
SERVING_DEFAULT = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
PREDICT_OUTPUT = "predict"
CLASSIFICATION_OUTPUT = "classification"


class ClassificationHead:
  """Softmax classification over a dataset's label names: predictions, loss, metrics, exports.

  Attributes:
    label_names: the C class names, in class-id order.
    num_classes: C.
    top_k: the k of the top-k accuracy metric (already capped, see metrics.top_k).
  """

  def __init__(self, label_names: Sequence[str], *, label_smoothing: float = 0.0,
               l1: float = 0.0, l2: float = 0.0, top_k: int = 5):
    """Describes the head; builds nothing.

    Args:
      label_names: the C class names (spec.label_names).
      label_smoothing: mixes the one-hot targets with the uniform distribution, in [0, 1)
        (TrainConfig checks the range).
      l1: L1 penalty l1 * sum |w| on the weights passed to `loss`.
      l2: L2 penalty l2 * sum w**2 on the weights passed to `loss`.
      top_k: the requested k of the top-k accuracy metric.
    """
    self.label_names = tuple(label_names)
    self.num_classes = len(self.label_names)
    self.top_k = metrics_lib.top_k(top_k, self.num_classes)
    self._label_smoothing = label_smoothing
    self._l1 = l1
    self._l2 = l2

  def predictions(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The PREDICT_KEYS tensors of float32 logits [B, C]."""
    return {"class_ids": tf.argmax(logits, axis=-1), "probabilities": tf.nn.softmax(logits),
            "logits": logits}

  def checked_labels(self, labels) -> tf.Tensor:
    """Labels [B] or [B, 1] as int64 [B], checked (when run) to lie in [0, num_classes).

    Raises:
      ValueError: `labels` is None (the input_fn returned none in TRAIN or EVAL).
    """
    if labels is None:
      raise ValueError("TRAIN and EVAL need labels; the input_fn returned none")
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    # A label outside [0, C) would silently become an all-zero one-hot target.
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
        tf.debugging.assert_less(labels, tf.constant(self.num_classes, tf.int64),
                                 message=f"labels must be < num_classes={self.num_classes}")]):
      return tf.identity(labels)

  def loss(self, labels: tf.Tensor, logits: tf.Tensor, weights: Sequence[tf.Variable],
           model_losses: Sequence[tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The training objective of one batch.

    Args:
      labels: checked int64 class ids [B] (`checked_labels`).
      logits: float32 [B, C].
      weights: the model's trainable variables; L1/L2 apply to its weights among them
        (optimization.is_weight: rank >= 2, never biases or batch-norm parameters).
      model_losses: the scalars this build of the model added to REGULARIZATION_LOSSES (with
        steps_per_run, this step's own, not the other steps').

    Returns:
      (total loss "losses/total", cross-entropy, regularization), float32 scalars.
    """
    with tf.name_scope("losses"):  # not "loss": see summaries.py
      targets = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
      if self._label_smoothing:
        targets = (targets * (1.0 - self._label_smoothing)
                   + self._label_smoothing / self.num_classes)
      cross_entropy = tf.reduce_mean(
          tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
      regularization = optimization.regularization_loss(weights, self._l1, self._l2)
      if model_losses:
        regularization += tf.add_n([tf.cast(x, tf.float32) for x in model_losses])
      loss = tf.identity(cross_entropy + regularization, name="total")
    return loss, cross_entropy, regularization

  def export_outputs(self, predictions: Dict[str, tf.Tensor]):
    """The SavedModel outputs: SERVING_DEFAULT, PREDICT_OUTPUT and CLASSIFICATION_OUTPUT."""
    batch = tf.shape(predictions["probabilities"])[0]
    classes = tf.tile(tf.constant([list(self.label_names)], tf.string), [batch, 1])
    return {
        SERVING_DEFAULT: tf.estimator.export.PredictOutput(predictions),
        PREDICT_OUTPUT: tf.estimator.export.PredictOutput(predictions),
        CLASSIFICATION_OUTPUT: tf.estimator.export.ClassificationOutput(
            scores=predictions["probabilities"], classes=classes),
    }

  def predict_spec(self, logits: tf.Tensor) -> tf.estimator.EstimatorSpec:
    """PREDICT: the predictions and the export outputs of float32 logits [B, C]."""
    predictions = self.predictions(logits)
    return tf.estimator.EstimatorSpec(tf.estimator.ModeKeys.PREDICT, predictions=predictions,
                                      export_outputs=self.export_outputs(predictions))

  def eval_spec(self, logits: tf.Tensor, labels, weights: Sequence[tf.Variable],
                model_losses: Sequence[tf.Tensor]) -> tf.estimator.EstimatorSpec:
    """EVAL: the loss (as `loss`), the predictions and the metrics of model_fns/metrics.py.

    Args:
      logits: float32 [B, C].
      labels: int class ids [B] or [B, 1], unchecked.
      weights: as for `loss`.
      model_losses: as for `loss`.

    Returns:
      The EVAL EstimatorSpec; average_loss is the unsmoothed, unregularized cross-entropy.

    Raises:
      ValueError: `labels` is None.
    """
    predictions = self.predictions(logits)
    labels = self.checked_labels(labels)
    loss, _, _ = self.loss(labels, logits, weights, model_losses)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.estimator.EstimatorSpec(
        tf.estimator.ModeKeys.EVAL, loss=loss, predictions=predictions,
        eval_metric_ops=metrics_lib.eval_metric_ops(
            labels, logits, per_example, self.label_names, self.top_k))

  def train_spec(self, loss: tf.Tensor, train_op: tf.Operation,
                 predictions: Dict[str, tf.Tensor]) -> tf.estimator.EstimatorSpec:
    """TRAIN: the (last step's) loss and predictions, and the train op that makes them."""
    return tf.estimator.EstimatorSpec(tf.estimator.ModeKeys.TRAIN, loss=loss, train_op=train_op,
                                      predictions=predictions)
