"""The evaluation metrics of the three heads (model_fns/head.py), under fixed names.

Multiclass (ClassificationHead, `eval_metric_ops`):

  accuracy                      fraction of examples whose arg-max class is the label
  top_<k>_accuracy              fraction whose label is among the k highest logits (ties count
                                as in)
  average_loss                  mean per-example cross-entropy (no label smoothing, no
                                regularization)
  per_class/precision_<label>   per class: correct predictions of the class / predictions of it
  per_class/recall_<label>      per class: correct predictions of the class / examples of it
  confusion_matrix              int64 [C, C], rows = true class, columns = predicted class

Binary (BinaryHead, `binary_eval_metric_ops`), the names the premade Estimators' binary head
reports, so runs compare with theirs:

  accuracy                      fraction of examples whose class id (p >= threshold) is the label
  average_loss                  mean per-example sigmoid cross-entropy (no label smoothing, no
                                pos_weight, no regularization)
  auc                           area under the ROC curve
  auc_precision_recall          area under the precision-recall curve (Davis & Goadrich
                                interpolation)
  precision, recall             of the positive class (class 1) at the threshold
  label/mean                    fraction of positive labels
  prediction/mean               mean predicted probability of the positive class
  accuracy_baseline             max(label/mean, 1 - label/mean): the accuracy of always
                                predicting the majority class
  confusion_matrix              int64 [2, 2], as the multiclass one

Regression (RegressionHead, `regression_eval_metric_ops`), over every label dimension:

  average_loss                  mean squared error (the training loss without regularization)
  rmse                          root mean squared error, sqrt(average_loss)
  mae                           mean absolute error
  label/mean, prediction/mean   mean label, mean prediction

(The Estimator adds `loss`, the mean over batches of the training objective.) All are streaming
tf.compat.v1 metrics: (value, update_op) pairs over local variables, accumulated across the
whole evaluation. The confusion matrix is not a scalar, so the Estimator stores it in the eval
results and as a tensor summary, not as a TensorBoard scalar; the multiclass precision/recall of
every class are read from the same matrix, so one variable serves them all.

Example weights: every function takes optional per-example weights (float32 [B], checked by the
head); each metric is then the weighted one (a weight of 2 counts as the example twice). The
confusion matrix stays the int64 count of examples, whatever their weights, so the reports and
images that draw it read one kind of matrix; with weights, the per-class precision/recall are
read from a second, weighted matrix instead.

AUCs are approximated on AUC_NUM_THRESHOLDS evenly spaced thresholds, the premade Estimators'
count, so the numbers match theirs; scores closer than about 1 / AUC_NUM_THRESHOLDS apart can
fall in one bucket and count as tied.

Every per-class metric is under the one tag prefix `per_class/`: TensorBoard groups scalars by
the first path segment of their tag, so the 2 * C per-class curves fold into one collapsible
group instead of pushing accuracy and loss out of sight (with 10 classes they are 20 of an eval
run's 24 scalars).
"""

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

ACCURACY = "accuracy"
AVERAGE_LOSS = "average_loss"
CONFUSION_MATRIX = "confusion_matrix"
PER_CLASS = "per_class"
AUC = "auc"
AUC_PRECISION_RECALL = "auc_precision_recall"
PRECISION = "precision"
RECALL = "recall"
LABEL_MEAN = "label/mean"
PREDICTION_MEAN = "prediction/mean"
ACCURACY_BASELINE = "accuracy_baseline"
RMSE = "rmse"
MAE = "mae"

AUC_NUM_THRESHOLDS = 200

MetricOps = Dict[str, Tuple[tf.Tensor, tf.Operation]]


def top_k(requested: int, num_classes: int) -> int:
  """The k actually used: the requested k capped at num_classes - 1 (k = C is always 1.0)."""
  return max(1, min(requested, num_classes - 1))


def top_k_name(k: int) -> str:
  return f"top_{k}_accuracy"


def precision_name(class_name: str) -> str:
  """The precision metric of one class: per_class/precision_<class_name>."""
  return f"{PER_CLASS}/precision_{class_name}"


def recall_name(class_name: str) -> str:
  """The recall metric of one class: per_class/recall_<class_name>."""
  return f"{PER_CLASS}/recall_{class_name}"


