"""metrics: every metric of the three heads is numerically right on hand-made batches, streamed
over two batches, unweighted and weighted. The binary AUCs are checked against closed forms
computed here (counting concordant pairs; integrating the interpolated precision-recall curve)."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from model_fns import metrics

# Three classes, six examples over two batches. Arg-max predictions are 0, 1, 1 | 2, 0, 2 and
# labels 0, 1, 2 | 2, 2, 1, so (true, predicted) pairs are (0,0) (1,1) (2,1) | (2,2) (2,0) (1,2)
# and the confusion matrix (rows = true, columns = predicted) is
#   true 0: [1, 0, 0]
#   true 1: [0, 1, 1]
#   true 2: [1, 1, 1]
_LOGITS = [
    np.array([[3.0, 1.0, 2.0], [0.0, 2.0, 1.0], [0.5, 2.0, 1.0]], np.float32),
    np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [1.0, 0.0, 2.0]], np.float32),
]
_LABELS = [np.array([0, 1, 2]), np.array([2, 2, 1])]
_LOSSES = [np.array([0.5, 1.0, 1.5], np.float32), np.array([2.0, 0.0, 1.0], np.float32)]


def _stream(make_ops, placeholders, batches):
  """Streams `batches` (tuples of arrays, one per placeholder) through the metric ops that
  `make_ops(*placeholders)` builds; returns every metric's final value."""
  with tf.Graph().as_default():
    inputs = [tf.compat.v1.placeholder(dtype, shape) for dtype, shape in placeholders]
    ops = make_ops(*inputs)
    updates = tf.group(*[u for _, u in ops.values()])
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.local_variables_initializer())
      for batch in batches:
        sess.run(updates, dict(zip(inputs, batch)))
      return sess.run({name: value for name, (value, _) in ops.items()})


def _evaluate(label_names, k, batches, weighted=False):
  """Streams `batches` of (labels, logits, per-example loss[, weights]) through the multiclass
  metric ops."""
  placeholders = [(tf.int64, [None]), (tf.float32, [None, len(label_names)]),
                  (tf.float32, [None])] + [(tf.float32, [None])] * weighted
  return _stream(
      lambda labels, logits, losses, *w: metrics.eval_metric_ops(
          labels, logits, losses, label_names, k, example_weights=w[0] if w else None),
      placeholders, batches)


# Binary: the positive probabilities of 11 examples over two batches, all in different buckets of
# the AUCs' 200 thresholds (no two within 1/199), so the thresholded AUCs are exact (to float32
# rounding: the tests allow 1e-4, not the 1e-2 that scores sharing buckets would need). At the
# threshold 0.5 the class ids are 1 1 1 0 0 | 1 1 0 1 0 0 and the labels 1 0 1 0 1 | 0 1 0 1 0 0:
# TP 4 (0.9, 0.65, 0.58, 0.71), FP 2 (0.8, 0.55), FN 1 (0.2), TN 4.
_P = [np.array([0.9, 0.8, 0.65, 0.3, 0.2], np.float32),
      np.array([0.55, 0.58, 0.12, 0.71, 0.05, 0.33], np.float32)]
_Y = [np.array([1, 0, 1, 0, 1]), np.array([0, 1, 0, 1, 0, 0])]
_BINARY_LOSSES = [np.array([0.1, 1.6, 0.4, 0.3, 1.6], np.float32),
                  np.array([0.8, 0.5, 0.1, 0.3, 0.05, 0.4], np.float32)]
_BINARY_WEIGHTS = [np.array([1.0, 2.0, 0.0, 3.0, 1.0], np.float32),
                   np.array([0.5, 1.0, 2.0, 1.0, 1.0, 4.0], np.float32)]
_THRESHOLD = 0.5


