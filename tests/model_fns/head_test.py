"""head: the three heads' predictions, loss, eval metrics and export outputs on fixed logits (no
model), their checks, make_head, and that each head's loss trains a tiny model by gradient descent.
"""

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


BINARY_LABELS = ("no", "yes")
# Binary logits and labels: positive probabilities about 0.88 0.27 0.62 0.05 0.5 0.73.
_Z = np.array([[2.0], [-1.0], [0.5], [-3.0], [0.0], [1.0]], np.float32)
_Y = np.array([1, 0, 0, 0, 1, 1])


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def _sigmoid_cross_entropy(targets, z):
  """-t log s(z) - (1 - t) log(1 - s(z)), written stably: max(z, 0) - z t + log(1 + e^-|z|)."""
  return np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))


def _run_metrics(sess, est_spec):
  """Runs the update ops of an EVAL spec once, then returns every metric's value."""
  sess.run([tf.compat.v1.local_variables_initializer()])
  sess.run([u for _, u in est_spec.eval_metric_ops.values()])
  return sess.run({k: v for k, (v, _) in est_spec.eval_metric_ops.items()})


class BinaryHeadTest(HeadTestBase):

  def test_predictions_are_the_binary_keys_at_the_threshold(self):
    p = self.sess.run(head_lib.BinaryHead(BINARY_LABELS, threshold=0.6).predictions(
        tf.constant(_Z)))
    self.assertEqual(tuple(p), head_lib.BINARY_PREDICT_KEYS)
    self.assertEqual(p["class_ids"].dtype, np.int64)
    self.assertAllEqual(p["class_ids"], [1, 0, 1, 0, 0, 1])  # p >= 0.6
    self.assertAllClose(p["logistic"], _sigmoid(_Z))
    self.assertEqual(p["probabilities"].shape, (6, 2))
    self.assertAllClose(p["probabilities"], np.concatenate([1 - _sigmoid(_Z), _sigmoid(_Z)], 1))
    self.assertAllEqual(p["logits"], _Z)

  def test_the_default_threshold_counts_one_half_as_positive(self):
    p = self.sess.run(head_lib.BinaryHead(BINARY_LABELS).predictions(tf.constant(_Z)))
    self.assertAllEqual(p["class_ids"], [1, 0, 1, 0, 1, 1])

  def test_export_outputs_classify_with_both_label_names(self):
    est_spec = head_lib.BinaryHead(BINARY_LABELS).predict_spec(tf.constant(_Z))
    outputs = est_spec.export_outputs
    self.assertCountEqual(outputs, ["serving_default", "predict", "classification"])
    self.assertIsInstance(outputs["serving_default"], tf.estimator.export.PredictOutput)
    self.assertIsInstance(outputs["predict"], tf.estimator.export.PredictOutput)
    self.assertCountEqual(outputs["predict"].outputs, head_lib.BINARY_PREDICT_KEYS)
    classification = outputs["classification"]
    self.assertIsInstance(classification, tf.estimator.export.ClassificationOutput)
    classes, scores = self.sess.run([classification.classes, classification.scores])
    self.assertAllEqual(classes, [[b"no", b"yes"]] * 6)
    self.assertAllClose(scores[:, 1], _sigmoid(_Z[:, 0]))
    self.assertAllClose(scores.sum(axis=1), np.ones(6))

  def test_loss_is_the_mean_sigmoid_cross_entropy(self):
    loss, ce, reg = self.sess.run(head_lib.BinaryHead(BINARY_LABELS).loss(
        tf.constant(_Y), tf.constant(_Z), [], []))
    expected = _sigmoid_cross_entropy(_Y[:, None], _Z).mean()
    self.assertAllClose(ce, expected, rtol=1e-6)
    self.assertEqual(reg, 0.0)
    self.assertAllClose(loss, expected, rtol=1e-6)

  def test_label_smoothing_moves_the_targets_toward_one_half(self):
    smoothed = head_lib.BinaryHead(BINARY_LABELS, label_smoothing=0.2).loss(
        tf.constant(_Y), tf.constant(_Z), [], [])[1]
    reference = tf.compat.v1.losses.sigmoid_cross_entropy(
        _Y[:, None], tf.constant(_Z), label_smoothing=0.2)
    smoothed, reference = self.sess.run([smoothed, reference])
    targets = _Y[:, None] * 0.8 + 0.1  # 0 -> 0.1, 1 -> 0.9
    self.assertAllClose(smoothed, _sigmoid_cross_entropy(targets, _Z).mean(), rtol=1e-6)
    self.assertAllClose(smoothed, reference, rtol=1e-6)

  def test_pos_weight_scales_the_positive_term_in_training_only(self):
    head = head_lib.BinaryHead(BINARY_LABELS, pos_weight=3.0)
    ce = head.loss(tf.constant(_Y), tf.constant(_Z), [], [])[1]
    est_spec = head.eval_spec(tf.constant(_Z), tf.constant(_Y), [], [])
    ce = self.sess.run(ce)
    s = _sigmoid(_Z[:, 0])
    expected = -(3.0 * _Y * np.log(s) + (1 - _Y) * np.log(1 - s)).mean()
    self.assertAllClose(ce, expected, rtol=1e-5)
    got = _run_metrics(self.sess, est_spec)
    self.assertAllClose(got["average_loss"], _sigmoid_cross_entropy(_Y, _Z[:, 0]).mean(),
                        rtol=1e-5)

  def test_eval_spec_reports_the_binary_metrics(self):
    head = head_lib.BinaryHead(BINARY_LABELS, label_smoothing=0.1)
    est_spec = head.eval_spec(tf.constant(_Z), tf.constant(_Y[:, None]), [], [])
    loss = self.sess.run(est_spec.loss)
    got = _run_metrics(self.sess, est_spec)
    self.assertCountEqual(got, [
        "accuracy", "average_loss", "auc", "auc_precision_recall", "precision", "recall",
        "label/mean", "prediction/mean", "accuracy_baseline", "confusion_matrix"])
    # Class ids 1 0 1 0 1 1 against labels 1 0 0 0 1 1: TN 2, FP 1, FN 0, TP 3.
    self.assertAllEqual(got["confusion_matrix"], [[2, 1], [0, 3]])
    self.assertAllClose(got["accuracy"], 5 / 6)
    self.assertAllClose(got["precision"], 3 / 4)
    self.assertAllClose(got["recall"], 1.0)
    # Positives 0.88 0.5 0.73 against negatives 0.27 0.62 0.05: only 0.5 < 0.62 is out of order.
    self.assertAllClose(got["auc"], 8 / 9, atol=1e-2)
    self.assertAllClose(got["label/mean"], 0.5)
    self.assertAllClose(got["accuracy_baseline"], 0.5)
    self.assertAllClose(got["prediction/mean"], _sigmoid(_Z).mean())
    # average_loss is unsmoothed; the spec's loss is the smoothed training objective.
    self.assertAllClose(got["average_loss"], _sigmoid_cross_entropy(_Y, _Z[:, 0]).mean(),
                        rtol=1e-5)
    self.assertAllClose(loss, _sigmoid_cross_entropy(_Y * 0.9 + 0.05, _Z[:, 0]).mean(),
                        rtol=1e-5)

  @parameterized.named_parameters(("two", 2), ("negative", -1))
  def test_labels_other_than_0_and_1_fail_when_run(self, bad):
    head = head_lib.BinaryHead(BINARY_LABELS)
    self.assertAllEqual(self.sess.run(head.checked_labels(tf.constant([[0], [1]]))), [0, 1])
    checked = head.checked_labels(tf.constant([0, bad, 1]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "binary labels must be 0 or 1 \\(0: no, 1: yes\\)"):
      self.sess.run(checked)

  def test_fractional_float_labels_fail_when_run(self):
    head = head_lib.BinaryHead(BINARY_LABELS)
    self.assertAllEqual(self.sess.run(head.checked_labels(tf.constant([0.0, 1.0]))), [0, 1])
    checked = head.checked_labels(tf.constant([0.0, 0.7]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "binary labels must be 0"):
      self.sess.run(checked)

  @parameterized.named_parameters(
      ("three_names", dict(label_names=("a", "b", "c")), "exactly 2 label names"),
      ("one_name", dict(label_names=("a",)), "exactly 2 label names"),
      ("threshold_0", dict(threshold=0.0), "threshold must be in \\(0, 1\\)"),
      ("threshold_1", dict(threshold=1.0), "threshold must be in \\(0, 1\\)"),
      ("pos_weight", dict(pos_weight=0.0), "pos_weight must be > 0"),
      ("smoothing", dict(label_smoothing=1.0), "label_smoothing must be in \\[0, 1\\)"))
  def test_constructor_rejects(self, kwargs, message):
    kwargs = dict(kwargs)
    names = kwargs.pop("label_names", BINARY_LABELS)
    with self.assertRaisesRegex(ValueError, message):
      head_lib.BinaryHead(names, **kwargs)

  def test_logits_of_two_columns_are_rejected(self):
    with self.assertRaisesRegex(ValueError, "binary head takes logits of shape \\[batch, 1\\]"):
      head_lib.BinaryHead(BINARY_LABELS).predictions(tf.zeros([4, 2]))


_X_R = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, -1.0], [-1.0, 3.0]], np.float32)
_Y_R = np.array([1.0, 2.5, -0.5, 4.0], np.float32)
_F_R = np.array([[1.5], [2.0], [-0.5], [2.0]], np.float32)  # squared errors 0.25 0.25 0 4


