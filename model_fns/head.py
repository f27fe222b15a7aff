"""The heads: what a model's logits become, in every Estimator mode, for each kind of label.

A head owns the per-task math (as tensorflow/ranking's `head.py` does), so the model_fn
builder (model_fns/model_fn.py) only builds the model, asks the head, and adds the train op.
Three heads honour one contract (the methods and attributes of `Head`), one per label kind of
LABEL_KINDS, and `make_head(label_kind, label_names, **options)` picks one:

  "multiclass"  ClassificationHead(label_names, label_smoothing, l1, l2, top_k): a softmax over
                C classes; logits float32 [B, C]; int class-id labels in [0, C).
  "binary"      BinaryHead(label_names, label_smoothing, l1, l2, threshold, pos_weight): one
                sigmoid; logits float32 [B, 1]; labels 0 (label_names[0], the negative class)
                or 1 (label_names[1], the positive class).
  "regression"  RegressionHead(l1, l2, label_dimension): the logits float32 [B, D] are the
                predictions; float labels [B] (D = 1) or [B, D], checked to be finite.

What every head makes:

  predictions     the same in every mode.
                  multiclass, PREDICT_KEYS: class_ids (int64 [B]), probabilities (float32
                  [B, C]), logits (float32 [B, C]).
                  binary, BINARY_PREDICT_KEYS: the same three (probabilities [B, 2] = [1 - p, p],
                  class_ids = p >= threshold, logits [B, 1]) and logistic (p, float32 [B, 1]), so
                  whatever reads the multiclass keys reads binary predictions unchanged.
                  regression, REGRESSION_PREDICT_KEYS: predictions (float32 [B, D]), the key
                  tf.estimator's regression head uses.
  loss            the mean (or, with example weights, the weighted mean) of the per-example data
                  loss: softmax cross-entropy, sigmoid cross-entropy or squared error, the
                  classifiers' optionally label-smoothed; + L1/L2 on the weights + the losses the
                  model put in the REGULARIZATION_LOSSES collection, under the name scope
                  "losses" (never "loss": see model_fns/summaries.py).
  eval metrics    those of model_fns/metrics.py for the head's kind. `headline_metric` names the
                  one a user watches and best-checkpoint selection ranks by (accuracy, auc,
                  average_loss); `higher_is_better` says which way is better.
  export outputs  SERVING_DEFAULT and PREDICT_OUTPUT: PredictOutput of the predictions.
                  Classifiers: CLASSIFICATION_OUTPUT, ClassificationOutput (scores =
                  probabilities, classes = the label names, string [B, C]), which TF Serving's
                  Classify API reads. Regression with D = 1: REGRESSION_OUTPUT,
                  RegressionOutput of predictions[:, 0] (float32 [B]), which its Regress API
                  reads.

Example weights: `loss` and `eval_spec` take optional per-example weights (float32 [B] or
[B, 1], checked when run to be finite and >= 0, one per example). The data loss becomes
sum(w * loss) / sum(w) (0 when every weight is 0) and every metric the weighted one. Without
them (None) each head builds the graph it built before weights existed.

Entry points: `make_head`; of a head, `predict_spec` (PREDICT) and `eval_spec` (EVAL) make a
mode's EstimatorSpec from the logits; TRAIN builds one `checked_labels` and `loss` per optimizer
step (see model_fns/multi_step.py), `train_scalars` for the training summaries, and
`train_spec` wraps the last step's loss and the train op.
"""

import inspect
from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from model_fns import metrics as metrics_lib
from model_fns import optimization

PREDICT_KEYS = ("class_ids", "probabilities", "logits")
BINARY_PREDICT_KEYS = PREDICT_KEYS + ("logistic",)
REGRESSION_PREDICT_KEYS = ("predictions",)
SERVING_DEFAULT = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
PREDICT_OUTPUT = "predict"
CLASSIFICATION_OUTPUT = "classification"
REGRESSION_OUTPUT = "regression"