def _roc_auc(scores, labels, weights):
  """The ROC AUC by its definition: the weighted fraction of (positive, negative) pairs the
  scores order correctly, a tie counting half; each pair weighs w_positive * w_negative."""
  pos, neg = labels == 1, labels == 0
  sp, sn = scores[pos][:, None], scores[neg][None, :]
  pair_weights = weights[pos][:, None] * weights[neg][None, :]
  return np.sum(pair_weights * ((sp > sn) + 0.5 * (sp == sn))) / np.sum(pair_weights)


def _pr_auc(scores, labels, weights):
  """The area under the precision-recall curve of distinct scores, interpolated as Davis &
  Goadrich (2006): lowering the threshold past a positive of weight w takes tp from t to t + w at
  a constant fp, and precision x / (x + fp) integrated over x in [t, t + w] is
  w - fp * log((t + w + fp) / (t + fp)); recall divides by the positives' total weight."""
  area, tp, fp = 0.0, 0.0, 0.0
  for i in np.argsort(-scores):
    w = weights[i]
    if labels[i]:
      area += w - fp * np.log((tp + w + fp) / (tp + fp)) if tp + fp > 0 else w
      tp += w
    else:
      fp += w
  return area / np.sum(weights[labels == 1])


def _evaluate_binary(batches, weighted=False):
  """Streams (labels, logistic, per-example loss[, weights]) batches through the binary ops."""
  placeholders = [(tf.int64, [None]), (tf.float32, [None, 1]), (tf.float32, [None])] + [
      (tf.float32, [None])] * weighted

  def make_ops(labels, logistic, losses, *w):
    class_ids = tf.cast(tf.reshape(logistic, [-1]) >= _THRESHOLD, tf.int64)
    return metrics.binary_eval_metric_ops(labels, logistic, class_ids, losses,
                                          example_weights=w[0] if w else None)

  return _stream(make_ops, placeholders,
                 [(b[0], b[1][:, None]) + tuple(b[2:]) for b in batches])


# Regression: two values per example, 3 + 2 examples.
_R_LABELS = [np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]], np.float32),
             np.array([[2.0, 2.0], [-1.0, 4.0]], np.float32)]
_R_PREDICTIONS = [np.array([[1.5, 1.0], [0.0, 0.0], [2.0, 0.5]], np.float32),
                  np.array([[2.5, 3.0], [1.0, 4.0]], np.float32)]
_R_WEIGHTS = [np.array([1.0, 0.0, 2.0], np.float32), np.array([0.5, 3.0], np.float32)]


def _evaluate_regression(batches, weighted=False):
  """Streams (labels, predictions[, weights]) batches through the regression ops; the
  per-example loss is the squared error averaged over the dimensions, as RegressionHead's."""
  placeholders = [(tf.float32, [None, 2]), (tf.float32, [None, 2])] + [
      (tf.float32, [None])] * weighted

  def make_ops(labels, predictions, *w):
    per_example = tf.reduce_mean(tf.math.squared_difference(predictions, labels), axis=-1)
    return metrics.regression_eval_metric_ops(labels, predictions, per_example,
                                              example_weights=w[0] if w else None)

  return _stream(make_ops, placeholders, batches)