class RegressionHeadTest(HeadTestBase):

  def test_predictions_are_the_logits(self):
    p = self.sess.run(head_lib.RegressionHead(label_dimension=2).predictions(
        tf.constant(_X_R)))
    self.assertEqual(tuple(p), head_lib.REGRESSION_PREDICT_KEYS)
    self.assertAllEqual(p["predictions"], _X_R)

  def test_export_outputs_regress_one_value_per_example(self):
    est_spec = head_lib.RegressionHead().predict_spec(tf.constant(_F_R))
    outputs = est_spec.export_outputs
    self.assertCountEqual(outputs, ["serving_default", "predict", "regression"])
    self.assertIsInstance(outputs["serving_default"], tf.estimator.export.PredictOutput)
    self.assertIsInstance(outputs["predict"], tf.estimator.export.PredictOutput)
    regression = outputs["regression"]
    self.assertIsInstance(regression, tf.estimator.export.RegressionOutput)
    self.assertEqual(regression.value.shape.as_list(), [4])
    self.assertAllEqual(self.sess.run(regression.value), _F_R[:, 0])

  def test_many_values_per_example_have_no_regression_output(self):
    outputs = head_lib.RegressionHead(label_dimension=2).predict_spec(
        tf.constant(_X_R)).export_outputs
    self.assertCountEqual(outputs, ["serving_default", "predict"])

  def test_loss_and_metrics_are_the_squared_error(self):
    head = head_lib.RegressionHead()
    loss, mse, reg = head.loss(head.checked_labels(tf.constant(_Y_R)), tf.constant(_F_R), [], [])
    est_spec = head.eval_spec(tf.constant(_F_R), tf.constant(_Y_R[:, None]), [], [])
    loss, mse, reg, eval_loss = self.sess.run([loss, mse, reg, est_spec.loss])
    self.assertAllClose(mse, 4.5 / 4)
    self.assertEqual(reg, 0.0)
    self.assertAllClose(loss, 4.5 / 4)
    self.assertAllClose(eval_loss, 4.5 / 4)
    got = _run_metrics(self.sess, est_spec)
    self.assertCountEqual(got, ["average_loss", "rmse", "mae", "label/mean", "prediction/mean"])
    self.assertAllClose(got["average_loss"], 4.5 / 4)
    self.assertAllClose(got["rmse"], np.sqrt(4.5 / 4))
    self.assertAllClose(got["mae"], 3.0 / 4)
    self.assertAllClose(got["label/mean"], _Y_R.mean())
    self.assertAllClose(got["prediction/mean"], _F_R.mean())

  def test_many_values_per_example_average_over_every_value(self):
    head = head_lib.RegressionHead(label_dimension=2)
    labels = _X_R + np.array([[1.0, 0.0]], np.float32)  # one error of 1 per example
    est_spec = head.eval_spec(tf.constant(_X_R), tf.constant(labels), [], [])
    got = _run_metrics(self.sess, est_spec)
    self.assertAllClose(got["average_loss"], 0.5)
    self.assertAllClose(got["mae"], 0.5)
    self.assertAllClose(self.sess.run(est_spec.loss), 0.5)

  @parameterized.named_parameters(("nan", np.nan), ("inf", np.inf), ("minus_inf", -np.inf))
  def test_non_finite_labels_fail_when_run(self, bad):
    checked = head_lib.RegressionHead().checked_labels(tf.constant([1.0, bad, 2.0]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "regression labels must be finite"):
      self.sess.run(checked)

  def test_labels_are_float_rows_of_the_label_dimension(self):
    checked = head_lib.RegressionHead().checked_labels(tf.constant([1, 2, 3]))
    self.assertEqual(checked.dtype, tf.float32)
    self.assertAllEqual(self.sess.run(checked), [[1.0], [2.0], [3.0]])

  @parameterized.named_parameters(("flat_for_two", 2, [4]), ("three_for_two", 2, [4, 3]),
                                  ("rank_3", 1, [4, 1, 1]))
  def test_labels_of_the_wrong_shape_are_rejected(self, dimension, shape):
    with self.assertRaisesRegex(ValueError, "regression labels must have shape"):
      head_lib.RegressionHead(label_dimension=dimension).checked_labels(tf.zeros(shape))

  @parameterized.named_parameters(("zero", 0), ("float", 1.0), ("bool", True))
  def test_label_dimension_must_be_a_positive_int(self, dimension):
    with self.assertRaisesRegex(ValueError, "label_dimension must be an int >= 1"):
      head_lib.RegressionHead(label_dimension=dimension)


def _heads():
  """One head of each kind, with the fixed logits and labels of its tests."""
  return {
      "multiclass": (head_lib.ClassificationHead(LABELS), _logits(6), _labels(6)),
      "binary": (head_lib.BinaryHead(BINARY_LABELS), _Z, _Y),
      "regression": (head_lib.RegressionHead(), np.concatenate([_F_R, _F_R[:2]]),
                     np.concatenate([_Y_R, _Y_R[:2]])),
  }


_KINDS = (("multiclass", "multiclass"), ("binary", "binary"), ("regression", "regression"))
_WEIGHTS = np.array([1.0, 2.0, 0.0, 3.0, 1.0, 1.0], np.float32)


class ContractTest(HeadTestBase):
  """What the model_fn builder relies on of every head, whatever its kind."""

  @parameterized.named_parameters(
      ("multiclass", "multiclass", 3, "accuracy", True),
      ("binary", "binary", 1, "auc", True),
      ("regression", "regression", 1, "average_loss", False))
  def test_kind_dimension_and_headline_metric(self, kind, dimension, headline, higher):
    head, logits, labels = _heads()[kind]
    self.assertEqual(head.label_kind, kind)
    self.assertEqual(head.logits_dimension, dimension)
    self.assertEqual(head.headline_metric, headline)
    self.assertEqual(head.higher_is_better, higher)
    est_spec = head.eval_spec(tf.constant(logits), tf.constant(labels), [], [])
    self.assertIn(head.headline_metric, est_spec.eval_metric_ops)
    self.assertCountEqual(est_spec.predictions, head.predict_keys)
    self.assertEqual(tuple(head.predictions(tf.constant(logits))), head.predict_keys)

  @parameterized.named_parameters(*_KINDS)
  def test_l1_l2_and_model_losses_regularize_every_head_alike(self, kind):
    head, logits, labels = _heads()[kind]
    penalized = head_lib.make_head(kind, getattr(head, "label_names", ()), l1=0.001, l2=0.01)
    kernel = np.arange(-3, 3, dtype=np.float32).reshape(2, 3) / 4
    weights = [tf.Variable(kernel, name="kernel"), tf.Variable([1.0, -2.0], name="bias")]
    labels = head.checked_labels(tf.constant(labels))
    loss, data_loss, reg = penalized.loss(labels, tf.constant(logits), weights,
                                          [tf.constant(0.25)])
    self.assertEqual(loss.op.name, "losses/total")
    plain = head.loss(labels, tf.constant(logits), weights, [])
    self._init()
    (base, base_data, _), (loss, data_loss, reg) = self.sess.run(
        [plain, (loss, data_loss, reg)])
    expected = 0.01 * np.sum(kernel ** 2) + 0.001 * np.sum(abs(kernel)) + 0.25
    self.assertAllClose(reg, expected, rtol=1e-5)
    self.assertAllClose(data_loss, base_data)
    self.assertAllClose(loss - base, expected, rtol=1e-5)

  @parameterized.named_parameters(*_KINDS)
  def test_without_example_weights_no_weight_ops_are_built(self, kind):
    head, logits, labels = _heads()[kind]
    head.eval_spec(tf.constant(logits), tf.constant(labels), [], [])
    names = [op.name for op in tf.compat.v1.get_default_graph().get_operations()]
    self.assertEmpty([n for n in names if "example_weights" in n or "weighted" in n])

  @parameterized.named_parameters(*_KINDS)
  def test_weights_of_one_change_nothing(self, kind):
    head, logits, labels = _heads()[kind]
    plain = head.eval_spec(tf.constant(logits), tf.constant(labels), [], [])
    ones = head.eval_spec(tf.constant(logits), tf.constant(labels), [], [],
                          example_weights=tf.ones([6, 1]))
    plain_loss, ones_loss = self.sess.run([plain.loss, ones.loss])
    self.assertAllClose(ones_loss, plain_loss)
    plain, ones = _run_metrics(self.sess, plain), _run_metrics(self.sess, ones)
    self.assertCountEqual(ones, plain)
    for name in plain:
      self.assertAllClose(ones[name], plain[name], msg=name)

  @parameterized.named_parameters(*_KINDS)
  def test_a_weight_of_k_counts_as_k_copies_in_loss_and_metrics(self, kind):
    head, logits, labels = _heads()[kind]
    weighted = head.eval_spec(tf.constant(logits), tf.constant(labels), [], [],
                              example_weights=tf.constant(_WEIGHTS))
    copies = _WEIGHTS.astype(int)
    repeated = head.eval_spec(tf.constant(np.repeat(logits, copies, axis=0)),
                              tf.constant(np.repeat(labels, copies, axis=0)), [], [])
    weighted_loss, repeated_loss = self.sess.run([weighted.loss, repeated.loss])
    self.assertAllClose(weighted_loss, repeated_loss, rtol=1e-5)
    weighted, repeated = _run_metrics(self.sess, weighted), _run_metrics(self.sess, repeated)
    self.assertCountEqual(weighted, repeated)
    for name in repeated:
      if name != "confusion_matrix":  # it counts examples, whatever they weigh
        self.assertAllClose(weighted[name], repeated[name], rtol=1e-5, msg=name)

  @parameterized.named_parameters(*_KINDS)
  def test_weighted_loss_is_the_weighted_mean(self, kind):
    head, logits, labels = _heads()[kind]
    checked = head.checked_labels(tf.constant(labels))
    per_example = [head.loss(checked[i:i + 1], tf.constant(logits[i:i + 1]), [], [])[1]
                   for i in range(6)]
    weighted = head.loss(checked, tf.constant(logits), [], [],
                         example_weights=tf.constant(_WEIGHTS))[1]
    zero = head.loss(checked, tf.constant(logits), [], [], example_weights=tf.zeros([6]))[1]
    per_example, weighted, zero = self.sess.run([per_example, weighted, zero])
    self.assertAllClose(weighted, np.sum(_WEIGHTS * per_example) / np.sum(_WEIGHTS), rtol=1e-5)
    self.assertEqual(zero, 0.0)  # a batch of weight 0 adds nothing, not NaN

  @parameterized.named_parameters(
      ("negative", [1.0, -1.0, 1.0, 1.0, 1.0, 1.0], "example weights must be >= 0"),
      ("nan", [1.0, np.nan, 1.0, 1.0, 1.0, 1.0], "example weights must be finite"),
      ("too_few", [1.0], "example weights must have one weight per example"))
  def test_bad_example_weights_fail_when_run(self, weights, message):
    for kind, (head, logits, labels) in _heads().items():
      with self.subTest(kind):
        w = tf.compat.v1.placeholder(tf.float32, [None])
        loss = head.loss(head.checked_labels(tf.constant(labels)), tf.constant(logits), [], [],
                         example_weights=w)[0]
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
          self.sess.run(loss, {w: weights})

  def test_example_weights_of_two_columns_are_rejected(self):
    head, logits, labels = _heads()["binary"]
    with self.assertRaisesRegex(ValueError, "example weights must have shape"):
      head.eval_spec(tf.constant(logits), tf.constant(labels), [], [],
                     example_weights=tf.ones([6, 2]))

  @parameterized.named_parameters(*_KINDS)
  def test_eval_needs_labels(self, kind):
    head, logits, _ = _heads()[kind]
    with self.assertRaisesRegex(ValueError, "TRAIN and EVAL need labels"):
      head.eval_spec(tf.constant(logits), None, [], [])

  @parameterized.named_parameters(
      ("multiclass", "multiclass", "accuracy", 4 / 6),
      ("binary", "binary", "accuracy", 5 / 6),
      ("regression", "regression", "average_loss", (4.5 + 0.5) / 6))
  def test_train_scalars_overlay_the_eval_metric_of_one_batch(self, kind, name, value):
    head, logits, labels = _heads()[kind]
    if kind == "multiclass":
      logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 0, 0]]  # labels 0 1 2 0 1 2
    scalars = head.train_scalars(head.checked_labels(tf.constant(labels)),
                                 head.predictions(tf.constant(logits)))
    self.assertCountEqual(scalars, [name])
    self.assertAllClose(self.sess.run(scalars[name]), value)

  @parameterized.named_parameters(*_KINDS)
  def test_train_spec_carries_the_loss_and_train_op(self, kind):
    head, logits, labels = _heads()[kind]
    loss = head.loss(head.checked_labels(tf.constant(labels)), tf.constant(logits), [], [])[0]
    train_op = tf.no_op(name="train")
    est_spec = head.train_spec(loss, train_op, head.predictions(tf.constant(logits)))
    self.assertEqual(est_spec.mode, tf.estimator.ModeKeys.TRAIN)
    self.assertIs(est_spec.loss, loss)
    self.assertIs(est_spec.train_op, train_op)
    self.assertCountEqual(est_spec.predictions, head.predict_keys)