def per_class_names(label_names: Sequence[str]) -> Tuple[str, ...]:
  """The suffix naming each class in per_class/precision_<x> and per_class/recall_<x>: its label
  name, or "<index>_<name>" when two classes share a name, so no metric overwrites another."""
  names = [str(n) for n in label_names]
  if len(set(names)) == len(names):
    return tuple(names)
  return tuple(f"{i}_{n}" for i, n in enumerate(names))


def _streaming_confusion_matrix(labels: tf.Tensor, predictions: tf.Tensor, num_classes: int,
                                weights: Optional[tf.Tensor] = None, dtype=tf.int64,
                                name: str = "confusion_matrix"
                                ) -> Tuple[tf.Tensor, tf.Operation]:
  total = tf.compat.v1.Variable(
      tf.zeros([num_classes, num_classes], dtype), trainable=False, name=name,
      collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES,
                   tf.compat.v1.GraphKeys.METRIC_VARIABLES],
      # As tf.compat.v1.metrics' own variables: per-replica counts summed when read.
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.SUM)
  batch = tf.math.confusion_matrix(labels, predictions, num_classes=num_classes, weights=weights,
                                   dtype=dtype)
  update = total.assign_add(batch, read_value=False)
  return tf.identity(total.read_value(), name="value"), update


def _confusion_matrix_op(labels: tf.Tensor, class_ids: tf.Tensor,
                         num_classes: int) -> Tuple[tf.Tensor, tf.Operation]:
  """CONFUSION_MATRIX: int64 counts of examples (never weighted, see the module docstring)."""
  with tf.name_scope(CONFUSION_MATRIX):
    return _streaming_confusion_matrix(labels, class_ids, num_classes)


def eval_metric_ops(labels: tf.Tensor, logits: tf.Tensor, per_example_loss: tf.Tensor,
                    label_names: Sequence[str], k: int,
                    example_weights: Optional[tf.Tensor] = None) -> MetricOps:
  """The streaming metrics of one multiclass evaluation.

  Args:
    labels: int class ids [B].
    logits: float32 [B, C].
    per_example_loss: float32 [B], the unsmoothed cross-entropy of each example.
    label_names: the C class names (for per_class/precision_<name>, per_class/recall_<name>).
    k: the top-k k (already capped, see top_k()).
    example_weights: float32 [B], checked non-negative, or None (every example weighs 1).

  Returns:
    Metric name -> (value tensor, update op), the multiclass names of the module docstring.
  """
  num_classes = len(label_names)
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  class_ids = tf.argmax(logits, axis=-1)
  w = example_weights
  with tf.name_scope("metrics"):
    ops: MetricOps = {
        ACCURACY: tf.compat.v1.metrics.accuracy(labels, class_ids, weights=w, name=ACCURACY),
        top_k_name(k): tf.compat.v1.metrics.mean(
            tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32), weights=w,
            name=f"top_{k}"),
        AVERAGE_LOSS: tf.compat.v1.metrics.mean(per_example_loss, weights=w, name=AVERAGE_LOSS),
    }
    matrix, update = _confusion_matrix_op(labels, class_ids, num_classes)
    ops[CONFUSION_MATRIX] = (matrix, update)
    if w is None:
      counts = tf.cast(matrix, tf.float64)
    else:
      with tf.name_scope("weighted_confusion_matrix"):
        counts, weighted_update = _streaming_confusion_matrix(
            labels, class_ids, num_classes, weights=w, dtype=tf.float64,
            name="weighted_confusion_matrix")
      update = tf.group(update, weighted_update)
    correct = tf.linalg.diag_part(counts)
    precision = tf.math.divide_no_nan(correct, tf.reduce_sum(counts, axis=0))
    recall = tf.math.divide_no_nan(correct, tf.reduce_sum(counts, axis=1))
    # Every per-class metric shares the matrix's update op: the Estimator groups the update ops,
    # so the matrix is still accumulated once per batch.
    for c, name in enumerate(per_class_names(label_names)):
      ops[precision_name(name)] = (tf.cast(precision[c], tf.float32), update)
      ops[recall_name(name)] = (tf.cast(recall[c], tf.float32), update)
  return ops


