"""The models x modes matrix: every registered model, through the shared model_fn builder, in
TRAIN / EVAL / PREDICT, on every input kind it reads, and every model that reads tables on each
label kind. Also batch-norm updates, mixed precision, checkpoint compatibility between the
TRAIN and EVAL graphs, and per-model hparam checks."""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers
from model_fns import model_fn as model_fn_lib
from model_fns import registry
from tests.testing import models as mt

TRAIN, EVAL, PREDICT = (tf.estimator.ModeKeys.TRAIN, tf.estimator.ModeKeys.EVAL,
                        tf.estimator.ModeKeys.PREDICT)
BATCH = 6

# Tiny but non-trivial settings, given in the --hparams syntax the training app passes on.
TINY = {
    "linear": "embedding_dim=8,combiner=sqrtn",
    "dnn": "hidden_units=[16,8],batch_norm=true,dropout=0.1",
    "lenet5": "filters=[4,8],dense_units=[16],dropout=0.1,padding=same,resize_to=0",
    "resnet": "depth=8,base_filters=4",
    "rnn": "units=[8,8],bidirectional=true,pooling=mean",
    "wide_deep": ("hidden_units=[16,8],batch_norm=true,dropout=0.1,embedding_dim=4,"
                  "crosses=[c*n,c*tags],cross_buckets=64,text_hash_buckets=32"),
}

# Tables without vocabulary files (hashed and int64 categoricals), so they need no temp dir;
# the columns the TINY crosses name. A column named after each table model checks that a
# serving placeholder of that name leaves the model's variable scope alone.
_NUMERIC_STATS = {"count": 10, "missing": 2, "mean": 0.5, "std": 0.3, "min": 0.0, "max": 1.0,
                  "quantiles": [0.25, 0.5, 0.75], "is_integer": False}
_TABLE_COLUMNS = (
    fs.numeric_column("n", stats=_NUMERIC_STATS),
    fs.numeric_column("v", shape=(2,)),
    fs.categorical_column("c", hash_buckets=7),
    fs.categorical_column("i", dtype="int64"),
    fs.categorical_column("tags", multivalent=True, max_values=3, hash_buckets=11),
    fs.text_column("text"),
    fs.numeric_column("dnn"), fs.numeric_column("linear"), fs.categorical_column("wide_deep"),
)
TABLE_SPECS = {
    fs.MULTICLASS: fs.table_spec(_TABLE_COLUMNS, ("a", "b", "c")),
    fs.BINARY: fs.table_spec(_TABLE_COLUMNS, ("no", "yes"), label_kind=fs.BINARY,
                             weight_key="w"),
    fs.REGRESSION: fs.table_spec(_TABLE_COLUMNS, label_kind=fs.REGRESSION),
}
_HEADLINE = {fs.MULTICLASS: "accuracy", fs.BINARY: "auc", fs.REGRESSION: "average_loss"}
_PREDICT_KEYS = {fs.MULTICLASS: {"class_ids", "probabilities", "logits"},
                 fs.BINARY: {"class_ids", "probabilities", "logits", "logistic"},
                 fs.REGRESSION: {"predictions"}}


def table_batch(spec, n, seed=0):
  """Random rows of `spec`'s columns (NaNs, missing and padded values included) and labels;
  with a weight_key, WEIGHT_KEY holds weights in [0, 2)."""
  rng = np.random.default_rng(seed)
  features = {}
  for f in spec.features:
    if f.role == fs.NUMERIC:
      x = rng.random((n, *f.shape)).astype(np.float32)
      x[rng.random(x.shape) < 0.2] = np.nan
    elif f.role == fs.TEXT:
      words = np.array(["red", "Green", "blue", "sky"])
      x = np.array([[" ".join(rng.choice(words, rng.integers(0, 4)))] for _ in range(n)])
    elif f.dtype == "int64":
      x = rng.integers(-1, 20, size=(n, f.size))
    else:
      x = rng.choice(np.array([b"", b"a", b"b", b"c", b"d"]), size=(n, f.size))
    features[f.name] = np.asarray(x)
  if spec.label_kind == fs.REGRESSION:
    labels = rng.standard_normal(n).astype(np.float32)
  else:
    labels = np.arange(n, dtype=np.int64) % spec.num_classes
  if spec.weight_key:
    features[fs.WEIGHT_KEY] = (2 * rng.random(n)).astype(np.float32)
  return features, labels