class MakeHeadTest(HeadTestBase):

  @parameterized.named_parameters(
      ("multiclass", "multiclass", LABELS, {"top_k": 2, "label_smoothing": 0.1},
       head_lib.ClassificationHead),
      ("binary", "binary", BINARY_LABELS, {"threshold": 0.3, "pos_weight": 2.0},
       head_lib.BinaryHead),
      ("regression", "regression", (), {"label_dimension": 3}, head_lib.RegressionHead),
      ("regression_named", "regression", ("price",), {}, head_lib.RegressionHead))
  def test_builds_the_head_of_the_kind_with_its_options(self, kind, names, options, head_cls):
    head = head_lib.make_head(kind, names, l2=0.01, **options)
    self.assertIsInstance(head, head_cls)
    self.assertEqual(head.label_kind, kind)
    for name, value in options.items():
      self.assertEqual(getattr(head, name, getattr(head, f"_{name}", None)), value)

  def test_every_label_kind_has_a_head(self):
    self.assertEqual(head_lib.LABEL_KINDS, ("multiclass", "binary", "regression"))
    for kind in head_lib.LABEL_KINDS:
      names = BINARY_LABELS if kind == "binary" else LABELS if kind == "multiclass" else ()
      self.assertEqual(head_lib.make_head(kind, names).label_kind, kind)

  def test_options_of_other_kinds_are_ignored_at_their_defaults(self):
    head = head_lib.make_head("multiclass", LABELS, threshold=0.5, pos_weight=1.0,
                              label_dimension=1)
    self.assertIsInstance(head, head_lib.ClassificationHead)
    head = head_lib.make_head("regression", (), label_smoothing=0.0, top_k=5, threshold=0.5)
    self.assertIsInstance(head, head_lib.RegressionHead)

  def test_unknown_kind_names_it_and_the_known_kinds(self):
    with self.assertRaisesRegex(ValueError, "unknown label kind 'ordinal'; the known kinds are "
                                "multiclass, binary, regression"):
      head_lib.make_head("ordinal", LABELS)

  @parameterized.named_parameters(
      ("threshold_for_multiclass", "multiclass", LABELS, {"threshold": 0.7},
       "threshold=0.7 does not apply to a multiclass head"),
      ("smoothing_for_regression", "regression", (), {"label_smoothing": 0.1},
       "label_smoothing=0.1 does not apply to a regression head"),
      ("top_k_for_binary", "binary", BINARY_LABELS, {"top_k": 3},
       "top_k=3 does not apply to a binary head"),
      ("unknown_option", "binary", BINARY_LABELS, {"momentum": 0.9},
       "unknown head option 'momentum'"),
      ("three_binary_names", "binary", LABELS, {}, "exactly 2 label names"),
      ("regression_names", "regression", ("x", "y"), {},
       "label_dimension=1 takes no label names or 1"))
  def test_rejects(self, kind, names, options, message):
    with self.assertRaisesRegex(ValueError, message):
      head_lib.make_head(kind, names, **options)


