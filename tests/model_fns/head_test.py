"""head: the ClassificationHead's predictions, loss, eval metrics and export outputs, on fixed
logits (no model)."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from model_fns import head as head_lib

LABELS = ("ant", "bee", "cat")
_N = 6


def _logits(n=_N, seed=0):
  return np.random.default_rng(seed).standard_normal((n, len(LABELS))).astype(np.float32)


def _labels(n=_N):
  return np.arange(n, dtype=np.int64) % len(LABELS)


def _log_softmax(logits):
  return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


class HeadTestBase(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    graph = tf.Graph()
    self.enterContext(graph.as_default())  # each test builds its own graph
    self.sess = self.enterContext(tf.compat.v1.Session(graph=graph))

  def _init(self):
    self.sess.run([tf.compat.v1.global_variables_initializer(),
                   tf.compat.v1.local_variables_initializer()])


class PredictTest(HeadTestBase):

  def test_predictions_are_the_predict_keys_and_agree_with_the_logits(self):
    logits = _logits()
    p = self.sess.run(head_lib.ClassificationHead(LABELS).predictions(tf.constant(logits)))
    self.assertEqual(tuple(p), head_lib.PREDICT_KEYS)
    self.assertEqual(p["class_ids"].dtype, np.int64)
    self.assertEqual(p["probabilities"].dtype, np.float32)
    self.assertAllEqual(p["class_ids"], logits.argmax(axis=1))
    self.assertAllClose(np.log(p["probabilities"]), _log_softmax(logits), rtol=1e-5)
    self.assertAllEqual(p["logits"], logits)

  def test_predict_spec_predictions_and_three_export_outputs(self):
    est_spec = head_lib.ClassificationHead(LABELS).predict_spec(tf.constant(_logits(5)))
    self.assertIsNone(est_spec.train_op)
    self.assertIsNone(est_spec.loss)
    p = self.sess.run(est_spec.predictions)
    self.assertEqual(p["probabilities"].shape, (5, 3))
    self.assertAllClose(p["probabilities"].sum(axis=1), np.ones(5))
    outputs = est_spec.export_outputs
    self.assertCountEqual(outputs, ["serving_default", "predict", "classification"])
    self.assertIsInstance(outputs["serving_default"], tf.estimator.export.PredictOutput)
    self.assertIsInstance(outputs["predict"], tf.estimator.export.PredictOutput)
    classification = outputs["classification"]
    self.assertIsInstance(classification, tf.estimator.export.ClassificationOutput)
    classes, scores = self.sess.run([classification.classes, classification.scores])
    self.assertAllEqual(classes, [[b"ant", b"bee", b"cat"]] * 5)
    self.assertAllClose(scores, p["probabilities"])


class LossTest(HeadTestBase):

  def test_l1_l2_add_exactly_their_penalty_on_weights_not_biases(self):
    kernel = np.arange(-3, 3, dtype=np.float32).reshape(2, 3) / 4
    bias = np.array([1.0, -2.0, 3.0], np.float32)
    weights = [tf.Variable(kernel, name="kernel"), tf.Variable(bias, name="bias")]
    logits, labels = tf.constant(_logits()), tf.constant(_labels())
    plain = head_lib.ClassificationHead(LABELS).loss(labels, logits, weights, [])
    penalized = head_lib.ClassificationHead(LABELS, l1=0.001, l2=0.01).loss(
        labels, logits, weights, [])
    self._init()
    (base, base_ce, base_reg), (loss, ce, reg) = self.sess.run([plain, penalized])
    expected = 0.01 * np.sum(kernel ** 2) + 0.001 * np.sum(abs(kernel))
    self.assertEqual(base_reg, 0.0)
    self.assertAllClose(reg, expected, rtol=1e-5)
    self.assertAllClose(ce, base_ce)
    self.assertAllClose(loss - base, expected, rtol=1e-5)

  def test_label_smoothing(self):
    logits, labels = _logits(24), _labels(24)
    smoothed = head_lib.ClassificationHead(LABELS, label_smoothing=0.3).loss(
        tf.constant(labels), tf.constant(logits), [], [])[0]
    plain = head_lib.ClassificationHead(LABELS).loss(
        tf.constant(labels), tf.constant(logits), [], [])[0]
    loss, plain = self.sess.run([smoothed, plain])
    targets = np.full((24, 3), 0.1)
    targets[np.arange(24), labels] += 0.7
    self.assertAllClose(loss, -(targets * _log_softmax(logits)).sum(axis=1).mean(), rtol=1e-5)
    self.assertAllClose(plain, -_log_softmax(logits)[np.arange(24), labels].mean(), rtol=1e-5)

  def test_model_losses_join_the_regularization_and_the_total_is_named(self):
    logits, labels = tf.constant(_logits()), tf.constant(_labels())
    loss, ce, reg = head_lib.ClassificationHead(LABELS).loss(
        labels, logits, [], [tf.constant(0.25), tf.constant(0.5, tf.float16)])
    self.assertEqual(loss.op.name, "losses/total")
    loss, ce, reg = self.sess.run([loss, ce, reg])
    self.assertAllClose(reg, 0.75)
    self.assertAllClose(loss, ce + 0.75)


class LabelsTest(HeadTestBase):

  @parameterized.named_parameters(("negative", -1, "labels must be >= 0"),
                                  ("too_large", 3, "labels must be < num_classes=3"))
  def test_labels_outside_the_classes_fail_when_run(self, bad, message):
    head = head_lib.ClassificationHead(LABELS)
    self.assertAllEqual(self.sess.run(head.checked_labels(tf.constant([[0], [2]]))), [0, 2])
    checked = head.checked_labels(tf.constant([0, bad, 1]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
      self.sess.run(checked)

  def test_eval_needs_labels(self):
    head = head_lib.ClassificationHead(LABELS)
    with self.assertRaisesRegex(ValueError, "TRAIN and EVAL need labels"):
      head.eval_spec(tf.constant(_logits()), None, [], [])


class EvalTest(HeadTestBase):

  def test_eval_spec_reports_every_metric(self):
    logits, labels = _logits(24), _labels(24)
    est_spec = head_lib.ClassificationHead(LABELS).eval_spec(
        tf.constant(logits), tf.constant(labels), [], [])
    self.assertCountEqual(est_spec.eval_metric_ops, [
        "accuracy", "top_2_accuracy", "average_loss", "confusion_matrix",
        "per_class/precision_ant", "per_class/precision_bee", "per_class/precision_cat",
        "per_class/recall_ant", "per_class/recall_bee", "per_class/recall_cat"])
    self._init()
    self.sess.run([u for _, u in est_spec.eval_metric_ops.values()])
    matrix, accuracy, average_loss, loss = self.sess.run(
        [est_spec.eval_metric_ops["confusion_matrix"][0],
         est_spec.eval_metric_ops["accuracy"][0],
         est_spec.eval_metric_ops["average_loss"][0], est_spec.loss])
    self.assertEqual(matrix.sum(), 24)
    self.assertAllEqual(matrix[labels, logits.argmax(axis=1)] > 0, [True] * 24)
    self.assertAllClose(accuracy, np.trace(matrix) / 24)
    self.assertAllClose(average_loss, -_log_softmax(logits)[np.arange(24), labels].mean(),
                        rtol=1e-5)
    self.assertAllClose(loss, average_loss, rtol=1e-5)  # no smoothing, no regularization

  @parameterized.named_parameters(("capped", 5, 2), ("as_asked", 1, 1))
  def test_top_k_is_capped_below_the_class_count(self, requested, k):
    head = head_lib.ClassificationHead(LABELS, top_k=requested)
    self.assertEqual(head.top_k, k)
    est_spec = head.eval_spec(tf.constant(_logits()), tf.constant(_labels()), [], [])
    self.assertIn(f"top_{k}_accuracy", est_spec.eval_metric_ops)

  def test_train_spec_carries_the_loss_and_train_op(self):
    head = head_lib.ClassificationHead(LABELS)
    logits, labels = tf.constant(_logits()), tf.constant(_labels())
    loss = head.loss(labels, logits, [], [])[0]
    train_op = tf.no_op(name="train")
    est_spec = head.train_spec(loss, train_op, head.predictions(logits))
    self.assertEqual(est_spec.mode, tf.estimator.ModeKeys.TRAIN)
    self.assertIs(est_spec.loss, loss)
    self.assertIs(est_spec.train_op, train_op)
    self.assertCountEqual(est_spec.predictions, head_lib.PREDICT_KEYS)


if __name__ == "__main__":
  tf.test.main()
