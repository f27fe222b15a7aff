"""The evaluation metrics every model reports, under the same names.

  accuracy                      fraction of examples whose arg-max class is the label
  top_<k>_accuracy              fraction whose label is among the k highest logits (ties count
                                as in)
  average_loss                  mean per-example cross-entropy (no label smoothing, no
                                regularization)
  per_class/precision_<label>   per class: correct predictions of the class / predictions of it
  per_class/recall_<label>      per class: correct predictions of the class / examples of it
  confusion_matrix              int64 [C, C], rows = true class, columns = predicted class

(The Estimator adds `loss`, the mean over batches of the training objective.) All are streaming
tf.compat.v1 metrics: (value, update_op) pairs over local variables, accumulated across the
whole evaluation. The confusion matrix is not a scalar, so the Estimator stores it in the eval
results and as a tensor summary, not as a TensorBoard scalar; the precision/recall of every
class are read from the same matrix, so one variable serves them all.

Every per-class metric is under the one tag prefix `per_class/`: TensorBoard groups scalars by
the first path segment of their tag, so the 2 * C per-class curves fold into one collapsible
group instead of pushing accuracy and loss out of sight (with 10 classes they are 20 of an eval
run's 24 scalars).
"""

from typing import Dict, Sequence, Tuple

import tensorflow as tf

ACCURACY = "accuracy"
AVERAGE_LOSS = "average_loss"
CONFUSION_MATRIX = "confusion_matrix"
PER_CLASS = "per_class"

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


def _streaming_confusion_matrix(labels: tf.Tensor, predictions: tf.Tensor,
                                num_classes: int) -> Tuple[tf.Tensor, tf.Operation]:
  total = tf.compat.v1.Variable(
      tf.zeros([num_classes, num_classes], tf.int64), trainable=False, name="confusion_matrix",
      collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES,
                   tf.compat.v1.GraphKeys.METRIC_VARIABLES],
      # As tf.compat.v1.metrics' own variables: per-replica counts summed when read.
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.SUM)
  batch = tf.math.confusion_matrix(labels, predictions, num_classes=num_classes, dtype=tf.int64)
  update = total.assign_add(batch, read_value=False)
  return tf.identity(total.read_value(), name="value"), update


def eval_metric_ops(labels: tf.Tensor, logits: tf.Tensor, per_example_loss: tf.Tensor,
                    label_names: Sequence[str], k: int) -> MetricOps:
  """The streaming metrics of one evaluation.

  Args:
    labels: int class ids [B].
    logits: float32 [B, C].
    per_example_loss: float32 [B], the unsmoothed cross-entropy of each example.
    label_names: the C class names (for per_class/precision_<name>, per_class/recall_<name>).
    k: the top-k k (already capped, see top_k()).

  Returns:
    Metric name -> (value tensor, update op), the names listed in the module docstring.
  """
  num_classes = len(label_names)
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  class_ids = tf.argmax(logits, axis=-1)
  with tf.name_scope("metrics"):
    ops: MetricOps = {
        ACCURACY: tf.compat.v1.metrics.accuracy(labels, class_ids, name=ACCURACY),
        top_k_name(k): tf.compat.v1.metrics.mean(
            tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32), name=f"top_{k}"),
        AVERAGE_LOSS: tf.compat.v1.metrics.mean(per_example_loss, name=AVERAGE_LOSS),
    }
    with tf.name_scope(CONFUSION_MATRIX):
      matrix, update = _streaming_confusion_matrix(labels, class_ids, num_classes)
    ops[CONFUSION_MATRIX] = (matrix, update)
    counts = tf.cast(matrix, tf.float64)
    correct = tf.linalg.diag_part(counts)
    precision = tf.math.divide_no_nan(correct, tf.reduce_sum(counts, axis=0))
    recall = tf.math.divide_no_nan(correct, tf.reduce_sum(counts, axis=1))
    # Every per-class metric shares the matrix's update op: the Estimator groups the update ops,
    # so the matrix is still accumulated once per batch.
    for c, name in enumerate(per_class_names(label_names)):
      ops[precision_name(name)] = (tf.cast(precision[c], tf.float32), update)
      ops[recall_name(name)] = (tf.cast(recall[c], tf.float32), update)
  return ops


def batch_accuracy(labels: tf.Tensor, class_ids: tf.Tensor) -> tf.Tensor:
  """The accuracy of one batch (the training summary), float32 scalar."""
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
  return tf.reduce_mean(tf.cast(tf.equal(labels, class_ids), tf.float32))
