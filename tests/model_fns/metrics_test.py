"""metrics: every metric is numerically right on hand-made batches, streamed over two batches."""

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


def _evaluate(label_names, k, batches):
  """Streams `batches` of (labels, logits, per-example loss) through the metric ops."""
  with tf.Graph().as_default():
    labels = tf.compat.v1.placeholder(tf.int64, [None])
    logits = tf.compat.v1.placeholder(tf.float32, [None, len(label_names)])
    losses = tf.compat.v1.placeholder(tf.float32, [None])
    ops = metrics.eval_metric_ops(labels, logits, losses, label_names, k)
    updates = tf.group(*[u for _, u in ops.values()])
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.local_variables_initializer())
      for y, z, l in batches:
        sess.run(updates, {labels: y, logits: z, losses: l})
      return sess.run({name: value for name, (value, _) in ops.items()})


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

  def test_batch_accuracy(self):
    with tf.Graph().as_default():
      acc = metrics.batch_accuracy(tf.constant([[1], [2], [0], [0]]),
                                   tf.constant([1, 0, 0, 0], tf.int64))
      with tf.compat.v1.Session() as sess:
        self.assertAllClose(sess.run(acc), 0.75)


if __name__ == "__main__":
  tf.test.main()
