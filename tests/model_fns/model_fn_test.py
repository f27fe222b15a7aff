"""model_fn: the shared builder's specs, loss, optimizers, batch norm, mixed precision,
summaries and exports, on a tiny model defined here."""

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

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT

# float32 pixels in [0, 1], as the model sees them after preprocessing.
_SPEC = fs.FeatureSpec(features=(fs.Feature("image", "float32", (4, 4, 1)),), input_key="image",
                       kind=fs.IMAGE, label_names=("ant", "bee", "cat"), value_range=(0, 1))
_VECTOR_SPEC = fs.FeatureSpec(features=(fs.Feature("x", "float32", (16,), "float_list"),),
                              input_key="x", kind=fs.VECTOR, label_names=("no", "yes"))


@dataclasses.dataclass(frozen=True)
class TinyHParams:
  """The test model: flatten -> dense(hidden) -> [batch norm] -> relu -> dense logits * gain.

  Attributes:
    hidden: hidden width.
    batch_norm: "" (none), "keras" (tf.keras layer; its updates stay in layer.updates only),
      "update_ops" (tf.keras layer, updates added to UPDATE_OPS as model_fns/layers.py does),
      "compat_v1" (tf.compat.v1.layers.batch_normalization, which fills UPDATE_OPS itself).
    gain: multiplies the logits inside the model (in the compute dtype).
    collection_l2: adds collection_l2 * sum(hidden kernel ** 2) to REGULARIZATION_LOSSES, as
      tf.compat.v1-style models do.
  """
  hidden: int = 8
  batch_norm: str = ""
  gain: float = 1.0
  collection_l2: float = 0.0


_CAPTURED = {}  # tensors of the last graph built, for exact checks (reset by each test)


def _build_logits(features, spec, hp, training):
  x = tf.keras.layers.Flatten(name="flatten")(features[spec.input_key])
  dense = tf.keras.layers.Dense(hp.hidden, name="hidden")
  h = dense(x)
  _CAPTURED["hidden"] = h
  if hp.collection_l2:
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES,
                                   hp.collection_l2 * tf.reduce_sum(dense.kernel ** 2))
  if hp.batch_norm in ("keras", "update_ops"):
    layer = tf.keras.layers.BatchNormalization(momentum=0.9, name="bn")
    h = layer(h, training=training)
    if hp.batch_norm == "update_ops" and training:
      for op in layer.updates:
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, op)
  elif hp.batch_norm == "compat_v1":
    h = tf.compat.v1.layers.batch_normalization(h, momentum=0.9, training=training, name="bn")
  h = tf.nn.relu(h)
  return tf.keras.layers.Dense(spec.num_classes, name="logits")(h) * hp.gain


_MODEL = registry.ModelDef("tiny", TinyHParams, _build_logits)


def _batch(spec, n=24, seed=0):
  """A learnable batch: each label is the arg-max of three fixed projections of the input."""
  rng = np.random.default_rng(seed)
  shape = spec.input_feature.shape
  x = rng.random((n, *shape)).astype(np.float32)
  proj = np.random.default_rng(99).standard_normal((int(np.prod(shape)), spec.num_classes))
  labels = np.argmax((x.reshape(n, -1) - 0.5) @ proj, axis=1).astype(np.int64)
  return {spec.input_key: x}, labels