def _table_matrix():
  for name in registry.names():
    if fs.TABLE in registry.get(name).input_kinds:
      for kind in TABLE_SPECS:
        for mode in (TRAIN, EVAL, PREDICT):
          yield {"testcase_name": f"{name}_{kind}_{mode}", "name": name, "kind": kind,
                 "mode": mode}


def _matrix():
  for name, kind in mt.model_kinds():
    for mode in (TRAIN, EVAL, PREDICT):
      yield {"testcase_name": f"{name}_{kind}_{mode}", "name": name, "kind": kind, "mode": mode}


def _tiny(name):
  d = registry.get(name)
  return hparams_lib.override(d.hparams_cls(), TINY[name])


def _model_fn(name, spec, hp=None):
  d = registry.get(name)
  return model_fn_lib.build_model_fn(d, hp or _tiny(name), spec, model_fn_lib.TrainConfig())


class MatrixTest(tf.test.TestCase, parameterized.TestCase):

  def test_tiny_hparams_cover_every_model(self):
    self.assertCountEqual(TINY, registry.names())

  @parameterized.named_parameters(*_matrix())
  def test_estimator_spec(self, name, kind, mode):
    spec = mt.SPECS[kind]
    features, labels = mt.make_batch(spec, BATCH)
    with tf.Graph().as_default():
      tf.compat.v1.set_random_seed(1)
      f, l = mt.to_tensors(features, labels)
      est = mt.call_model_fn(_model_fn(name, spec), f, None if mode == PREDICT else l, mode)
      self.assertEqual(est.mode, mode)
      model_vars = tf.compat.v1.global_variables()
      weights = [v for v in model_vars if v.name.startswith(f"{name}/")]
      self.assertNotEmpty(weights)
      with self.session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.local_variables_initializer(),
                  tf.compat.v1.tables_initializer()])
        if mode == PREDICT:
          self._check_predict(sess, est, spec)
        elif mode == EVAL:
          self._check_eval(sess, est)
        else:
          self._check_train(sess, est)

  def _check_predict(self, sess, est, spec):
    self.assertContainsSubset(["class_ids", "probabilities", "logits"], est.predictions)
    p = est.predictions
    self.assertEqual(p["class_ids"].dtype, tf.int64)
    self.assertEqual(p["probabilities"].dtype, tf.float32)
    self.assertEqual(p["logits"].dtype, tf.float32)
    self.assertNotEmpty(est.export_outputs)
    out = sess.run(p)
    self.assertEqual(out["class_ids"].shape, (BATCH,))
    self.assertEqual(out["probabilities"].shape, (BATCH, spec.num_classes))
    self.assertEqual(out["logits"].shape, (BATCH, spec.num_classes))
    self.assertAllClose(out["probabilities"].sum(axis=1), np.ones(BATCH), atol=1e-5)
    self.assertAllEqual(out["class_ids"], out["logits"].argmax(axis=1))

  def _check_eval(self, sess, est):
    self.assertIn("accuracy", est.eval_metric_ops)
    self.assertEqual(est.loss.dtype, tf.float32)
    self.assertEqual(est.loss.shape.rank, 0)
    updates = {k: u for k, (_, u) in est.eval_metric_ops.items()}
    values = {k: v for k, (v, _) in est.eval_metric_ops.items()}
    sess.run(updates)
    out = sess.run(values)
    self.assertBetween(float(out["accuracy"]), 0.0, 1.0)
    for k, v in out.items():
      self.assertTrue(np.all(np.isfinite(v)), k)
    # Nothing trains in EVAL: no batch-norm update may sneak into the graph.
    self.assertEmpty(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS))

  def _check_train(self, sess, est):
    self.assertIsNotNone(est.train_op)
    step = tf.compat.v1.train.get_global_step()
    self.assertEqual(sess.run(step), 0)
    loss, _ = sess.run([est.loss, est.train_op])
    self.assertTrue(np.isfinite(loss))
    self.assertEqual(sess.run(step), 1)
    sess.run(est.train_op)
    self.assertEqual(sess.run(step), 2)


