"""model_fn: the shared builder's composition on the tiny model (tests/model_fns/tiny_model.py):
its TrainConfig, the specs it takes from the head, optimizers, batch norm, mixed precision,
summaries and a real Estimator's train, evaluate and export. The head and the K-step loop
have tests of their own (head_test.py, multi_step_test.py)."""

import dataclasses
import glob
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from model_fns import model_fn as mf
from model_fns import registry
from tests.testing import tiny_model

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT

_SPEC = tiny_model.SPEC
_CAPTURED = tiny_model.CAPTURED


class ModelFnTestBase(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    _CAPTURED.clear()

  def _build(self, mode, cfg=mf.TrainConfig(), hp=tiny_model.TinyHParams(), spec=_SPEC, n=24):
    """Builds `mode`'s EstimatorSpec in a fresh graph and an initialized session for it."""
    graph = tf.Graph()
    with graph.as_default():
      tf.keras.utils.set_random_seed(1)  # graph seed, and numpy's, which Keras initializers use
      self.global_step = tf.compat.v1.train.get_or_create_global_step()
      features, labels = tiny_model.batch(spec, n)
      self.labels = labels
      self.features = features
      est_spec = mf.build_model_fn(tiny_model.MODEL, hp, spec, cfg)(
          {k: tf.constant(v) for k, v in features.items()},
          None if mode == PREDICT else tf.constant(labels), mode)
      self.sess = tf.compat.v1.Session(graph=graph)
      self.addCleanup(self.sess.close)
      self.sess.run([tf.compat.v1.global_variables_initializer(),
                     tf.compat.v1.local_variables_initializer()])
    self.graph = graph
    return est_spec

  def _var(self, name):
    (v,) = [v for v in self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            if v.op.name == name]
    return self.sess.run(v)

  def _train(self, est_spec, steps):
    losses = [self.sess.run([est_spec.train_op, est_spec.loss])[1] for _ in range(steps)]
    return losses, self.sess.run(self.global_step)


class TrainConfigTest(tf.test.TestCase, parameterized.TestCase):

  def test_unknown_optimizer_is_a_user_error_listing_the_known_ones(self):
    with self.assertRaisesRegex(
        mf.TrainConfigError,
        r"--optimizer='lamb' is unknown; known: adagrad, adam, adamw, ftrl, momentum, rmsprop, "
        r"sgd"):
      mf.TrainConfig(optimizer="lamb")
    self.assertTrue(issubclass(mf.TrainConfigError, errors.UserInputError))

  @parameterized.named_parameters(
      ("learning_rate", dict(learning_rate=0.0), "--learning_rate=0.0: expected > 0"),
      ("schedule", dict(lr_schedule="linear"), "--lr_schedule='linear' is unknown"),
      ("precision", dict(precision="float64"), "known: float32, float16, bfloat16"),
      ("smoothing", dict(label_smoothing=1.0), r"--label_smoothing=1.0: expected in \[0, 1\)"),
      ("cosine_span", dict(lr_schedule="cosine", warmup_steps=100, decay_steps=100),
       r"--decay_steps=100: expected > warmup_steps \(100\)"),
      ("piecewise_needs_boundaries", dict(lr_schedule="piecewise"), "--boundaries=\\[\\]"),
      ("boundaries_order", dict(boundaries=(20, 10)), "strictly increasing"),
      ("negative_l2", dict(l2=-1.0), "--l2=-1.0: expected >= 0"),
      ("top_k", dict(top_k=0), "--top_k=0"),
  )
  def test_bad_values_name_the_flag(self, kwargs, message):
    with self.assertRaisesRegex(mf.TrainConfigError, message):
      mf.TrainConfig(**kwargs)

  def test_defaults_and_list_boundaries(self):
    cfg = mf.TrainConfig(lr_schedule="piecewise", boundaries=[10, 20])
    self.assertEqual(cfg.boundaries, (10, 20))
    self.assertEqual((mf.TrainConfig().optimizer, mf.TrainConfig().learning_rate), ("adam", 1e-3))
    self.assertIn('"optimizer": "adam"', mf.TrainConfig().to_json())


class SpecsTest(ModelFnTestBase):

  def test_each_mode_gets_the_heads_spec_with_the_configured_top_k(self):
    predict = self._build(PREDICT, n=5)
    self.assertIsNone(predict.train_op)
    self.assertCountEqual(predict.predictions, mf.PREDICT_KEYS)
    self.assertCountEqual(predict.export_outputs, [mf.SERVING_DEFAULT, mf.PREDICT_OUTPUT,
                                                   mf.CLASSIFICATION_OUTPUT])
    classes = self.sess.run(predict.export_outputs[mf.CLASSIFICATION_OUTPUT].classes)
    self.assertAllEqual(classes, [[b"ant", b"bee", b"cat"]] * 5)
    evaluate = self._build(EVAL, mf.TrainConfig(top_k=1))
    self.assertIn("top_1_accuracy", evaluate.eval_metric_ops)
    self.assertIn("per_class/precision_cat", evaluate.eval_metric_ops)
    self.sess.run([u for _, u in evaluate.eval_metric_ops.values()])
    matrix, accuracy = self.sess.run([evaluate.eval_metric_ops["confusion_matrix"][0],
                                      evaluate.eval_metric_ops["accuracy"][0]])
    self.assertEqual(matrix.sum(), 24)
    self.assertAllClose(accuracy, np.trace(matrix) / 24)
    train = self._build(TRAIN)
    self.assertCountEqual(train.predictions, mf.PREDICT_KEYS)
    self.assertIsNotNone(train.train_op)

  def test_wrong_logits_shape_is_refused(self):
    bad = registry.ModelDef("bad", tiny_model.TinyHParams, lambda f, s, h, t: tf.zeros([2, 5]))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, r"model 'bad' returned logits of shape .*\[batch, 3\]"):
        mf.build_model_fn(bad, tiny_model.TinyHParams(), _SPEC, mf.TrainConfig())(
            {"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)

  def test_the_model_is_described_once_per_process(self):
    # Hparams no other test uses: the description is keyed by model and hparams.
    hp = tiny_model.TinyHParams(gain=1.23)
    cfg = mf.TrainConfig()
    model_fn = mf.build_model_fn(tiny_model.MODEL, hp, _SPEC, cfg)
    with self.assertLogs("absl", level="DEBUG") as logs:
      with tf.Graph().as_default():
        model_fn({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)
    text = "\n".join(logs.output)
    self.assertRegex(text, r"hidden/kernel\s+\[16, 8\]\s+float32\s+128")
    self.assertRegex(text, r"logits/bias\s+\[3\]\s+float32\s+3")
    self.assertIn("163 trainable parameters", text)  # 16*8 + 8 + 8*3 + 3
    self.assertIn('"optimizer": "adam"', text)
    # The same model built again (each evaluation and export does): not described again.
    again = mf.build_model_fn(tiny_model.MODEL, hp, _SPEC, mf.TrainConfig(learning_rate=0.5))
    with tf.Graph().as_default():
      with self.assertNoLogs("absl", level="INFO"):
        model_fn({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)
        again({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)
    # Other hparams are another model: described.
    other = mf.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(gain=3.21), _SPEC, cfg)
    with self.assertLogs("absl", level="INFO") as logs:
      with tf.Graph().as_default():
        other({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)
    self.assertIn("163 trainable parameters", "\n".join(logs.output))


class LossTest(ModelFnTestBase):

  def _loss_and_weights(self, cfg, hp):
    est_spec = self._build(EVAL, cfg, hp)
    return self.sess.run([est_spec.loss, est_spec.predictions["logits"]]) + [
        self._var("hidden/kernel"), self._var("logits/kernel")]

  def test_the_loss_is_the_heads_on_the_models_kernels_and_collection_losses(self):
    # Smoothing, L1 and L2 from the TrainConfig; biases are not penalized.
    loss, logits, k1, k2 = self._loss_and_weights(
        mf.TrainConfig(label_smoothing=0.3, l1=0.001, l2=0.01),
        tiny_model.TinyHParams(collection_l2=0.1))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = np.full((24, 3), 0.1)
    targets[np.arange(24), self.labels] += 0.7
    cross_entropy = -(targets * log_p).sum(axis=1).mean()
    penalty = (0.01 * (np.sum(k1 ** 2) + np.sum(k2 ** 2))
               + 0.001 * (np.sum(abs(k1)) + np.sum(abs(k2))) + 0.1 * np.sum(k1 ** 2))
    self.assertAllClose(loss, cross_entropy + penalty, rtol=1e-5)


class TrainTest(ModelFnTestBase):

  @parameterized.named_parameters(
      ("sgd", "sgd", 0.5), ("momentum", "momentum", 0.1), ("adam", "adam", 0.02),
      ("adamw", "adamw", 0.02), ("rmsprop", "rmsprop", 0.05), ("adagrad", "adagrad", 0.3),
      ("ftrl", "ftrl", 0.3))
  def test_each_optimizer_learns_and_steps_count(self, optimizer, lr):
    est_spec = self._build(TRAIN, mf.TrainConfig(optimizer=optimizer, learning_rate=lr))
    losses, step = self._train(est_spec, 60)
    self.assertEqual(step, 60)
    self.assertLess(losses[-1], 0.6 * losses[0])

  def test_clipping_bounds_the_update(self):
    cfg = mf.TrainConfig(optimizer="sgd", learning_rate=1.0, clip_norm=0.01)
    est_spec = self._build(TRAIN, cfg)
    names = [v.op.name for v in self.graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)]
    before = [self._var(n) for n in names]
    self.sess.run(est_spec.train_op)
    after = [self._var(n) for n in names]
    step_norm = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    self.assertAllClose(step_norm, 0.01, rtol=1e-4)  # sgd: update = lr * clipped gradient

  @parameterized.named_parameters(("keras_layer_updates", "keras"),
                                  ("update_ops_collection", "update_ops"),
                                  ("compat_v1_layers", "compat_v1"))
  def test_batch_norm_moving_averages_update_once_per_step(self, style):
    est_spec = self._build(TRAIN, mf.TrainConfig(), tiny_model.TinyHParams(batch_norm=style))
    self.assertAllEqual(self._var("bn/moving_mean"), np.zeros(8))
    _, hidden = self.sess.run([est_spec.train_op, _CAPTURED["hidden"]])
    # One update with momentum 0.9 from 0: 0.1 * the batch mean (twice would give 0.19 *).
    self.assertAllClose(self._var("bn/moving_mean"), 0.1 * hidden.mean(axis=0), rtol=1e-4)
    variance = self._var("bn/moving_variance")
    self.sess.run(est_spec.train_op)
    self.assertNotAllClose(self._var("bn/moving_variance"), variance)

  def test_eval_leaves_batch_norm_statistics_alone(self):
    est_spec = self._build(EVAL, mf.TrainConfig(), tiny_model.TinyHParams(batch_norm="keras"))
    self.sess.run([u for _, u in est_spec.eval_metric_ops.values()])
    self.assertAllEqual(self._var("bn/moving_mean"), np.zeros(8))


class MixedPrecisionTest(ModelFnTestBase):

  @parameterized.named_parameters(("float16", "float16", tf.float16),
                                  ("bfloat16", "bfloat16", tf.bfloat16))
  def test_tiny_model_trains(self, precision, compute_dtype):
    cfg = mf.TrainConfig(precision=precision, learning_rate=0.05)
    est_spec = self._build(TRAIN, cfg, tiny_model.TinyHParams(batch_norm="keras"))
    self.assertEqual(_CAPTURED["hidden"].dtype, compute_dtype)
    self.assertEqual(est_spec.predictions["logits"].dtype, tf.float32)
    for v in self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
      if v.dtype.base_dtype.is_floating:  # float32 variables, 16-bit computation only
        self.assertEqual(v.dtype.base_dtype, tf.float32, v.op.name)
    try:
      losses, step = self._train(est_spec, 40)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
      if "kernel" in str(e).lower():
        self.skipTest(f"this CPU build has no {precision} kernel: {e.message[:200]}")
      raise
    self.assertEqual(step, 40)
    self.assertLess(losses[-1], 0.6 * losses[0])
    self.assertEqual(tf.keras.mixed_precision.global_policy().name, "float32")  # restored

  def test_float16_overflow_skips_the_step_but_counts_it(self):
    cfg = mf.TrainConfig(precision="float16", optimizer="sgd", learning_rate=0.1)
    # Logits * 1000 in float16: with the initial loss scale 2**15 the gradients overflow.
    est_spec = self._build(TRAIN, cfg, tiny_model.TinyHParams(gain=1000.0))
    kernel = self._var("hidden/kernel")
    self.assertEqual(self._var("loss_scale/current_loss_scale"), 2.0 ** 15)
    self.sess.run(est_spec.train_op)
    self.assertEqual(self.sess.run(self.global_step), 1)
    self.assertAllEqual(self._var("hidden/kernel"), kernel)
    self.assertEqual(self._var("loss_scale/current_loss_scale"), 2.0 ** 14)


def _labelled(kind):
  """tiny_model.VECTOR_SPEC with a label of `kind` (binary: its two names; regression: none)."""
  return dataclasses.replace(tiny_model.VECTOR_SPEC, label_kind=kind,
                             label_names=() if kind == fs.REGRESSION else ("no", "yes"))


class LabelKindTest(ModelFnTestBase):
  """The head follows the dataset's label kind; the model's output is spec.logits_dimension."""

  @parameterized.named_parameters(
      ("binary", fs.BINARY, {"class_ids", "probabilities", "logits", "logistic"}, "auc",
       "accuracy", "losses/cross_entropy"),
      ("regression", fs.REGRESSION, {"predictions"}, "rmse", "average_loss",
       "losses/squared_error"))
  def test_each_mode_uses_the_head_of_the_label_kind(self, kind, keys, metric, train_scalar,
                                                    data_loss):
    spec = _labelled(kind)
    features, labels = tiny_model.batch(tiny_model.VECTOR_SPEC, 8)
    if kind == fs.REGRESSION:
      labels = labels.astype(np.float32) * 2.0 - 1.0
    linear = registry.get("linear")
    model_fn = mf.build_model_fn(linear, linear.hparams_cls(), spec, mf.TrainConfig())
    with tf.Graph().as_default() as graph:
      f = {k: tf.constant(v) for k, v in features.items()}
      predict = model_fn(f, None, PREDICT)
      self.assertEqual(set(predict.predictions), keys)
      evaluate = model_fn(f, tf.constant(labels), EVAL)
      self.assertIn(metric, evaluate.eval_metric_ops)
      train = model_fn(f, tf.constant(labels), TRAIN)
      tags = {tf.get_static_value(op.op.inputs[0]).item().decode()
              for op in graph.get_collection(tf.compat.v1.GraphKeys.SUMMARIES)}
      self.assertContainsSubset([train_scalar, data_loss, "learning_rate"], tags)
      with tf.compat.v1.Session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.local_variables_initializer()])
        out = sess.run(predict.predictions)
        sess.run(train.train_op)
    self.assertEqual(out["logits" if "logits" in keys else "predictions"].shape, (8, 1))

  def test_logits_of_the_wrong_width_for_the_label_kind_are_refused(self):
    # tiny_model's logits are num_classes (2) wide; a binary head takes one logit.
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, r"expected \[batch, 1\]"):
        mf.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(), _labelled(fs.BINARY),
                          mf.TrainConfig())({"x": tf.zeros([2, 16])}, None, PREDICT)

  def test_a_head_setting_that_does_not_apply_is_a_config_error(self):
    with self.assertRaisesRegex(mf.TrainConfigError,
                                "regression label: label_smoothing=0.1 does not apply"):
      mf.build_model_fn(registry.get("linear"), registry.get("linear").hparams_cls(),
                        _labelled(fs.REGRESSION), mf.TrainConfig(label_smoothing=0.1))

  def test_example_weights_are_used_only_when_the_spec_has_a_weight_key(self):
    features, labels = tiny_model.batch(tiny_model.VECTOR_SPEC, 8)
    weights = np.array([1, 0, 0, 0, 0, 0, 0, 0], np.float32)
    losses, per_examples = {}, {}
    for weight_key in ("", "w"):
      spec = dataclasses.replace(tiny_model.VECTOR_SPEC, weight_key=weight_key)
      with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(1)
        f = {k: tf.constant(v) for k, v in features.items()}
        f[fs.WEIGHT_KEY] = tf.constant(weights)
        est = mf.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(), spec,
                                mf.TrainConfig())(f, tf.constant(labels), EVAL)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=est.predictions["logits"])
        with tf.compat.v1.Session() as sess:
          sess.run(tf.compat.v1.global_variables_initializer())
          losses[weight_key], per_examples[weight_key] = sess.run([est.loss, per_example])
    self.assertAllClose(losses[""], per_examples[""].mean(), rtol=1e-5)  # weights ignored
    self.assertAllClose(losses["w"], per_examples["w"][0], rtol=1e-5)
    self.assertNotAllClose(losses["w"], per_examples["w"].mean())