class ModelFnTestBase(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    _CAPTURED.clear()

  def _build(self, mode, cfg=mf.TrainConfig(), hp=TinyHParams(), spec=_SPEC, n=24):
    """Builds `mode`'s EstimatorSpec in a fresh graph and an initialized session for it."""
    graph = tf.Graph()
    with graph.as_default():
      tf.keras.utils.set_random_seed(1)  # graph seed, and numpy's, which Keras initializers use
      self.global_step = tf.compat.v1.train.get_or_create_global_step()
      features, labels = _batch(spec, n)
      self.labels = labels
      self.features = features
      est_spec = mf.build_model_fn(_MODEL, hp, spec, cfg)(
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
        r"--optimizer='lamb' is unknown; known: adagrad, adam, adamw, momentum, rmsprop, sgd"):
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

  def test_predict_predictions_and_three_export_outputs(self):
    est_spec = self._build(PREDICT, n=5)
    self.assertIsNone(est_spec.train_op)
    p = self.sess.run(est_spec.predictions)
    self.assertEqual(p["class_ids"].dtype, np.int64)
    self.assertEqual(p["probabilities"].dtype, np.float32)
    self.assertEqual(p["logits"].dtype, np.float32)
    self.assertEqual(p["probabilities"].shape, (5, 3))
    self.assertAllClose(p["probabilities"].sum(axis=1), np.ones(5))
    self.assertAllEqual(p["class_ids"], p["logits"].argmax(axis=1))
    outputs = est_spec.export_outputs
    self.assertCountEqual(outputs, ["serving_default", "predict", "classification"])
    self.assertIsInstance(outputs["serving_default"], tf.estimator.export.PredictOutput)
    self.assertIsInstance(outputs["predict"], tf.estimator.export.PredictOutput)
    classification = outputs["classification"]
    self.assertIsInstance(classification, tf.estimator.export.ClassificationOutput)
    classes, scores = self.sess.run([classification.classes, classification.scores])
    self.assertAllEqual(classes, [[b"ant", b"bee", b"cat"]] * 5)
    self.assertAllClose(scores, p["probabilities"])

  def test_eval_reports_every_metric(self):
    est_spec = self._build(EVAL)
    self.assertCountEqual(est_spec.eval_metric_ops, [
        "accuracy", "top_2_accuracy", "average_loss", "confusion_matrix",
        "precision/ant", "precision/bee", "precision/cat",
        "recall/ant", "recall/bee", "recall/cat"])
    self.sess.run([u for _, u in est_spec.eval_metric_ops.values()])
    matrix, accuracy = self.sess.run([est_spec.eval_metric_ops["confusion_matrix"][0],
                                      est_spec.eval_metric_ops["accuracy"][0]])
    self.assertEqual(matrix.sum(), 24)
    self.assertAllClose(accuracy, np.trace(matrix) / 24)

  def test_wrong_logits_shape_is_refused(self):
    bad = registry.ModelDef("bad", TinyHParams, lambda f, s, h, t: tf.zeros([2, 5]))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, r"model 'bad' returned logits of shape .*\[batch, 3\]"):
        mf.build_model_fn(bad, TinyHParams(), _SPEC, mf.TrainConfig())(
            {"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)

  def test_variables_are_logged_once(self):
    model_fn = mf.build_model_fn(_MODEL, TinyHParams(), _SPEC, mf.TrainConfig())
    with self.assertLogs("absl", level="INFO") as logs:
      with tf.Graph().as_default():
        model_fn({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)
    text = "\n".join(logs.output)
    self.assertRegex(text, r"hidden/kernel\s+\[16, 8\]\s+float32\s+128")
    self.assertRegex(text, r"logits/bias\s+\[3\]\s+float32\s+3")
    self.assertIn("163 trainable parameters", text)  # 16*8 + 8 + 8*3 + 3
    self.assertIn('"optimizer": "adam"', text)
    with tf.Graph().as_default():
      with self.assertNoLogs("absl", level="INFO"):
        model_fn({"image": tf.zeros([2, 4, 4, 1])}, None, PREDICT)


class LossTest(ModelFnTestBase):

  def _loss_and_kernels(self, cfg):
    est_spec = self._build(EVAL, cfg)
    return self.sess.run([est_spec.loss, est_spec.predictions["logits"]]) + [
        self._var("hidden/kernel"), self._var("logits/kernel"), self._var("logits/bias")]

  def test_l1_l2_add_exactly_their_penalty_on_kernels(self):
    base, _, k1, k2, _ = self._loss_and_kernels(mf.TrainConfig())
    with_l2, _, k1b, k2b, _ = self._loss_and_kernels(mf.TrainConfig(l2=0.01, l1=0.001))
    self.assertAllClose(k1, k1b)  # same seed, same initial weights
    expected = 0.01 * (np.sum(k1 ** 2) + np.sum(k2 ** 2)) + 0.001 * (np.sum(abs(k1)) + np.sum(abs(k2)))
    self.assertAllClose(with_l2 - base, expected, rtol=1e-5)

  def test_label_smoothing(self):
    loss, logits, *_ = self._loss_and_kernels(mf.TrainConfig(label_smoothing=0.3))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = np.full((24, 3), 0.1)
    targets[np.arange(24), self.labels] += 0.7
    self.assertAllClose(loss, -(targets * log_p).sum(axis=1).mean(), rtol=1e-5)
    plain, *_ = self._loss_and_kernels(mf.TrainConfig())
    self.assertNotAllClose(plain, loss)


class TrainTest(ModelFnTestBase):

  @parameterized.named_parameters(
      ("sgd", "sgd", 0.5), ("momentum", "momentum", 0.1), ("adam", "adam", 0.02),
      ("adamw", "adamw", 0.02), ("rmsprop", "rmsprop", 0.05), ("adagrad", "adagrad", 0.3))
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
    est_spec = self._build(TRAIN, mf.TrainConfig(), TinyHParams(batch_norm=style))
    self.assertAllEqual(self._var("bn/moving_mean"), np.zeros(8))
    _, hidden = self.sess.run([est_spec.train_op, _CAPTURED["hidden"]])
    # One update with momentum 0.9 from 0: 0.1 * the batch mean (twice would give 0.19 *).
    self.assertAllClose(self._var("bn/moving_mean"), 0.1 * hidden.mean(axis=0), rtol=1e-4)
    variance = self._var("bn/moving_variance")
    self.sess.run(est_spec.train_op)
    self.assertNotAllClose(self._var("bn/moving_variance"), variance)

  def test_eval_leaves_batch_norm_statistics_alone(self):
    est_spec = self._build(EVAL, mf.TrainConfig(), TinyHParams(batch_norm="keras"))
    self.sess.run([u for _, u in est_spec.eval_metric_ops.values()])
    self.assertAllEqual(self._var("bn/moving_mean"), np.zeros(8))


class StepsPerRunTest(tf.test.TestCase, parameterized.TestCase):
  """steps_per_run K: one session.run of the K-step graph is K runs of the one-step graph."""

  def _run(self, cfg, hp, batches, runs):
    """Trains from fixed initial weights; returns (every global variable by name, losses)."""
    graph = tf.Graph()
    with graph.as_default():
      tf.keras.utils.set_random_seed(1)
      global_step = tf.compat.v1.train.get_or_create_global_step()
      k = cfg.steps_per_run
      features = {"image": tf.compat.v1.placeholder(
          tf.float32, ([k] if k > 1 else []) + [None, 4, 4, 1])}
      labels = tf.compat.v1.placeholder(tf.int64, ([k] if k > 1 else []) + [None])
      est_spec = mf.build_model_fn(_MODEL, hp, _SPEC, cfg)(features, labels, TRAIN)
      variables = tf.compat.v1.global_variables()
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for v in tf.compat.v1.trainable_variables():  # the same start for every graph
          sess.run(v.assign(_initial(v.op.name, v.shape)))
        losses = []
        for r in range(runs):
          chunk = batches[r * k:(r + 1) * k]
          xs = np.stack([b[0]["image"] for b in chunk]) if k > 1 else chunk[0][0]["image"]
          ys = np.stack([b[1] for b in chunk]) if k > 1 else chunk[0][1]
          _, loss = sess.run([est_spec.train_op, est_spec.loss],
                             {features["image"]: xs, labels: ys})
          losses.append(loss)
        values = dict(zip([v.op.name for v in variables], sess.run(variables)))
    self.assertEqual(values["global_step"], len(batches))
    return values, losses

  @parameterized.named_parameters(
      ("adam_decaying_lr", mf.TrainConfig(optimizer="adam", learning_rate=0.05,
                                          lr_schedule="exponential", decay_steps=1,
                                          decay_rate=0.5), TinyHParams()),
      ("momentum_batch_norm", mf.TrainConfig(optimizer="momentum", learning_rate=0.1),
       TinyHParams(batch_norm="keras")),
      ("adamw_clipping", mf.TrainConfig(optimizer="adamw", learning_rate=0.05, clip_norm=0.1),
       TinyHParams(batch_norm="update_ops")),
      ("sgd_collection_loss", mf.TrainConfig(optimizer="sgd", learning_rate=0.5),
       TinyHParams(collection_l2=0.1)))
  def test_k_steps_in_one_run_are_k_single_steps(self, cfg, hp):
    batches = [_batch(_SPEC, n=16, seed=s) for s in range(8)]
    single, single_losses = self._run(cfg, hp, batches, runs=8)
    multi, multi_losses = self._run(dataclasses.replace(cfg, steps_per_run=4), hp, batches,
                                    runs=2)
    # The same variables (names a checkpoint holds), the same values after the same 8 steps.
    self.assertEqual(sorted(single), sorted(multi))
    for name in single:
      self.assertAllClose(multi[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # The K-step run reports the loss of its last step.
    self.assertAllClose(multi_losses, [single_losses[3], single_losses[7]], rtol=1e-4)

  def test_a_model_that_builds_different_layers_each_call_is_refused(self):
    calls = []

    def build_logits(features, spec, hp, training):
      calls.append(1)
      x = tf.keras.layers.Flatten()(features[spec.input_key])
      if len(calls) > 1:
        x = tf.keras.layers.Dense(4, name="extra")(x)
      return tf.keras.layers.Dense(spec.num_classes, name="logits")(x)

    model = registry.ModelDef("shifty", TinyHParams, build_logits)
    with tf.Graph().as_default():
      features = {"image": tf.zeros([2, 3, 4, 4, 1])}
      with self.assertRaisesRegex(ValueError, "build_logits must build the same layers"):
        mf.build_model_fn(model, TinyHParams(), _SPEC, mf.TrainConfig(steps_per_run=2))(
            features, tf.zeros([2, 3], tf.int64), TRAIN)

  def test_unstacked_features_are_refused_by_name(self):
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "steps_per_run=2 needs dense stacked batches"):
        mf.build_model_fn(_MODEL, TinyHParams(), _SPEC, mf.TrainConfig(steps_per_run=2))(
            {"image": tf.zeros([2, 4, 4, 1]), "extra": tf.sparse.eye(2)},
            tf.zeros([2, 2], tf.int64), TRAIN)

  def test_stack_batches(self):
    ds = tf.data.Dataset.range(10).batch(2)
    self.assertEqual([b.tolist() for b in mf.stack_batches(ds, 2).as_numpy_iterator()],
                     [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    self.assertIs(mf.stack_batches(ds, 1), ds)

  def test_stacked_batches_are_dealt_to_replicas_as_single_batches_would_be(self):
    # One-step runs on 2 replicas: step t gives batch 2t to replica 0 and 2t + 1 to replica 1.
    # K = 3 stacked: replica 0 must get batches 0, 2, 4 and replica 1 batches 1, 3, 5.
    ds = tf.data.Dataset.range(24).batch(2).map(lambda x: ({"x": x}, x))
    context = tf.distribute.InputContext(num_input_pipelines=1, num_replicas_in_sync=2)
    stacked = mf.stacked_input_fn(lambda input_context=None: ds, 3)(context)
    first, second = list(stacked.take(2).as_numpy_iterator())
    self.assertAllEqual(first[0]["x"], [[0, 1], [4, 5], [8, 9]])
    self.assertAllEqual(second[1], [[2, 3], [6, 7], [10, 11]])
    self.assertEqual(stacked.element_spec[1].shape.as_list(), [3, None])


def _initial(name, shape):
  """Fixed initial weights by variable name."""
  seed = sum(map(ord, name))
  return np.random.default_rng(seed).uniform(-0.5, 0.5, shape.as_list()).astype(np.float32)


class MixedPrecisionTest(ModelFnTestBase):

  @parameterized.named_parameters(("float16", "float16", tf.float16),
                                  ("bfloat16", "bfloat16", tf.bfloat16))
  def test_tiny_model_trains(self, precision, compute_dtype):
    cfg = mf.TrainConfig(precision=precision, learning_rate=0.05)
    est_spec = self._build(TRAIN, cfg, TinyHParams(batch_norm="keras"))
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
    est_spec = self._build(TRAIN, cfg, TinyHParams(gain=1000.0))
    kernel = self._var("hidden/kernel")
    self.assertEqual(self._var("loss_scale/current_loss_scale"), 2.0 ** 15)
    self.sess.run(est_spec.train_op)
    self.assertEqual(self.sess.run(self.global_step), 1)
    self.assertAllEqual(self._var("hidden/kernel"), kernel)
    self.assertEqual(self._var("loss_scale/current_loss_scale"), 2.0 ** 14)


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
    self._build(TRAIN, mf.TrainConfig(), spec=_VECTOR_SPEC)
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
    features, labels = _batch(_SPEC, 24)

    def input_fn():
      return tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(8)

    estimator = tf.estimator.Estimator(
        mf.build_model_fn(_MODEL, TinyHParams(batch_norm="keras"), _SPEC, cfg),
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
    self.assertIn("precision/bee", results)
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