class TableMatrixTest(tf.test.TestCase, parameterized.TestCase):
  """Every model that reads tables, on each label kind: the head's predictions, metrics and
  train op, with the example weights kept from the model."""

  def test_the_table_models(self):
    self.assertEqual([n for n in registry.names() if fs.TABLE in registry.get(n).input_kinds],
                     ["dnn", "linear", "wide_deep"])

  @parameterized.named_parameters(*_table_matrix())
  def test_estimator_spec(self, name, kind, mode):
    spec = TABLE_SPECS[kind]
    features, labels = table_batch(spec, BATCH)
    if mode == PREDICT:
      features.pop(fs.WEIGHT_KEY, None)
    d = registry.get(name)
    seen = {}

    def build_logits(f, s, hp, training):
      seen["keys"] = set(f)
      return d.build_logits(f, s, hp, training)

    model_def = dataclasses.replace(d, build_logits=build_logits)
    with tf.Graph().as_default():
      tf.compat.v1.set_random_seed(1)
      f, l = mt.to_tensors(features, labels)
      model_fn = model_fn_lib.build_model_fn(model_def, _tiny(name), spec,
                                             model_fn_lib.TrainConfig())
      est = mt.call_model_fn(model_fn, f, None if mode == PREDICT else l, mode)
      self.assertEqual(seen["keys"], {c.name for c in spec.features})  # no weight, no label
      self.assertNotEmpty(tf.compat.v1.trainable_variables())
      for v in tf.compat.v1.trainable_variables():
        self.assertRegex(v.op.name, rf"^{name}/[A-Za-z0-9_/]+$")
      with self.session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.local_variables_initializer(),
                  tf.compat.v1.tables_initializer()])
        if mode == PREDICT:
          self.assertEqual(set(est.predictions), _PREDICT_KEYS[kind])
          out = sess.run(est.predictions)
          logits = out.get("logits", out.get("predictions"))
          self.assertEqual(logits.shape, (BATCH, spec.logits_dimension))
          self.assertTrue(np.all(np.isfinite(logits)))
        elif mode == EVAL:
          self.assertIn(_HEADLINE[kind], est.eval_metric_ops)
          sess.run({k: u for k, (_, u) in est.eval_metric_ops.items()})
          out = sess.run({k: v for k, (v, _) in est.eval_metric_ops.items()})
          for k, v in out.items():
            self.assertTrue(np.all(np.isfinite(v)), k)
        else:
          step = tf.compat.v1.train.get_global_step()
          losses = [sess.run([est.loss, est.train_op])[0] for _ in range(2)]
          self.assertTrue(np.all(np.isfinite(losses)))
          self.assertEqual(sess.run(step), 2)

  @parameterized.named_parameters(("dnn", "dnn"), ("linear", "linear"),
                                  ("wide_deep", "wide_deep"))
  def test_train_checkpoint_restores_under_serving_placeholders(self, name):
    """The serving receiver names its placeholders after the columns (one is named like the
    model): the PREDICT graph still has the TRAIN graph's variable names, and predicts what a
    PREDICT graph over constants predicts."""
    spec = TABLE_SPECS[fs.MULTICLASS]
    features, labels = table_batch(spec, BATCH)
    path = os.path.join(self.create_tempdir().full_path, "model.ckpt")
    with tf.Graph().as_default():
      f, l = mt.to_tensors(features, labels)
      est = mt.call_model_fn(_model_fn(name, spec), f, l, TRAIN)
      with self.session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.tables_initializer()])
        sess.run(est.train_op)
        tf.compat.v1.train.Saver().save(sess, path)
        trainable = {v.op.name for v in tf.compat.v1.trainable_variables()}
        train_names = {v.op.name for v in tf.compat.v1.global_variables()}  # + optimizer slots
    logits = []
    for placeholders in (False, True):
      with tf.Graph().as_default():
        if placeholders:
          inputs = {k: tf.compat.v1.placeholder(s.dtype, s.shape, k)
                    for k, s in spec.serving_signature().items()}
          feed = {inputs[k]: v for k, v in features.items()}
        else:
          inputs, feed = mt.to_tensors(features, labels)[0], None
        est = mt.call_model_fn(_model_fn(name, spec), inputs, None, PREDICT)
        names = {v.op.name for v in tf.compat.v1.global_variables()}
        self.assertContainsSubset(trainable, names)
        self.assertContainsSubset(names, train_names)
        with self.session() as sess:
          sess.run(tf.compat.v1.tables_initializer())
          tf.compat.v1.train.Saver().restore(sess, path)
          logits.append(sess.run(est.predictions["logits"], feed))
    self.assertTrue(np.all(np.isfinite(logits[0])))
    self.assertAllClose(logits[1], logits[0], rtol=1e-5)


class BatchNormTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("dnn", "dnn"), ("resnet", "resnet"))
  def test_moving_averages_update_through_train_op(self, name):
    spec = mt.IMAGE_SPEC
    features, labels = mt.make_batch(spec, 8)
    with tf.Graph().as_default():
      f, l = mt.to_tensors(features, labels)
      est = mt.call_model_fn(_model_fn(name, spec), f, l, TRAIN)
      moving = [v for v in tf.compat.v1.global_variables() if "moving_mean" in v.name]
      self.assertNotEmpty(moving)
      self.assertNotIn(moving[0], tf.compat.v1.trainable_variables())
      update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
      # Two assigns (mean, variance) per batch-norm layer.
      self.assertLen(update_ops, 2 * len(moving))
      with self.session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        initial = sess.run(moving)
        sess.run(update_ops)
        updated = sess.run(moving)
        sess.run(est.train_op)
        trained = sess.run(moving)
    for v, a, b, c in zip(moving, initial, updated, trained):
      self.assertNotAllClose(a, b, msg=f"UPDATE_OPS did not move {v.name}")
      # The shared builder's train_op must run UPDATE_OPS too, or eval sees untrained stats.
      self.assertNotAllClose(b, c, msg=f"train_op did not move {v.name}")


class MixedPrecisionTest(tf.test.TestCase, parameterized.TestCase):
  """Models build their layers without explicit dtypes, so the builder's mixed policy makes
  them compute in 16 bits while the logits they return stay float32."""

  @parameterized.named_parameters(
      *[(f"{n}_{k}_{p}", n, k, p) for n, k in mt.model_kinds((fs.IMAGE, fs.TOKENS))
        for p in ("float16", "bfloat16") if p == "float16" or k == fs.IMAGE])
  def test_trains_in_16_bits(self, name, kind, precision):
    spec = mt.SPECS[kind]
    features, labels = mt.make_batch(spec, BATCH)
    d = registry.get(name)
    with tf.Graph().as_default() as g:
      f, l = mt.to_tensors(features, labels)
      model_fn = model_fn_lib.build_model_fn(d, _tiny(name), spec,
                                             model_fn_lib.TrainConfig(precision=precision))
      est = mt.call_model_fn(model_fn, f, l, TRAIN)
      dtype = tf.as_dtype(precision)
      products = [op for op in g.get_operations() if op.name.startswith(f"{name}/")
                  and op.type in ("MatMul", "Conv2D") and op.outputs[0].dtype == dtype]
      self.assertNotEmpty(products, f"no {precision} MatMul/Conv2D in {name}")
      self.assertEqual(est.predictions["logits"].dtype, tf.float32)
      kernels = [v for v in tf.compat.v1.trainable_variables() if v.op.name.startswith(name)]
      self.assertTrue(all(v.dtype.base_dtype == tf.float32 for v in kernels))
      with self.session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        losses = [sess.run([est.loss, est.train_op])[0] for _ in range(3)]
    self.assertTrue(np.all(np.isfinite(losses)), losses)


