"""Table models learn, and wide_deep trains its two parts with two optimizers in one train op.

A synthetic table whose label depends on a categorical column (with a vocabulary file) and a
numeric one (with missing values), plus noise columns of every other kind, trains every model
that reads tables for 30 steps in a tf.estimator.Estimator per label kind and must beat chance
clearly on held-out rows. Then the grouped train op of model_fns/model_fn.py on wide_deep:
each group's exact update, one global step per step, steps_per_run, clipping, float16 loss
scaling, and groups that miss a variable; wide_deep's variable names and default rates; the
example weights of the head.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import model_fn as model_fn_lib
from model_fns import registry
from model_fns import tabular
from model_fns import wide_deep

TRAIN, EVAL, PREDICT = (tf.estimator.ModeKeys.TRAIN, tf.estimator.ModeKeys.EVAL,
                        tf.estimator.ModeKeys.PREDICT)
COLORS = ("red", "green", "blue", "gray")
TABLE_MODELS = ("dnn", "linear", "wide_deep")


def _numeric_stats(x: np.ndarray):
  present = x[~np.isnan(x)]
  return {"count": int(present.size), "missing": int(np.isnan(x).sum()),
          "mean": float(present.mean()), "std": float(present.std()),
          "min": float(present.min()), "max": float(present.max()),
          "quantiles": [float(q) for q in np.quantile(present, np.arange(1, 10) / 10)],
          "is_integer": False}


def _rows(n: int, seed: int):
  """Raw columns: color (some unseen, some missing), x ~ N(0, 1) (10% NaN), noise columns."""
  rng = np.random.default_rng(seed)
  color = rng.choice(np.array(COLORS + ("pink", "")), size=n, p=[0.24] * 4 + [0.02, 0.02])
  x = rng.standard_normal(n).astype(np.float32)
  x_seen = np.where(rng.random(n) < 0.1, np.nan, x).astype(np.float32)
  tags = rng.choice(np.array([b"", b"t1", b"t2", b"t3"]), size=(n, 3))
  note = np.array([[" ".join(rng.choice(["Lorem", "ipsum", "dolor"], rng.integers(0, 4)))]
                   for _ in range(n)])
  code = rng.integers(-1, 6, size=(n, 1))
  features = {"color": color.astype(bytes)[:, None], "x": x_seen[:, None], "tags": tags,
              "note": note, "code": code}
  return features, color, np.where(np.isnan(x_seen), 0.0, x), rng


def synthetic_table(label_kind: str, assets_dir: str, n: int = 1024, seed: int = 0):
  """(spec, train (features, labels), held-out (features, labels)) of a learnable table.

  binary: logit 3 * [red] - 3 * [blue] + 2.5 * x, plus logistic noise; multiclass (3
  classes): argmax of per-color offsets + per-class slopes of x; regression: 2 x + 1.5 [red]
  - [blue] + N(0, 0.1). Missing x counts as 0, the mean the model imputes.
  """
  with open(os.path.join(assets_dir, "vocab.color.txt"), "w") as f:
    f.write("".join(c + "\n" for c in COLORS))
  with open(os.path.join(assets_dir, "vocab.code.txt"), "w") as f:
    f.write("".join(f"{c}\n" for c in (3, 1, 0, 2)))
  splits = []
  for split_seed in (seed, seed + 1000):
    features, color, x, rng = _rows(n, split_seed)
    red, blue, green = (color == "red"), (color == "blue"), (color == "green")
    if label_kind == fs.BINARY:
      logit = 3.0 * red - 3.0 * blue + 2.5 * x + rng.logistic(size=n) * 0.5
      labels = (logit > 0).astype(np.int64)
    elif label_kind == fs.MULTICLASS:
      scores = np.stack([3.0 * red + 2.0 * x, 3.0 * blue - 2.0 * x, 3.0 * green], axis=1)
      labels = np.argmax(scores + 0.3 * rng.standard_normal(scores.shape), axis=1).astype(
          np.int64)
    else:
      labels = (2.0 * x + 1.5 * red - 1.0 * blue + 0.1 * rng.standard_normal(n)).astype(
          np.float32)
    splits.append((features, labels))
  columns = [
      fs.categorical_column("color", vocabulary="vocab.color.txt"),
      fs.numeric_column("x", stats=_numeric_stats(splits[0][0]["x"])),
      fs.categorical_column("tags", multivalent=True, max_values=3, hash_buckets=16),
      fs.text_column("note"),
      fs.categorical_column("code", dtype="int64", vocabulary="vocab.code.txt"),
  ]
  names = {fs.BINARY: ("no", "yes"), fs.MULTICLASS: ("r", "b", "g"), fs.REGRESSION: ()}
  spec = dataclasses.replace(fs.table_spec(columns, names[label_kind], label_kind=label_kind),
                             assets_dir=assets_dir)
  return spec, splits[0], splits[1]


def _input_fn(split, batch_size=64, training=True):
  features, labels = split

  def fn():
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    if training:
      ds = ds.shuffle(len(labels), seed=1).repeat()
    return ds.batch(batch_size)
  return fn


# Small networks; the rates of dnn and linear are TrainConfig's, wide_deep's are its own.
_HPARAMS = {"dnn": "hidden_units=[32],embedding_dim=8",
            "linear": "",
            "wide_deep": "hidden_units=[32],embedding_dim=8,crosses=[color*x],cross_buckets=256"}
_TRAIN_CFG = model_fn_lib.TrainConfig(optimizer="adam", learning_rate=0.05)


class TableTrainingTest(tf.test.TestCase, parameterized.TestCase):
  """30 steps of every table model on each label kind beat chance clearly on held-out rows."""

  @parameterized.named_parameters(*[(f"{m}_{k}", m, k) for m in TABLE_MODELS
                                    for k in (fs.BINARY, fs.MULTICLASS, fs.REGRESSION)])
  def test_learns_the_table(self, name, label_kind):
    spec, train, held_out = synthetic_table(label_kind, self.create_tempdir().full_path)
    d = registry.get(name)
    hp = hparams_lib.override(d.hparams_cls(), _HPARAMS[name])
    estimator = tf.estimator.Estimator(
        model_fn_lib.build_model_fn(d, hp, spec, _TRAIN_CFG),
        config=tf.estimator.RunConfig(model_dir=self.create_tempdir().full_path,
                                      tf_random_seed=1, log_step_count_steps=None))
    estimator.train(_input_fn(train), max_steps=30)
    results = estimator.evaluate(_input_fn(held_out, 256, training=False))
    self.assertEqual(results["global_step"], 30)
    if label_kind == fs.BINARY:
      self.assertGreater(results["auc"], 0.85)  # chance: 0.5
      self.assertGreater(results["accuracy"], results["accuracy_baseline"] + 0.15)
    elif label_kind == fs.MULTICLASS:
      self.assertGreater(results["accuracy"], 0.75)  # chance: about 0.4
    else:
      variance = float(np.var(held_out[1]))  # the MSE of predicting the mean: about 5
      self.assertLess(results["average_loss"], 0.15 * variance)


def _tiny(text=""):
  return hparams_lib.override(
      wide_deep.HParams(),
      "hidden_units=[8],embedding_dim=4,crosses=[color*x],cross_buckets=64,"
      "text_hash_buckets=32" + ("," + text if text else ""))


class TwoOptimizerTestBase(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.spec, self.train, _ = synthetic_table(fs.BINARY, self.create_tempdir().full_path, n=64)

  def _build(self, hp, cfg=model_fn_lib.TrainConfig(), model_def=None, steps_per_run=1):
    """The TRAIN spec in a fresh graph, with an initialized session for it."""
    graph = tf.Graph()
    with graph.as_default():
      tf.compat.v1.set_random_seed(1)
      features, labels = self.train
      if steps_per_run > 1:
        ds = model_fn_lib.stack_batches(_input_fn(self.train, 16)(), steps_per_run)
        features, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
      else:
        features = {k: tf.constant(v[:16]) for k, v in features.items()}
        labels = tf.constant(labels[:16])
      model_fn = model_fn_lib.build_model_fn(model_def or registry.get("wide_deep"), hp,
                                             self.spec, cfg)
      est = model_fn(features, labels, TRAIN)
      self.global_step = tf.compat.v1.train.get_global_step()
      self.sess = tf.compat.v1.Session(graph=graph)
      self.addCleanup(self.sess.close)
      self.sess.run([tf.compat.v1.global_variables_initializer(),
                     tf.compat.v1.tables_initializer()])
    self.graph = graph
    return est

  def _values(self, prefix):
    with self.graph.as_default():
      variables = [v for v in tf.compat.v1.trainable_variables() if v.op.name.startswith(prefix)]
    return dict(zip((v.op.name for v in variables), self.sess.run(variables)))


class TwoOptimizerTest(TwoOptimizerTestBase):

  def test_each_step_updates_both_parts_and_counts_one_global_step(self):
    est = self._build(_tiny())
    slots = {v.op.name for v in self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    self.assertIn("wide_deep/linear/color/weights/Ftrl", slots)  # FTRL's accumulators
    self.assertIn("wide_deep/linear/color/weights/Ftrl_1", slots)  # and linear terms
    self.assertIn("wide_deep/dnn/hidden_0/kernel/Adagrad", slots)
    self.assertFalse([s for s in slots if "Adam" in s])  # TrainConfig's optimizer is unused
    self.assertFalse([s for s in slots if "linear/" in s and s.endswith("/Adagrad")])
    for step in range(1, 4):
      linear, dnn = self._values("wide_deep/linear/"), self._values("wide_deep/dnn/")
      self.sess.run(est.train_op)
      self.assertEqual(self.sess.run(self.global_step), step)
      for before, after in ((linear, self._values("wide_deep/linear/")),
                            (dnn, self._values("wide_deep/dnn/"))):
        moved = [n for n in before if not np.array_equal(before[n], after[n])]
        self.assertNotEmpty(moved)
      self.assertFalse(np.array_equal(linear["wide_deep/linear/bias"],
                                      self._values("wide_deep/linear/")["wide_deep/linear/bias"]))

  def test_each_group_applies_its_own_rate_to_the_one_gradient(self):
    # sgd in both groups: update = -rate * gradient, the rates 0.3 and 0.02; the warm-up of
    # TrainConfig's schedule halves both at step 0.
    hp = _tiny("linear_optimizer=sgd,linear_learning_rate=0.3,dnn_optimizer=sgd,"
               "dnn_learning_rate=0.02")
    est = self._build(hp, model_fn_lib.TrainConfig(warmup_steps=2))
    with self.graph.as_default():
      variables = tf.compat.v1.trainable_variables()
      grads = [tf.convert_to_tensor(g) for g in tf.gradients(est.loss, variables)]
    before, gradients = self.sess.run([variables, grads])
    self.sess.run(est.train_op)
    after = self.sess.run(variables)
    for v, b, g, a in zip(variables, before, gradients, after):
      rate = 0.3 if v.op.name.startswith("wide_deep/linear/") else 0.02
      self.assertAllClose(a, b - 0.5 * rate * g, atol=1e-6, msg=v.op.name)
    self.assertTrue(any(np.any(g) for g in gradients))

  def test_steps_per_run_chains_grouped_steps(self):
    est = self._build(_tiny(), model_fn_lib.TrainConfig(steps_per_run=2), steps_per_run=2)
    linear, dnn = self._values("wide_deep/linear/"), self._values("wide_deep/dnn/")
    self.sess.run(est.train_op)
    self.assertEqual(self.sess.run(self.global_step), 2)
    self.assertNotAllClose(linear["wide_deep/linear/bias"],
                           self._values("wide_deep/linear/")["wide_deep/linear/bias"])
    kernel = "wide_deep/dnn/hidden_0/kernel"
    self.assertNotAllClose(dnn[kernel], self._values("wide_deep/dnn/")[kernel])

  def test_clipping_bounds_the_joint_update(self):
    hp = _tiny("linear_optimizer=sgd,linear_learning_rate=1.0,dnn_optimizer=sgd,"
               "dnn_learning_rate=1.0")
    est = self._build(hp, model_fn_lib.TrainConfig(clip_norm=0.01))
    before = self._values("wide_deep/")
    self.sess.run(est.train_op)
    after = self._values("wide_deep/")
    norm = np.sqrt(sum(np.sum((after[n] - before[n]) ** 2) for n in before))
    self.assertAllClose(norm, 0.01, rtol=1e-4)

  def test_float16_loss_scaling_skips_or_applies_both_groups_together(self):
    est = self._build(_tiny(), model_fn_lib.TrainConfig(precision="float16"))
    names = [v.op.name for v in self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)]
    self.assertEqual([n for n in names if n.startswith("loss_scale")],
                     ["loss_scale/current_loss_scale", "loss_scale/good_steps"])
    try:
      losses = [self.sess.run([est.loss, est.train_op])[0] for _ in range(3)]
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
      if "kernel" in str(e).lower():
        self.skipTest(f"this CPU build has no float16 kernel: {e.message[:200]}")
      raise
    self.assertTrue(np.all(np.isfinite(losses)))
    self.assertEqual(self.sess.run(self.global_step), 3)

  def test_learning_rates_are_summarized_per_group(self):
    self._build(_tiny())
    tags = {tf.get_static_value(op.op.inputs[0]).item().decode()
            for op in self.graph.get_collection(tf.compat.v1.GraphKeys.SUMMARIES)}
    self.assertContainsSubset(["linear/learning_rate", "dnn/learning_rate", "accuracy",
                               "losses/cross_entropy"], tags)
    self.assertNotIn("learning_rate", tags)

  def test_a_variable_outside_every_group_is_refused(self):
    only_linear = dataclasses.replace(
        registry.get("wide_deep"),
        optimizer_groups=lambda hp, spec: [("wide_deep/linear", "ftrl", 0.1)])
    with self.assertRaisesRegex(ValueError, r"exactly one optimizer group.*in no group: "
                                            r"wide_deep/dnn/"):
      self._build(_tiny(), model_def=only_linear)

  def test_a_variable_in_two_groups_is_refused(self):
    overlapping = dataclasses.replace(
        registry.get("wide_deep"),
        optimizer_groups=lambda hp, spec: [("wide_deep", "sgd", 0.1),
                                           ("wide_deep/dnn", "adagrad", 0.1)])
    with self.assertRaisesRegex(ValueError, "in several groups: wide_deep/dnn/"):
      self._build(_tiny(), model_def=overlapping)

  def test_groups_with_an_unknown_optimizer_are_refused(self):
    bad = dataclasses.replace(registry.get("wide_deep"),
                              optimizer_groups=lambda hp, spec: [("wide_deep", "lbfgs", 0.1)])
    with self.assertRaisesRegex(ValueError, "optimizer group 'wide_deep' needs an optimizer"):
      model_fn_lib.build_model_fn(bad, _tiny(), self.spec, model_fn_lib.TrainConfig())


class WideDeepTest(TwoOptimizerTestBase):

  def test_variable_names(self):
    with tf.Graph().as_default():
      features = {k: tf.constant(v[:4]) for k, v in self.train[0].items()}
      logits = wide_deep.build_logits(features, self.spec, _tiny("batch_norm=true"), True)
      self.assertEqual(logits.shape.as_list(), [4, 1])
      names = {v.op.name for v in tf.compat.v1.global_variables()}
    self.assertCountEqual(names, [
        "wide_deep/linear/color/weights", "wide_deep/linear/x/bucket_weights",
        "wide_deep/linear/tags/weights", "wide_deep/linear/note/weights",
        "wide_deep/linear/code/weights", "wide_deep/linear/color_X_x/weights",
        "wide_deep/linear/bias",
        "wide_deep/dnn/input/color/embeddings", "wide_deep/dnn/input/tags/embeddings",
        "wide_deep/dnn/input/note/embeddings", "wide_deep/dnn/input/code/embeddings",
        "wide_deep/dnn/hidden_0/kernel", "wide_deep/dnn/hidden_0_bn/gamma",
        "wide_deep/dnn/hidden_0_bn/beta", "wide_deep/dnn/hidden_0_bn/moving_mean",
        "wide_deep/dnn/hidden_0_bn/moving_variance",
        "wide_deep/dnn/logits/kernel", "wide_deep/dnn/logits/bias"])

  def test_default_rates_follow_the_premade_models(self):
    hp = wide_deep.HParams()
    self.assertEqual((hp.hidden_units, hp.linear_optimizer, hp.dnn_optimizer,
                      hp.dnn_learning_rate), ((128, 64), "ftrl", "adagrad", 0.05))
    # 5 columns: 1 / sqrt(5) = 0.45, capped at LinearClassifier's 0.2.
    self.assertEqual(wide_deep.optimizer_groups(hp, self.spec),
                     [("wide_deep/linear", "ftrl", 0.2), ("wide_deep/dnn", "adagrad", 0.05)])
    wide = fs.table_spec([fs.numeric_column(f"c{i}") for i in range(98)], ("a", "b"))
    hp = wide_deep.HParams(crosses=("c0*c1", "c2*c3"))
    self.assertAlmostEqual(wide_deep.linear_learning_rate(hp, wide), 0.1)  # 1 / sqrt(100)
    self.assertEqual(wide_deep.linear_learning_rate(
        wide_deep.HParams(linear_learning_rate=0.7), wide), 0.7)

  def test_a_cross_of_an_unknown_column_is_a_user_error_naming_it(self):
    with tf.Graph().as_default():
      features = {k: tf.constant(v[:4]) for k, v in self.train[0].items()}
      with self.assertRaisesRegex(tabular.TableInputError,
                                  "cross 'colour\\*x': no column 'colour'.*'color'"):
        wide_deep.build_logits(features, self.spec,
                               dataclasses.replace(_tiny(), crosses=("colour*x",)), False)


class ExampleWeightsTest(TwoOptimizerTestBase):

  def test_eval_loss_is_the_weighted_mean_and_the_model_never_sees_the_weights(self):
    spec = dataclasses.replace(self.spec, weight_key="importance")
    features, labels = self.train
    weights = np.where(np.arange(len(labels)) % 2 == 0, 2.0, 0.0).astype(np.float32)
    seen = {}
    d = registry.get("linear")

    def build_logits(f, s, hp, training):
      seen["keys"] = set(f)
      logits = d.build_logits(f, s, hp, training)
      seen["logits"] = logits
      return logits

    model_def = dataclasses.replace(d, build_logits=build_logits)
    with tf.Graph().as_default():
      f = {k: tf.constant(v) for k, v in features.items()}
      f[fs.WEIGHT_KEY] = tf.constant(weights)
      est = model_fn_lib.build_model_fn(model_def, d.hparams_cls(), spec,
                                        model_fn_lib.TrainConfig())(f, tf.constant(labels), EVAL)
      self.assertNotIn(fs.WEIGHT_KEY, seen["keys"])
      with tf.compat.v1.Session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.local_variables_initializer(),
                  tf.compat.v1.tables_initializer()])
        # Linear weights start at zero: move them so the examples' losses differ.
        for v in tf.compat.v1.trainable_variables():
          sess.run(v.assign(tf.random.stateless_normal(v.shape, [1, 2])))
        loss, logits = sess.run([est.loss, seen["logits"]])
    z = logits[:, 0]
    per_example = np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))
    self.assertAllClose(loss, np.sum(weights * per_example) / np.sum(weights), rtol=1e-5)
    self.assertNotAllClose(loss, per_example.mean())


if __name__ == "__main__":
  tf.test.main()