def _train(head, features, labels, steps=200, learning_rate=0.5):
  """Fits logits = features @ kernel + bias by plain gradient descent on `head.loss`; returns the
  head's eval metrics of the fitted model on the same data."""
  x = tf.constant(features)
  kernel = tf.compat.v1.get_variable("kernel", [features.shape[1], head.logits_dimension],
                                     initializer=tf.compat.v1.zeros_initializer())
  bias = tf.compat.v1.get_variable("bias", [head.logits_dimension],
                                   initializer=tf.compat.v1.zeros_initializer())
  logits = tf.matmul(x, kernel) + bias
  loss = head.loss(head.checked_labels(tf.constant(labels)), logits, [kernel, bias], [])[0]
  train_op = tf.compat.v1.train.GradientDescentOptimizer(learning_rate).minimize(loss)
  est_spec = head.eval_spec(logits, tf.constant(labels), [kernel, bias], [])
  sess = tf.compat.v1.get_default_session()
  sess.run(tf.compat.v1.global_variables_initializer())
  first = sess.run(loss)
  for _ in range(steps):
    sess.run(train_op)
  return first, _run_metrics(sess, est_spec)


class TrainingTest(HeadTestBase):
  """The loss's gradient is right: gradient descent on it fits the simplest model of each kind."""

  def test_logistic_regression_separates_separable_data(self):
    x = np.random.default_rng(1).standard_normal((200, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0]) + 0.3 > 0).astype(np.int64)
    first, got = _train(head_lib.BinaryHead(BINARY_LABELS), x, y)
    self.assertAllClose(first, np.log(2.0))  # zero logits: p = 0.5 everywhere
    self.assertGreater(got["auc"], 0.95)
    self.assertGreater(got["accuracy"], 0.9)
    self.assertLess(got["average_loss"], 0.3)

  def test_linear_regression_fits_a_noisy_line(self):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0]) + 0.5 + 0.05 * rng.standard_normal(200)).astype(np.float32)
    first, got = _train(head_lib.RegressionHead(), x, y, learning_rate=0.1)
    self.assertAllClose(first, np.mean(y ** 2), rtol=1e-5)  # zero predictions
    self.assertLess(got["average_loss"], 0.05)
    self.assertAllClose(got["rmse"], np.sqrt(got["average_loss"]), rtol=1e-4)

  def test_softmax_regression_separates_three_clusters(self):
    rng = np.random.default_rng(3)
    y = np.arange(300) % 3
    centers = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    x = (centers[y] + rng.standard_normal((300, 2))).astype(np.float32)
    _, got = _train(head_lib.ClassificationHead(LABELS), x, y, learning_rate=0.5)
    self.assertGreater(got["accuracy"], 0.9)


if __name__ == "__main__":
  tf.test.main()