class SummariesTest(ModelFnTestBase):

  def _tags(self):
    """The tags of the graph's summary ops (their first input is the constant tag)."""
    return {tf.get_static_value(op.op.inputs[0]).item().decode()
            for op in self.graph.get_collection(tf.compat.v1.GraphKeys.SUMMARIES)}

  def test_train_summaries_in_the_graph(self):
    self._build(TRAIN, mf.TrainConfig(weight_histograms=True, precision="float16"))
    tags = self._tags()
    for tag in ("learning_rate", "accuracy", "gradient_global_norm", "losses/cross_entropy",
                "losses/regularization", "loss_scale", "input_images",
                "weights/hidden/kernel", "weights/logits/bias"):
      self.assertIn(tag, tags)

  def test_no_images_for_vectors_and_no_histograms_unless_asked(self):
    self._build(TRAIN, mf.TrainConfig(), spec=tiny_model.VECTOR_SPEC)
    tags = self._tags()
    self.assertIn("learning_rate", tags)
    self.assertNotIn("input_images", tags)
    self.assertFalse([t for t in tags if t.startswith("weights/")])
    self.assertNotIn("loss_scale", tags)


class EstimatorRoundTripTest(tf.test.TestCase):
  """Train, evaluate and export through a real Estimator."""

  def test_train_evaluate_export(self):
    model_dir = self.create_tempdir().full_path
    cfg = mf.TrainConfig(optimizer="momentum", learning_rate=0.1, lr_schedule="cosine",
                         warmup_steps=2, decay_steps=6)
    features, labels = tiny_model.batch(_SPEC, 24)

    def input_fn():
      return tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(8)

    estimator = tf.estimator.Estimator(
        mf.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(batch_norm="keras"), _SPEC,
                          cfg),
        config=tf.estimator.RunConfig(model_dir=model_dir, save_summary_steps=1,
                                      log_step_count_steps=None, tf_random_seed=3))
    estimator.train(input_fn, max_steps=6)

    events = glob.glob(os.path.join(model_dir, "events.out.tfevents.*"))
    scalars, images = {}, set()
    for path in events:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.HasField("simple_value"):
            scalars.setdefault(value.tag, {})[event.step] = value.simple_value
          elif value.HasField("image"):
            images.add(value.tag)
    for tag in ("loss", "learning_rate", "accuracy", "gradient_global_norm",
                "losses/cross_entropy"):
      self.assertIn(tag, scalars)
    self.assertTrue(any(t.startswith("input_images") for t in images), images)
    # The learning-rate curve: steps 0..5 with warm-up 2 then cosine to 0 at step 6.
    # The summary at step s shows the rate used by step s + 1 (the Estimator tags it with the
    # incremented step): warm-up (s + 1) / 2, then cosine from step 2 to 0 at step 6.
    expected = [0.05, 0.1, 0.1, 0.1 * 0.5 * (1 + np.cos(np.pi / 4)), 0.05,
                0.1 * 0.5 * (1 + np.cos(3 * np.pi / 4))]
    self.assertAllClose([scalars["learning_rate"][s + 1] for s in range(6)], expected, rtol=1e-5)

    results = estimator.evaluate(lambda: input_fn().take(3), name="check")
    self.assertEqual(results["confusion_matrix"].shape, (3, 3))
    self.assertEqual(results["confusion_matrix"].sum(), 24)
    self.assertIn("per_class/precision_bee", results)
    self.assertIn("top_2_accuracy", results)
    self.assertNotAllClose(tf.train.load_variable(model_dir, "bn/moving_mean"), np.zeros(8))

    # A classification signature needs one string input (TF Serving's Classify API takes
    # tf.Examples), so the receiver parses serialized examples with the spec.
    def receiver_fn():
      serialized = tf.compat.v1.placeholder(tf.string, [None], name="examples")
      parsed, _ = _SPEC.parse_batch(serialized, with_label=False)
      return tf.estimator.export.ServingInputReceiver(parsed, {"examples": serialized})

    export_dir = estimator.export_saved_model(self.create_tempdir().full_path, receiver_fn)
    loaded = tf.saved_model.load(export_dir)
    self.assertCountEqual(loaded.signatures, ["serving_default", "predict", "classification"])
    examples = tf.constant([_SPEC.encode({"image": x}, 0) for x in features["image"][:4]])
    out = loaded.signatures["serving_default"](examples=examples)
    self.assertAllClose(out["probabilities"].numpy().sum(axis=1), np.ones(4), rtol=1e-5)
    self.assertEqual(out["class_ids"].dtype, tf.int64)
    self.assertAllEqual(out["class_ids"], out["logits"].numpy().argmax(axis=1))
    self.assertAllEqual(loaded.signatures["predict"](examples=examples)["class_ids"],
                        out["class_ids"])
    classified = loaded.signatures["classification"](inputs=examples)
    self.assertAllEqual(classified["classes"].numpy(), [[b"ant", b"bee", b"cat"]] * 4)
    self.assertAllClose(classified["scores"], out["probabilities"])


if __name__ == "__main__":
  tf.test.main()