class CheckpointTest(tf.test.TestCase, parameterized.TestCase):
  """A checkpoint written by the TRAIN graph restores into the PREDICT graph (what EVAL and
  serving build too: training=False) with a plain tf.compat.v1.train.Saver: same variable
  names in every mode."""

  @parameterized.named_parameters(*[(f"{n}_{k}", n, k) for n, k in mt.model_kinds()])
  def test_train_checkpoint_restores_in_predict(self, name, kind):
    spec = mt.SPECS[kind]
    features, labels = mt.make_batch(spec, BATCH)
    path = os.path.join(self.create_tempdir().full_path, "model.ckpt")
    with tf.Graph().as_default():
      f, l = mt.to_tensors(features, labels)
      est = mt.call_model_fn(_model_fn(name, spec), f, l, TRAIN)
      trainable = {v.op.name for v in tf.compat.v1.trainable_variables()}
      train_names = {v.op.name for v in tf.compat.v1.global_variables()}  # + optimizer slots
      with self.session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(est.train_op)
        tf.compat.v1.train.Saver().save(sess, path)
        model_vars = [v for v in tf.compat.v1.global_variables()
                      if v.op.name.startswith(f"{name}/")]
        saved = dict(zip((v.op.name for v in model_vars), sess.run(model_vars)))
    with tf.Graph().as_default():
      f, _ = mt.to_tensors(features, labels)
      est = mt.call_model_fn(_model_fn(name, spec), f, None, PREDICT)
      model_vars = [v for v in tf.compat.v1.global_variables()
                    if v.op.name.startswith(f"{name}/")]
      names = {v.op.name for v in model_vars}
      self.assertContainsSubset(trainable, names)
      self.assertContainsSubset(names, train_names)
      with self.session() as sess:
        tf.compat.v1.train.Saver(var_list=model_vars).restore(sess, path)
        restored = sess.run(model_vars)
        logits = sess.run(est.predictions["logits"])
    self.assertTrue(np.all(np.isfinite(logits)))
    for v, value in zip(model_vars, restored):
      self.assertAllEqual(value, saved[v.op.name], msg=v.op.name)


class HParamsChecksTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("dnn_dropout", "dnn", "dropout=1.5", "dropout"),
      ("dnn_activation", "dnn", "activation=sparkle", "activation"),
      ("lenet5_padding", "lenet5", "padding=full", "padding"),
      ("resnet_depth", "resnet", "depth=15", "depth"),
      ("rnn_cell", "rnn", "cell=vanilla", "cell"),
      ("linear_combiner", "linear", "combiner=max", "combiner"),
      ("linear_crosses", "linear", "crosses=[a]", "crosses"),
      ("wide_deep_crosses", "wide_deep", "crosses=[a*a]", "crosses"),
      ("wide_deep_optimizer", "wide_deep", "linear_optimizer=lbfgs", "linear_optimizer"),
      ("wide_deep_rate", "wide_deep", "dnn_learning_rate=0", "dnn_learning_rate"),
      ("wide_deep_buckets", "wide_deep", "cross_buckets=0", "cross_buckets"),
  )
  def test_bad_value_names_key(self, name, text, key):
    d = registry.get(name)
    with self.assertRaisesRegex(hparams_lib.HParamsError, f"{name} hparam {key}="):
      hparams_lib.override(d.hparams_cls(), text)


class InputKindTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("lenet5", "lenet5"), ("resnet", "resnet"), ("rnn", "rnn"))
  def test_models_without_table_support_refuse_tables_clearly(self, name):
    spec = TABLE_SPECS[fs.BINARY]
    self.assertFalse(registry.get(name).supports(spec))
    features, _ = table_batch(spec, 2)
    with tf.Graph().as_default():
      with self.assertRaisesRegex(layers.UnsupportedInputError,
                                  f"model '{name}' reads .* inputs; the dataset is a table"):
        registry.get(name).build_logits(
            {k: tf.constant(v) for k, v in features.items() if k != fs.WEIGHT_KEY}, spec,
            _tiny(name), False)

  def test_wide_deep_reads_only_tables(self):
    with tf.Graph().as_default():
      with self.assertRaisesRegex(layers.UnsupportedInputError, "'wide_deep' reads table"):
        registry.get("wide_deep").build_logits({"image": tf.zeros([1, 8, 8, 1])}, mt.IMAGE_SPEC,
                                               _tiny("wide_deep"), False)

  @parameterized.named_parameters(("lenet5", "lenet5"), ("resnet", "resnet"))
  def test_image_models_reject_tokens(self, name):
    with tf.Graph().as_default():
      features, _ = mt.make_batch(mt.TOKENS_SPEC, 2)
      with self.assertRaisesRegex(layers.UnsupportedInputError, f"{name}.*image.*tokens"):
        registry.get(name).build_logits(mt.to_tensors(features, np.zeros(2))[0],
                                        mt.TOKENS_SPEC, _tiny(name), False)

  def test_lenet5_valid_padding_too_small_says_how_to_fix(self):
    hp = hparams_lib.override(registry.get("lenet5").hparams_cls(), "padding=valid,resize_to=0")
    with tf.Graph().as_default():
      with self.assertRaisesRegex(layers.UnsupportedInputError, "too small.*resize_to=32"):
        registry.get("lenet5").build_logits({"image": tf.zeros([1, 8, 8, 1])}, mt.IMAGE_SPEC,
                                            hp, False)

  def test_lenet5_default_is_classic_geometry(self):
    hp = registry.get("lenet5").hparams_cls()
    with tf.Graph().as_default():
      logits = registry.get("lenet5").build_logits({"image": tf.zeros([2, 8, 8, 1])},
                                                   mt.IMAGE_SPEC, hp, False)
      kernel = [v for v in tf.compat.v1.global_variables() if v.op.name == "lenet5/dense_0/kernel"]
      self.assertEqual(logits.shape.as_list(), [2, 10])
      # 32 -> conv 28 -> pool 14 -> conv 10 -> pool 5: 5 * 5 * 16 inputs to the first dense layer.
      self.assertEqual(kernel[0].shape.as_list(), [400, 120])

  def test_rnn_ignores_padding(self):
    """Appending padding to a token row leaves the logits unchanged (masking)."""
    spec = mt.TOKENS_SPEC
    ids = np.array([[5, 6, 7, 0, 0, 0, 0], [5, 6, 7, 8, 9, 0, 0]], np.int64)
    short = np.array([[5, 6, 7, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0, 0]], np.int64)
    for pooling in ("last", "mean"):
      hp = hparams_lib.override(registry.get("rnn").hparams_cls(),
                                f"units=[8],bidirectional=true,pooling={pooling}")
      with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(3)
        x = tf.compat.v1.placeholder(tf.int64, [None, 7])
        logits = registry.get("rnn").build_logits({"tokens": x}, spec, hp, False)
        with self.session() as sess:
          sess.run(tf.compat.v1.global_variables_initializer())
          a = sess.run(logits, {x: ids})
          b = sess.run(logits, {x: short})
      self.assertAllClose(a[0], b[0], atol=1e-6, msg=pooling)  # same real tokens
      self.assertNotAllClose(a[1], b[1], msg=pooling)  # more real tokens change the output


if __name__ == "__main__":
  tf.test.main()