class MetricsTest(tf.test.TestCase, parameterized.TestCase):

  def test_known_confusion_matrix(self):
    got = _evaluate(("cat", "dog", "eel"), 2, zip(_LABELS, _LOGITS, _LOSSES))
    self.assertAllEqual(got["confusion_matrix"], [[1, 0, 0], [0, 1, 1], [1, 1, 1]])
    self.assertEqual(got["confusion_matrix"].dtype, np.int64)
    self.assertAllClose(got["accuracy"], 3 / 6)
    # Top-2 classes: {0,2} {1,2} {1,2} | {2,1} {0,2} {2,0}: labels in them: y y y | y y n.
    self.assertAllClose(got["top_2_accuracy"], 5 / 6)
    self.assertAllClose(got["average_loss"], 6.0 / 6)
    self.assertAllClose([got["per_class/precision_cat"], got["per_class/precision_dog"],
                         got["per_class/precision_eel"]],
                        [1 / 2, 1 / 2, 1 / 2])  # column sums 2, 2, 2
    self.assertAllClose([got["per_class/recall_cat"], got["per_class/recall_dog"],
                         got["per_class/recall_eel"]],
                        [1 / 1, 1 / 2, 1 / 3])  # row sums 1, 2, 3
    self.assertCountEqual(got, [
        "accuracy", "top_2_accuracy", "average_loss", "confusion_matrix",
        "per_class/precision_cat", "per_class/precision_dog", "per_class/precision_eel",
        "per_class/recall_cat", "per_class/recall_dog", "per_class/recall_eel"])

  def test_class_never_predicted_has_zero_precision(self):
    got = _evaluate(("a", "b"), 1, [(np.array([0, 1]), np.array([[1.0, 0.0], [1.0, 0.0]]),
                                     np.zeros(2))])
    self.assertEqual(got["per_class/precision_b"], 0.0)
    self.assertEqual(got["per_class/recall_b"], 0.0)
    self.assertAllClose(got["per_class/precision_a"], 0.5)

  def test_per_class_metrics_share_one_tensorboard_group(self):
    # TensorBoard groups tags by their first path segment: the 2 * C per-class curves must make
    # one group, beside the few overall metrics.
    got = _evaluate([f"class{i}" for i in range(10)], 5, [
        (np.arange(10), np.eye(10, dtype=np.float32), np.zeros(10, np.float32))])
    groups = [name.split("/")[0] for name in got]
    self.assertCountEqual(set(groups), ["accuracy", "top_5_accuracy", "average_loss",
                                        "confusion_matrix", "per_class"])
    self.assertEqual(groups.count("per_class"), 20)
    self.assertEqual(got["per_class/precision_class7"], 1.0)
    self.assertEqual(got["per_class/recall_class7"], 1.0)

  def test_duplicate_label_names_keep_every_class(self):
    self.assertEqual(metrics.per_class_names(["x", "y", "x"]), ("0_x", "1_y", "2_x"))
    self.assertEqual(metrics.per_class_names(["x", "y"]), ("x", "y"))
    got = _evaluate(("x", "y", "x"), 1, [(np.array([0, 1, 2]),
                                          np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]),
                                          np.zeros(3))])
    self.assertEqual(got["per_class/precision_0_x"], 0.5)  # classes 0 and 1 predicted as 0
    self.assertEqual(got["per_class/recall_1_y"], 0.0)
    self.assertEqual(got["per_class/precision_2_x"], 1.0)

  @parameterized.named_parameters(("default_on_10", 5, 10, 5), ("capped", 5, 3, 2),
                                  ("binary", 5, 2, 1), ("small_request", 1, 10, 1))
  def test_top_k_is_capped_below_num_classes(self, requested, num_classes, expected):
    self.assertEqual(metrics.top_k(requested, num_classes), expected)

  def test_weighted_multiclass_metrics_and_an_unweighted_confusion_matrix(self):
    weights = [np.array([1.0, 2.0, 0.5], np.float32), np.array([0.0, 3.0, 1.0], np.float32)]
    got = _evaluate(("cat", "dog", "eel"), 2, zip(_LABELS, _LOGITS, _LOSSES, weights),
                    weighted=True)
    # The matrix still counts examples: the reports draw it as integers.
    self.assertAllEqual(got["confusion_matrix"], [[1, 0, 0], [0, 1, 1], [1, 1, 1]])
    self.assertEqual(got["confusion_matrix"].dtype, np.int64)
    # Correct: (0,0) w 1, (1,1) w 2, (2,2) w 0 of a total weight 7.5.
    self.assertAllClose(got["accuracy"], 3.0 / 7.5)
    # In the top 2: all but the last example (w 1).
    self.assertAllClose(got["top_2_accuracy"], 6.5 / 7.5)
    self.assertAllClose(got["average_loss"], (0.5 + 2.0 + 0.75 + 0.0 + 0.0 + 1.0) / 7.5)
    # Weighted matrix: true 0: [1, 0, 0]; true 1: [0, 2, 1]; true 2: [3, 0.5, 0].
    self.assertAllClose([got["per_class/precision_cat"], got["per_class/precision_dog"],
                         got["per_class/precision_eel"]], [1 / 4, 2 / 2.5, 0 / 1])
    self.assertAllClose([got["per_class/recall_cat"], got["per_class/recall_dog"],
                         got["per_class/recall_eel"]], [1 / 1, 2 / 3, 0 / 3.5])

  def test_multiclass_weights_of_one_change_nothing(self):
    plain = _evaluate(("cat", "dog", "eel"), 2, zip(_LABELS, _LOGITS, _LOSSES))
    ones = _evaluate(("cat", "dog", "eel"), 2,
                     zip(_LABELS, _LOGITS, _LOSSES, [np.ones(3, np.float32)] * 2), weighted=True)
    self.assertCountEqual(ones, plain)
    for name in plain:
      self.assertAllClose(ones[name], plain[name], msg=name)

  def test_binary_metrics_equal_their_closed_forms(self):
    got = _evaluate_binary(zip(_Y, _P, _BINARY_LOSSES))
    p, y = np.concatenate(_P), np.concatenate(_Y)
    self.assertCountEqual(got, [
        "accuracy", "average_loss", "auc", "auc_precision_recall", "precision", "recall",
        "label/mean", "prediction/mean", "accuracy_baseline", "confusion_matrix"])
    self.assertAllEqual(got["confusion_matrix"], [[4, 2], [1, 4]])  # rows: true 0, true 1
    self.assertEqual(got["confusion_matrix"].dtype, np.int64)
    self.assertAllClose(got["accuracy"], 8 / 11)
    self.assertAllClose(got["precision"], 4 / 6)
    self.assertAllClose(got["recall"], 4 / 5)
    self.assertAllClose(got["average_loss"], np.concatenate(_BINARY_LOSSES).mean())
    self.assertAllClose(got["label/mean"], 5 / 11)
    self.assertAllClose(got["accuracy_baseline"], 6 / 11)  # always predicting the negatives
    self.assertAllClose(got["prediction/mean"], p.mean())
    # Of the 30 (positive, negative) pairs, 0.9 tops all 6 negatives, 0.71, 0.65 and 0.58 all but
    # 0.8, and 0.2 only 0.12 and 0.05: 23 are ordered right.
    self.assertAllClose(_roc_auc(p, y, np.ones(11)), 23 / 30)
    self.assertAllClose(got["auc"], _roc_auc(p, y, np.ones(11)), atol=1e-4)
    self.assertAllClose(got["auc_precision_recall"], _pr_auc(p, y, np.ones(11)), atol=1e-4)

  def test_weighted_binary_metrics_equal_their_closed_forms(self):
    got = _evaluate_binary(zip(_Y, _P, _BINARY_LOSSES, _BINARY_WEIGHTS), weighted=True)
    p, y, w = np.concatenate(_P), np.concatenate(_Y), np.concatenate(_BINARY_WEIGHTS)
    class_ids = p >= _THRESHOLD
    self.assertAllEqual(got["confusion_matrix"], [[4, 2], [1, 4]])  # counts, not weights
    self.assertAllClose(got["accuracy"], np.sum(w * (class_ids == y)) / np.sum(w))
    self.assertAllClose(got["precision"], np.sum(w * class_ids * y) / np.sum(w * class_ids))
    self.assertAllClose(got["recall"], np.sum(w * class_ids * y) / np.sum(w * y))
    self.assertAllClose(got["average_loss"],
                        np.sum(w * np.concatenate(_BINARY_LOSSES)) / np.sum(w))
    label_mean = np.sum(w * y) / np.sum(w)
    self.assertAllClose(got["label/mean"], label_mean)
    self.assertAllClose(got["accuracy_baseline"], max(label_mean, 1 - label_mean))
    self.assertAllClose(got["prediction/mean"], np.sum(w * p) / np.sum(w))
    self.assertNotAllClose(_roc_auc(p, y, w), _roc_auc(p, y, np.ones(11)), atol=1e-4)
    self.assertAllClose(got["auc"], _roc_auc(p, y, w), atol=1e-4)
    self.assertAllClose(got["auc_precision_recall"], _pr_auc(p, y, w), atol=1e-4)

  def test_binary_weight_k_counts_as_k_copies(self):
    weights = [np.array([1.0, 2.0, 0.0, 3.0, 1.0], np.float32),
               np.array([1.0, 1.0, 2.0, 1.0, 1.0, 4.0], np.float32)]
    weighted = _evaluate_binary(zip(_Y, _P, _BINARY_LOSSES, weights), weighted=True)
    copies = _evaluate_binary([tuple(np.repeat(a, w.astype(int), axis=0) for a in batch)
                               for batch, w in zip(zip(_Y, _P, _BINARY_LOSSES), weights)])
    self.assertCountEqual(weighted, copies)
    for name in copies:
      if name != "confusion_matrix":
        self.assertAllClose(weighted[name], copies[name], msg=name)

  def test_roc_auc_counts_a_tied_pair_as_half(self):
    # Positive and negative with one score: of the 4 pairs, 3 ordered right, 1 tied.
    got = _evaluate_binary([(np.array([1, 0, 1, 0]), np.array([0.8, 0.4, 0.4, 0.1], np.float32),
                             np.zeros(4, np.float32))])
    self.assertAllClose(got["auc"], 3.5 / 4, atol=1e-4)

  def test_regression_metrics_equal_their_closed_forms(self):
    got = _evaluate_regression(zip(_R_LABELS, _R_PREDICTIONS))
    y, f = np.concatenate(_R_LABELS), np.concatenate(_R_PREDICTIONS)
    self.assertCountEqual(got, ["average_loss", "rmse", "mae", "label/mean", "prediction/mean"])
    # Squared errors 0.25 1 | 0 1 | 1 0 | 0.25 1 | 4 0: 8.5 over 10 values.
    self.assertAllClose(got["average_loss"], 8.5 / 10)
    self.assertAllClose(got["rmse"], np.sqrt(8.5 / 10))
    self.assertAllClose(got["mae"], np.abs(f - y).mean())
    self.assertAllClose(got["label/mean"], y.mean())
    self.assertAllClose(got["prediction/mean"], f.mean())

  def test_weighted_regression_metrics_equal_their_closed_forms(self):
    got = _evaluate_regression(zip(_R_LABELS, _R_PREDICTIONS, _R_WEIGHTS), weighted=True)
    y, f = np.concatenate(_R_LABELS), np.concatenate(_R_PREDICTIONS)
    w = np.concatenate(_R_WEIGHTS)[:, None] * np.ones((1, 2))
    mse = np.sum(w * (f - y) ** 2) / np.sum(w)
    self.assertAllClose(got["average_loss"], mse)
    self.assertAllClose(got["rmse"], np.sqrt(mse))
    self.assertAllClose(got["mae"], np.sum(w * np.abs(f - y)) / np.sum(w))
    self.assertAllClose(got["label/mean"], np.sum(w * y) / np.sum(w))
    self.assertAllClose(got["prediction/mean"], np.sum(w * f) / np.sum(w))

  def test_batch_accuracy(self):
    with tf.Graph().as_default():
      acc = metrics.batch_accuracy(tf.constant([[1], [2], [0], [0]]),
                                   tf.constant([1, 0, 0, 0], tf.int64))
      with tf.compat.v1.Session() as sess:
        self.assertAllClose(sess.run(acc), 0.75)


if __name__ == "__main__":
  tf.test.main()