MULTICLASS = "multiclass"
BINARY = "binary"
REGRESSION = "regression"
LABEL_KINDS = (MULTICLASS, BINARY, REGRESSION)


def _check_logits(logits: tf.Tensor, dimension: int, label_kind: str) -> None:
  """Raises ValueError unless the static shape of `logits` can be [batch, dimension]."""
  shape = logits.shape
  if shape.rank is None:
    return
  if shape.rank != 2 or tf.compat.dimension_value(shape[1]) not in (None, dimension):
    raise ValueError(f"a {label_kind} head takes logits of shape [batch, {dimension}]; "
                     f"got {shape}")


def _require_labels(labels) -> tf.Tensor:
  if labels is None:
    raise ValueError("TRAIN and EVAL need labels; the input_fn returned none")
  return tf.convert_to_tensor(labels)


def _checked_class_ids(labels: tf.Tensor, num_classes: int, low_message: str,
                       high_message: str) -> tf.Tensor:
  """Labels [B] or [B, 1] as int64 [B], checked (when run) to lie in [0, num_classes)."""
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  # A label outside [0, C) would silently become an all-zero one-hot target.
  with tf.control_dependencies([
      tf.debugging.assert_non_negative(labels, message=low_message),
      tf.debugging.assert_less(labels, tf.constant(num_classes, tf.int64),
                               message=high_message)]):
    return tf.identity(labels)


def _checked_example_weights(example_weights, logits: tf.Tensor) -> Optional[tf.Tensor]:
  """Per-example weights [B] or [B, 1] as float32 [B], checked (when run); None stays None.

  Raises:
    ValueError: the weights' static shape is neither [B] nor [B, 1].
  """
  if example_weights is None:
    return None
  with tf.name_scope("example_weights"):
    w = tf.convert_to_tensor(example_weights)
    shape = w.shape
    if shape.rank is not None and not (
        shape.rank == 1
        or (shape.rank == 2 and tf.compat.dimension_value(shape[1]) in (None, 1))):
      raise ValueError(f"example weights must have shape [batch] or [batch, 1]; got {shape}")
    w = tf.reshape(tf.cast(w, tf.float32), [-1])
    w = tf.debugging.assert_all_finite(w, "example weights must be finite")
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(w, message="example weights must be >= 0"),
        # A single weight would silently broadcast over the whole batch.
        tf.debugging.assert_equal(tf.size(w), tf.shape(logits)[0],
                                  message="example weights must have one weight per example")]):
      return tf.identity(w)


def _mean(per_example: tf.Tensor, example_weights: Optional[tf.Tensor]) -> tf.Tensor:
  """The mean of float32 [B], weighted by checked weights [B] when there are some."""
  if example_weights is None:
    return tf.reduce_mean(per_example)
  return tf.math.divide_no_nan(tf.reduce_sum(example_weights * per_example),
                               tf.reduce_sum(example_weights))