def binary_eval_metric_ops(labels: tf.Tensor, logistic: tf.Tensor, class_ids: tf.Tensor,
                           per_example_loss: tf.Tensor,
                           example_weights: Optional[tf.Tensor] = None) -> MetricOps:
  """The streaming metrics of one binary evaluation.

  Args:
    labels: int class ids [B], 0 (negative) or 1 (positive).
    logistic: float32 [B] or [B, 1], the predicted probability of the positive class.
    class_ids: int64 [B], the predicted class (logistic >= the head's threshold).
    per_example_loss: float32 [B], the unsmoothed sigmoid cross-entropy of each example.
    example_weights: float32 [B], checked non-negative, or None (every example weighs 1).

  Returns:
    Metric name -> (value tensor, update op), the binary names of the module docstring.
  """
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  logistic = tf.reshape(logistic, [-1])
  class_ids = tf.reshape(class_ids, [-1])
  w = example_weights
  with tf.name_scope("metrics"):
    label_mean = tf.compat.v1.metrics.mean(tf.cast(labels, tf.float32), weights=w,
                                           name="label_mean")
    ops: MetricOps = {
        ACCURACY: tf.compat.v1.metrics.accuracy(labels, class_ids, weights=w, name=ACCURACY),
        AVERAGE_LOSS: tf.compat.v1.metrics.mean(per_example_loss, weights=w, name=AVERAGE_LOSS),
        AUC: tf.compat.v1.metrics.auc(
            labels, logistic, weights=w, num_thresholds=AUC_NUM_THRESHOLDS, curve="ROC",
            summation_method="careful_interpolation", name=AUC),
        AUC_PRECISION_RECALL: tf.compat.v1.metrics.auc(
            labels, logistic, weights=w, num_thresholds=AUC_NUM_THRESHOLDS, curve="PR",
            summation_method="careful_interpolation", name=AUC_PRECISION_RECALL),
        PRECISION: tf.compat.v1.metrics.precision(labels, class_ids, weights=w, name=PRECISION),
        RECALL: tf.compat.v1.metrics.recall(labels, class_ids, weights=w, name=RECALL),
        LABEL_MEAN: label_mean,
        PREDICTION_MEAN: tf.compat.v1.metrics.mean(logistic, weights=w, name="prediction_mean"),
        # Read from label/mean's variables, updated by its update op (grouped once per batch).
        ACCURACY_BASELINE: (tf.maximum(label_mean[0], 1.0 - label_mean[0],
                                       name=ACCURACY_BASELINE), label_mean[1]),
    }
    ops[CONFUSION_MATRIX] = _confusion_matrix_op(labels, class_ids, 2)
  return ops


def regression_eval_metric_ops(labels: tf.Tensor, predictions: tf.Tensor,
                               per_example_loss: tf.Tensor,
                               example_weights: Optional[tf.Tensor] = None) -> MetricOps:
  """The streaming metrics of one regression evaluation.

  Args:
    labels: float32 [B, D].
    predictions: float32 [B, D].
    per_example_loss: float32 [B], each example's squared error averaged over the D dimensions.
    example_weights: float32 [B], checked non-negative, or None (every example weighs 1).

  Returns:
    Metric name -> (value tensor, update op), the regression names of the module docstring.
  """
  # One weight for each of an example's D values.
  w = None if example_weights is None else tf.reshape(example_weights, [-1, 1])
  with tf.name_scope("metrics"):
    return {
        AVERAGE_LOSS: tf.compat.v1.metrics.mean(per_example_loss, weights=example_weights,
                                                name=AVERAGE_LOSS),
        RMSE: tf.compat.v1.metrics.root_mean_squared_error(labels, predictions, weights=w,
                                                           name=RMSE),
        MAE: tf.compat.v1.metrics.mean_absolute_error(labels, predictions, weights=w, name=MAE),
        LABEL_MEAN: tf.compat.v1.metrics.mean(labels, weights=w, name="label_mean"),
        PREDICTION_MEAN: tf.compat.v1.metrics.mean(predictions, weights=w,
                                                   name="prediction_mean"),
    }


def batch_accuracy(labels: tf.Tensor, class_ids: tf.Tensor) -> tf.Tensor:
  """The accuracy of one batch (the training summary), float32 scalar."""
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  return tf.reduce_mean(tf.cast(tf.equal(labels, class_ids), tf.float32))