class Head:
  """The contract of every head: predictions, loss, metrics and export outputs of one label kind.

  Subclasses set the class attributes and implement `predictions`, `checked_labels`,
  `export_outputs`, `train_scalars` and the private per-example losses and metrics; `loss`,
  `predict_spec`, `eval_spec` and `train_spec` are shared.

  Attributes:
    label_kind: the head's member of LABEL_KINDS.
    logits_dimension: the width D of the float32 logits [B, D] the head takes.
    predict_keys: the keys of `predictions`, in order.
    headline_metric: the eval metric a user watches and best-checkpoint selection ranks by.
    higher_is_better: whether a larger headline_metric is better.
  """

  label_kind: str
  predict_keys: Tuple[str, ...]
  headline_metric: str
  higher_is_better: bool

  def __init__(self, *, l1: float, l2: float):
    self._l1 = l1
    self._l2 = l2

  @property
  def logits_dimension(self) -> int:
    raise NotImplementedError

  def predictions(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The `predict_keys` tensors of float32 logits [B, logits_dimension]."""
    raise NotImplementedError

  def checked_labels(self, labels) -> tf.Tensor:
    """The input_fn's labels in the form `loss` takes, checked when run."""
    raise NotImplementedError

  def export_outputs(self, predictions: Dict[str, tf.Tensor]):
    """The SavedModel outputs of `predictions`, by signature name."""
    raise NotImplementedError

  def train_scalars(self, labels: tf.Tensor,
                    predictions: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The head's training summaries of one batch (checked labels), by eval metric name."""
    raise NotImplementedError

  def _training_losses(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The per-example data loss the head trains on, float32 [B]."""
    raise NotImplementedError

  def _eval_losses(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The per-example loss of the average_loss metric, float32 [B]."""
    raise NotImplementedError

  def _metric_ops(self, labels: tf.Tensor, logits: tf.Tensor,
                  predictions: Dict[str, tf.Tensor], per_example_loss: tf.Tensor,
                  example_weights: Optional[tf.Tensor]) -> metrics_lib.MetricOps:
    raise NotImplementedError

  def loss(self, labels: tf.Tensor, logits: tf.Tensor, weights: Sequence[tf.Variable],
           model_losses: Sequence[tf.Tensor], *,
           example_weights=None) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The training objective of one batch.

    Args:
      labels: the checked labels (`checked_labels`).
      logits: float32 [B, logits_dimension].
      weights: the model's trainable variables; L1/L2 apply to its weights among them
        (optimization.is_weight: rank >= 2, never biases or batch-norm parameters).
      model_losses: the scalars this build of the model added to REGULARIZATION_LOSSES (with
        steps_per_run, this step's own, not the other steps').
      example_weights: float32 [B] or [B, 1], one weight >= 0 per example, or None (each
        weighs 1).

    Returns:
      (total loss "losses/total", data loss, regularization), float32 scalars. The data loss is
      the head's (weighted) mean per-example loss: the cross-entropy of a classifier, the mean
      squared error of a regression.

    Raises:
      ValueError: logits or example weights of the wrong static shape.
    """
    return self._loss(labels, logits, weights, model_losses,
                      _checked_example_weights(example_weights, logits))

  def _loss(self, labels, logits, weights, model_losses, example_weights):
    with tf.name_scope("losses"):  # not "loss": see summaries.py
      data_loss = _mean(self._training_losses(labels, logits), example_weights)
      regularization = optimization.regularization_loss(weights, self._l1, self._l2)
      if model_losses:
        regularization += tf.add_n([tf.cast(x, tf.float32) for x in model_losses])
      loss = tf.identity(data_loss + regularization, name="total")
    return loss, data_loss, regularization

  def predict_spec(self, logits: tf.Tensor) -> tf.estimator.EstimatorSpec:
    """PREDICT: the predictions and the export outputs of float32 logits."""
    predictions = self.predictions(logits)
    return tf.estimator.EstimatorSpec(tf.estimator.ModeKeys.PREDICT, predictions=predictions,
                                      export_outputs=self.export_outputs(predictions))

  def eval_spec(self, logits: tf.Tensor, labels, weights: Sequence[tf.Variable],
                model_losses: Sequence[tf.Tensor], *,
                example_weights=None) -> tf.estimator.EstimatorSpec:
    """EVAL: the loss (as `loss`), the predictions and the metrics of model_fns/metrics.py.

    Args:
      logits: float32 [B, logits_dimension].
      labels: the input_fn's labels, unchecked.
      weights: as for `loss`.
      model_losses: as for `loss`.
      example_weights: as for `loss`; they weight every metric too.

    Returns:
      The EVAL EstimatorSpec; average_loss is the unsmoothed, unregularized data loss.

    Raises:
      ValueError: `labels` is None; labels, logits or example weights of the wrong static
        shape.
    """
    predictions = self.predictions(logits)
    labels = self.checked_labels(labels)
    example_weights = _checked_example_weights(example_weights, logits)
    loss, _, _ = self._loss(labels, logits, weights, model_losses, example_weights)
    per_example = self._eval_losses(labels, logits)
    return tf.estimator.EstimatorSpec(
        tf.estimator.ModeKeys.EVAL, loss=loss, predictions=predictions,
        eval_metric_ops=self._metric_ops(labels, logits, predictions, per_example,
                                         example_weights))

  def train_spec(self, loss: tf.Tensor, train_op: tf.Operation,
                 predictions: Dict[str, tf.Tensor]) -> tf.estimator.EstimatorSpec:
    """TRAIN: the (last step's) loss and predictions, and the train op that makes them."""
    return tf.estimator.EstimatorSpec(tf.estimator.ModeKeys.TRAIN, loss=loss, train_op=train_op,
                                      predictions=predictions)


def _classification_outputs(predictions: Dict[str, tf.Tensor], label_names: Sequence[str]):
  """SERVING_DEFAULT, PREDICT_OUTPUT and CLASSIFICATION_OUTPUT of a classifier's predictions."""
  batch = tf.shape(predictions["probabilities"])[0]
  classes = tf.tile(tf.constant([list(label_names)], tf.string), [batch, 1])
  return {
      SERVING_DEFAULT: tf.estimator.export.PredictOutput(predictions),
      PREDICT_OUTPUT: tf.estimator.export.PredictOutput(predictions),
      CLASSIFICATION_OUTPUT: tf.estimator.export.ClassificationOutput(
          scores=predictions["probabilities"], classes=classes),
  }


class ClassificationHead(Head):
  """Softmax classification over a dataset's label names: predictions, loss, metrics, exports.

  Attributes:
    label_names: the C class names, in class-id order.
    num_classes: C.
    top_k: the k of the top-k accuracy metric (already capped, see metrics.top_k).
  """

  label_kind = MULTICLASS
  predict_keys = PREDICT_KEYS
  headline_metric = metrics_lib.ACCURACY
  higher_is_better = True

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
    super().__init__(l1=l1, l2=l2)
    self.label_names = tuple(label_names)
    self.num_classes = len(self.label_names)
    self.top_k = metrics_lib.top_k(top_k, self.num_classes)
    self._label_smoothing = label_smoothing

  @property
  def logits_dimension(self) -> int:
    return self.num_classes

  def predictions(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The PREDICT_KEYS tensors of float32 logits [B, C].

    Raises:
      ValueError: the logits are not [B, C].
    """
    _check_logits(logits, self.num_classes, self.label_kind)
    return {"class_ids": tf.argmax(logits, axis=-1), "probabilities": tf.nn.softmax(logits),
            "logits": logits}

  def checked_labels(self, labels) -> tf.Tensor:
    """Labels [B] or [B, 1] as int64 [B], checked (when run) to lie in [0, num_classes).

    Raises:
      ValueError: `labels` is None (the input_fn returned none in TRAIN or EVAL).
    """
    return _checked_class_ids(_require_labels(labels), self.num_classes, "labels must be >= 0",
                              f"labels must be < num_classes={self.num_classes}")

  def _training_losses(self, labels, logits):
    targets = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
    if self._label_smoothing:
      targets = (targets * (1.0 - self._label_smoothing)
                 + self._label_smoothing / self.num_classes)
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)

  def _eval_losses(self, labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

  def _metric_ops(self, labels, logits, predictions, per_example_loss, example_weights):
    return metrics_lib.eval_metric_ops(labels, logits, per_example_loss, self.label_names,
                                       self.top_k, example_weights=example_weights)

  def export_outputs(self, predictions: Dict[str, tf.Tensor]):
    """The SavedModel outputs: SERVING_DEFAULT, PREDICT_OUTPUT and CLASSIFICATION_OUTPUT."""
    return _classification_outputs(predictions, self.label_names)

  def train_scalars(self, labels: tf.Tensor,
                    predictions: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """{"accuracy": the batch's accuracy} of int64 labels [B] and `predictions`."""
    return {metrics_lib.ACCURACY: metrics_lib.batch_accuracy(labels, predictions["class_ids"])}


class BinaryHead(Head):
  """Binary classification by one sigmoid: predictions, loss, metrics, exports.

  Attributes:
    label_names: the 2 class names: the negative class (id 0), the positive class (id 1).
    num_classes: 2.
    threshold: the probability of the positive class from which class_ids is 1.
    pos_weight: the factor on the positive examples' term of the training cross-entropy.
  """

  label_kind = BINARY
  predict_keys = BINARY_PREDICT_KEYS
  headline_metric = metrics_lib.AUC
  higher_is_better = True
  logits_dimension = 1

  def __init__(self, label_names: Sequence[str], *, label_smoothing: float = 0.0,
               l1: float = 0.0, l2: float = 0.0, threshold: float = 0.5,
               pos_weight: float = 1.0):
    """Describes the head; builds nothing.

    Args:
      label_names: (negative class name, positive class name) (spec.label_names).
      label_smoothing: s in [0, 1): the training targets become t * (1 - s) + s / 2, as
        tf.compat.v1.losses.sigmoid_cross_entropy smooths them.
      l1: L1 penalty l1 * sum |w| on the weights passed to `loss`.
      l2: L2 penalty l2 * sum w**2 on the weights passed to `loss`.
      threshold: class_ids is 1 where the positive probability is >= threshold, in (0, 1).
      pos_weight: > 0; the positive examples' cross-entropy term is multiplied by it in
        training (tf.nn.weighted_cross_entropy_with_logits), to trade recall for precision on
        imbalanced data. average_loss stays the plain cross-entropy.

    Raises:
      ValueError: not exactly 2 label names; label_smoothing, threshold or pos_weight out of
        range.
    """
    super().__init__(l1=l1, l2=l2)
    self.label_names = tuple(label_names)
    if len(self.label_names) != 2:
      raise ValueError(f"a binary head takes exactly 2 label names (negative, positive); got "
                       f"{len(self.label_names)}: {list(self.label_names)}")
    if not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    if not 0.0 < threshold < 1.0:
      raise ValueError(f"threshold must be in (0, 1); got {threshold}")
    if not pos_weight > 0.0:
      raise ValueError(f"pos_weight must be > 0; got {pos_weight}")
    self.num_classes = 2
    self.threshold = threshold
    self.pos_weight = pos_weight
    self._label_smoothing = label_smoothing

  def predictions(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The BINARY_PREDICT_KEYS tensors of float32 logits [B, 1].

    Raises:
      ValueError: the logits are not [B, 1].
    """
    _check_logits(logits, 1, self.label_kind)
    logistic = tf.sigmoid(logits)
    return {
        "class_ids": tf.cast(tf.reshape(logistic, [-1]) >= self.threshold, tf.int64),
        "probabilities": tf.concat([1.0 - logistic, logistic], axis=-1),
        "logits": logits,
        "logistic": logistic,
    }

  def checked_labels(self, labels) -> tf.Tensor:
    """Labels [B] or [B, 1] as int64 [B], checked (when run) to be 0 or 1.

    Float labels must be whole numbers too (0.0 or 1.0), not probabilities.

    Raises:
      ValueError: `labels` is None (the input_fn returned none in TRAIN or EVAL).
    """
    labels = _require_labels(labels)
    # No quotes: TensorFlow escapes them in an assertion's message.
    message = f"binary labels must be 0 or 1 (0: {self.label_names[0]}, 1: {self.label_names[1]})"
    if labels.dtype.is_floating:
      # The cast to int64 would silently turn 0.7 into 0.
      with tf.control_dependencies([
          tf.debugging.assert_equal(labels, tf.round(labels), message=message)]):
        labels = tf.identity(labels)
    return _checked_class_ids(labels, 2, message, message)

  def _training_losses(self, labels, logits):
    _check_logits(logits, 1, self.label_kind)
    targets = tf.cast(labels, tf.float32)
    if self._label_smoothing:
      targets = targets * (1.0 - self._label_smoothing) + 0.5 * self._label_smoothing
    logits = tf.reshape(logits, [-1])
    if self.pos_weight != 1.0:
      return tf.nn.weighted_cross_entropy_with_logits(labels=targets, logits=logits,
                                                      pos_weight=self.pos_weight)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)

  def _eval_losses(self, labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32),
                                                   logits=tf.reshape(logits, [-1]))

  def _metric_ops(self, labels, logits, predictions, per_example_loss, example_weights):
    return metrics_lib.binary_eval_metric_ops(labels, predictions["logistic"],
                                              predictions["class_ids"], per_example_loss,
                                              example_weights=example_weights)

  def export_outputs(self, predictions: Dict[str, tf.Tensor]):
    """The SavedModel outputs: SERVING_DEFAULT, PREDICT_OUTPUT and CLASSIFICATION_OUTPUT.

    CLASSIFICATION_OUTPUT's scores are the probabilities [B, 2], its classes the 2 label names.
    """
    return _classification_outputs(predictions, self.label_names)

  def train_scalars(self, labels: tf.Tensor,
                    predictions: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """{"accuracy": the batch's accuracy at the threshold} of int64 labels [B]."""
    return {metrics_lib.ACCURACY: metrics_lib.batch_accuracy(labels, predictions["class_ids"])}


class RegressionHead(Head):
  """Least-squares regression of D values per example: predictions, loss, metrics, exports.

  Attributes:
    label_dimension: D, the values per example (the width of the logits and the labels).
  """

  label_kind = REGRESSION
  predict_keys = REGRESSION_PREDICT_KEYS
  headline_metric = metrics_lib.AVERAGE_LOSS
  higher_is_better = False

  def __init__(self, *, l1: float = 0.0, l2: float = 0.0, label_dimension: int = 1):
    """Describes the head; builds nothing.

    Args:
      l1: L1 penalty l1 * sum |w| on the weights passed to `loss`.
      l2: L2 penalty l2 * sum w**2 on the weights passed to `loss`.
      label_dimension: D >= 1.

    Raises:
      ValueError: label_dimension is not an int >= 1.
    """
    super().__init__(l1=l1, l2=l2)
    if isinstance(label_dimension, bool) or not isinstance(label_dimension, int) or (
        label_dimension < 1):
      raise ValueError(f"label_dimension must be an int >= 1; got {label_dimension!r}")
    self.label_dimension = label_dimension

  @property
  def logits_dimension(self) -> int:
    return self.label_dimension

  def predictions(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The REGRESSION_PREDICT_KEYS tensors of float32 logits [B, D]: the logits themselves.

    Raises:
      ValueError: the logits are not [B, D].
    """
    _check_logits(logits, self.label_dimension, self.label_kind)
    return {"predictions": logits}

  def checked_labels(self, labels) -> tf.Tensor:
    """Labels [B] (D = 1) or [B, D] as float32 [B, D], checked (when run) to be finite.

    Raises:
      ValueError: `labels` is None (the input_fn returned none in TRAIN or EVAL), or their
        static shape is not [B, D] (or [B] with D = 1).
    """
    labels = tf.cast(_require_labels(labels), tf.float32)
    shape = labels.shape
    d = self.label_dimension
    if shape.rank is not None and not (
        (shape.rank == 1 and d == 1)
        or (shape.rank == 2 and tf.compat.dimension_value(shape[1]) in (None, d))):
      raise ValueError(f"regression labels must have shape [batch, {d}]"
                       f"{' or [batch]' if d == 1 else ''}; got {shape}")
    labels = tf.reshape(labels, [-1, d])
    # A NaN label would make the loss NaN and stop training far from its cause.
    return tf.debugging.assert_all_finite(labels, "regression labels must be finite")

  def _training_losses(self, labels, logits):
    _check_logits(logits, self.label_dimension, self.label_kind)
    return tf.reduce_mean(tf.math.squared_difference(logits, labels), axis=-1)

  def _eval_losses(self, labels, logits):
    return self._training_losses(labels, logits)

  def _metric_ops(self, labels, logits, predictions, per_example_loss, example_weights):
    return metrics_lib.regression_eval_metric_ops(labels, predictions["predictions"],
                                                  per_example_loss,
                                                  example_weights=example_weights)

  def export_outputs(self, predictions: Dict[str, tf.Tensor]):
    """The SavedModel outputs: SERVING_DEFAULT, PREDICT_OUTPUT and, with D = 1, REGRESSION_OUTPUT.

    RegressionOutput takes one float per example, so a head of D > 1 values has none.
    """
    outputs = {
        SERVING_DEFAULT: tf.estimator.export.PredictOutput(predictions),
        PREDICT_OUTPUT: tf.estimator.export.PredictOutput(predictions),
    }
    if self.label_dimension == 1:
      outputs[REGRESSION_OUTPUT] = tf.estimator.export.RegressionOutput(
          value=predictions["predictions"][:, 0])
    return outputs

  def train_scalars(self, labels: tf.Tensor,
                    predictions: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """{"average_loss": the batch's mean squared error} of float32 labels [B, D]."""
    return {metrics_lib.AVERAGE_LOSS: tf.reduce_mean(
        tf.math.squared_difference(predictions["predictions"], labels))}


_HEADS = {MULTICLASS: ClassificationHead, BINARY: BinaryHead, REGRESSION: RegressionHead}


def _options(head_cls) -> Dict[str, Any]:
  """The keyword-only options of a head's constructor, with their defaults."""
  return {p.name: p.default for p in inspect.signature(head_cls).parameters.values()
          if p.kind == inspect.Parameter.KEYWORD_ONLY}


def make_head(label_kind: str, label_names: Sequence[str], **options) -> Head:
  """The head of a dataset's label kind, so a caller needs no branch per kind.

  Options are the union of the heads' keyword options (label_smoothing, l1, l2, top_k,
  threshold, pos_weight, label_dimension). One another kind's head takes is ignored only at
  its default, so a setting that would do nothing (threshold=0.7 for "multiclass") fails
  instead.

  Args:
    label_kind: one of LABEL_KINDS.
    label_names: the class names of a classifier; for "regression" none, or one name per
      label dimension (naming the values; the head does not use them).
    **options: the head's keyword options.

  Returns:
    A ClassificationHead, BinaryHead or RegressionHead.

  Raises:
    ValueError: an unknown label kind; an option no head takes; another kind's option away
      from its default; regression label names that are neither none nor one per dimension;
      whatever the head's constructor rejects.
  """
  if label_kind not in _HEADS:
    raise ValueError(f"unknown label kind {label_kind!r}; the known kinds are "
                     f"{', '.join(LABEL_KINDS)}")
  head_cls = _HEADS[label_kind]
  own = _options(head_cls)
  defaults = {}
  for cls in _HEADS.values():
    for name, default in _options(cls).items():
      defaults.setdefault(name, default)
  applied = {}
  for name, value in options.items():
    if name in own:
      applied[name] = value
    elif name not in defaults:
      raise ValueError(f"unknown head option {name!r}; the heads take "
                       f"{', '.join(sorted(defaults))}")
    elif value != defaults[name]:
      raise ValueError(f"{name}={value!r} does not apply to a {label_kind} head (it takes "
                       f"{', '.join(own)}); leave it at its default {defaults[name]!r}")
  if label_kind != REGRESSION:
    return head_cls(label_names, **applied)
  head = head_cls(**applied)
  if len(label_names) not in (0, head.label_dimension):
    raise ValueError(f"a regression head of label_dimension={head.label_dimension} takes no "
                     f"label names or {head.label_dimension}; got {list(label_names)}")
  return head
