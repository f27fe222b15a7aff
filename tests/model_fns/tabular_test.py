"""model_fns/tabular.py: each in-graph transform of a table against numpy on known inputs, the
two builders' layouts and variable names, and the vocabulary files travelling into the
SavedModel as assets (the export still serves after the dataset directory is deleted)."""

import dataclasses
import os
import shutil

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from model_fns import tabular

NAN = float("nan")
_AGE_STATS = {"count": 8, "missing": 2, "mean": 10.0, "std": 2.0, "min": 4.0, "max": 16.0,
              "quantiles": [8.0, 10.0, 12.0], "is_integer": True}


def _run(fetches, features=None):
  """Runs fetches in a fresh session, tables and variables initialized."""
  with tf.compat.v1.Session() as sess:
    sess.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()])
    return sess.run(fetches, features)


class TabularTestBase(tf.test.TestCase, parameterized.TestCase):

  def _spec(self, columns, vocabularies=None, **kwargs):
    """A table spec whose vocabulary files (name -> values) are written in a temp dir."""
    assets = self.create_tempdir().full_path
    for name, values in (vocabularies or {}).items():
      with open(os.path.join(assets, name), "w", encoding="utf-8") as f:
        f.write("".join(f"{v}\n" for v in values))
    kwargs.setdefault("label_names", ("no", "yes"))
    kwargs.setdefault("label_kind", fs.BINARY)
    return dataclasses.replace(fs.table_spec(columns, **kwargs), assets_dir=assets)


class NumericTest(TabularTestBase):

  def test_missing_becomes_the_mean_with_an_indicator_and_values_are_standardized(self):
    age = fs.numeric_column("age", stats=_AGE_STATS)
    x = np.array([[12.0], [NAN], [6.0], [10.0]], np.float32)
    with tf.Graph().as_default():
      z, indicator = _run(tabular.normalized({"age": tf.constant(x)}, age))
    self.assertAllClose(z, [[1.0], [0.0], [-2.0], [0.0]])
    self.assertAllEqual(indicator, [[0.0], [1.0], [0.0], [0.0]])

  def test_no_indicator_without_missing_values_and_std_zero_divides_by_one(self):
    constant = fs.numeric_column("k", stats=dict(_AGE_STATS, missing=0, std=0.0, mean=3.0))
    with tf.Graph().as_default():
      z, indicator = tabular.normalized({"k": tf.constant([[5.0], [NAN]])}, constant)
      self.assertIsNone(indicator)
      # A NaN at serving time in a column that had none still gets the mean, never NaN.
      self.assertAllClose(_run(z), [[2.0], [0.0]])

  def test_without_stats_values_pass_and_nan_becomes_zero(self):
    raw = fs.numeric_column("r")
    with tf.Graph().as_default():
      z, indicator = tabular.normalized({"r": tf.constant([[5.0], [NAN]])}, raw)
      self.assertIsNone(indicator)
      self.assertAllClose(_run(z), [[5.0], [0.0]])

  def test_bucket_ids_at_boundaries_match_numpy(self):
    age = fs.numeric_column("age", stats=_AGE_STATS)
    x = np.array([7.9, 8.0, 9.0, 10.0, 11.99, 12.0, 100.0, -5.0, NAN], np.float32)[:, None]
    with tf.Graph().as_default():
      ids = tabular.bucket_ids({"age": tf.constant(x)}, age)
      self.assertEqual(ids.size, 5)  # 3 boundaries: 4 buckets and the NaN id
      self.assertIsNone(ids.mask)
      got = _run(ids.ids)
    expected = np.searchsorted(_AGE_STATS["quantiles"], x[:8, 0], side="right")
    self.assertAllEqual(got[:8, 0], expected)
    self.assertAllEqual(expected, [0, 1, 1, 2, 2, 3, 3, 0])  # b_k falls in bucket k + 1
    self.assertEqual(got[8, 0], 4)

  def test_each_value_of_a_vector_column_has_its_own_ids(self):
    v = fs.numeric_column("v", shape=(2,), stats=_AGE_STATS)
    x = np.array([[9.0, 9.0], [NAN, 13.0]], np.float32)
    with tf.Graph().as_default():
      ids = tabular.bucket_ids({"v": tf.constant(x)}, v)
      z, indicator = tabular.normalized({"v": tf.constant(x)}, v)
      got, z, indicator = _run([ids.ids, z, indicator])
    self.assertEqual(ids.size, 10)
    self.assertAllEqual(got, [[1, 5 + 1], [4, 5 + 3]])
    self.assertAllClose(z, [[-0.5, -0.5], [0.0, 1.5]])
    self.assertAllEqual(indicator, [[0, 0], [1, 0]])


class CategoricalTest(TabularTestBase):

  @parameterized.named_parameters(("one_oov_bucket", 1), ("three_oov_buckets", 3))
  def test_vocabulary_ids_with_oov_and_missing(self, oov):
    color = fs.categorical_column("color", vocabulary="vocab.color.txt")
    spec = self._spec([color], {"vocab.color.txt": ["red", "blue", "green"]})
    values = np.array([[b"red"], [b"green"], [b"purple"], [b""], [b"blue"], [b"Red"]])
    with tf.Graph().as_default():
      ids = tabular.categorical_ids({"color": tf.constant(values)}, spec, color, oov)
      got = _run(ids.ids)[:, 0]
    self.assertEqual(ids.size, 3 + oov + 1)
    self.assertAllEqual(got[[0, 1, 4]], [0, 2, 1])
    self.assertBetween(got[2], 3, 3 + oov - 1)  # unseen: an OOV id, never an error
    self.assertBetween(got[5], 3, 3 + oov - 1)  # lookups are exact: "Red" is not "red"
    self.assertEqual(got[3], 3 + oov)  # missing: its own id

  def test_int64_vocabulary_parses_its_lines_as_numbers(self):
    code = fs.categorical_column("code", dtype="int64", vocabulary="vocab.code.txt")
    spec = self._spec([code], {"vocab.code.txt": [10, 3, 7]})
    with tf.Graph().as_default():
      ids = tabular.categorical_ids({"code": tf.constant([[3], [99], [-1], [10]], tf.int64)},
                                    spec, code)
      self.assertAllEqual(_run(ids.ids)[:, 0], [1, 3, 4, 0])

  def test_empty_vocabulary_makes_every_value_oov(self):
    color = fs.categorical_column("color", vocabulary="vocab.color.txt")
    spec = self._spec([color], {"vocab.color.txt": []})
    with tf.Graph().as_default():
      ids = tabular.categorical_ids({"color": tf.constant([[b"x"], [b""]])}, spec, color, 2)
      self.assertEqual(ids.size, 3)
      got = _run(ids.ids)[:, 0]
    self.assertBetween(got[0], 0, 1)
    self.assertEqual(got[1], 2)

  def test_hashing_is_deterministic_and_int64_hashes_its_decimal(self):
    tag = fs.categorical_column("tag", hash_buckets=50)
    num = fs.categorical_column("num", dtype="int64", hash_buckets=50)
    spec = self._spec([tag, num])
    outputs = []
    for _ in range(2):  # two graphs: the same ids, as training and serving need
      with tf.Graph().as_default():
        a = tabular.categorical_ids({"tag": tf.constant([[b"x"], [b"y"], [b""], [b"x"]])}, spec,
                                    tag)
        b = tabular.categorical_ids({"num": tf.constant([[7], [-1]], tf.int64)}, spec, num)
        reference = tf.strings.to_hash_bucket_fast(["x", "y", "7"], 50)
        outputs.append(_run([a.ids, b.ids, reference]))
    (a, b, reference), (a2, b2, _) = outputs
    self.assertAllEqual(a, a2)
    self.assertAllEqual(b, b2)
    self.assertAllEqual(a[:, 0], [reference[0], reference[1], 50, reference[0]])
    self.assertAllEqual(b[:, 0], [reference[2], 50])

  def test_int64_without_vocabulary_is_identity_for_small_ids(self):
    level = fs.categorical_column("level", dtype="int64")
    spec = self._spec([level])
    with tf.Graph().as_default():
      ids = tabular.categorical_ids({"level": tf.constant([[0], [4], [-1], [1003]], tf.int64)},
                                    spec, level, default_hash_buckets=1000)
      self.assertEqual(ids.size, 1001)
      self.assertAllEqual(_run(ids.ids)[:, 0], [0, 4, 1000, 3])

  def test_multivalent_padding_is_masked(self):
    tags = fs.categorical_column("tags", multivalent=True, max_values=3,
                                   vocabulary="vocab.tags.txt")
    spec = self._spec([tags], {"vocab.tags.txt": ["a", "b", "c"]})
    values = np.array([[b"a", b"c", b""], [b"", b"", b""], [b"b", b"zz", b""]])
    with tf.Graph().as_default():
      ids = tabular.categorical_ids({"tags": tf.constant(values)}, spec, tags)
      got, mask = _run([ids.ids, ids.mask])
    self.assertAllEqual(mask, values != b"")
    self.assertAllEqual(got[mask], [0, 2, 1, 3])
    self.assertAllEqual(got[~mask], np.zeros(5))

  def test_a_missing_vocabulary_file_is_a_user_error_naming_the_column(self):
    color = fs.categorical_column("color", vocabulary="vocab.color.txt")
    with tf.Graph().as_default():
      with self.assertRaisesRegex(tabular.TableInputError,
                                  "column 'color': cannot read its vocabulary .*vocab.color.txt"):
        tabular.categorical_ids({"color": tf.constant([[b"x"]])}, self._spec([color]), color)

  def test_oov_buckets_must_be_positive(self):
    color = fs.categorical_column("color", hash_buckets=5)
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "oov_buckets must be >= 1"):
        tabular.categorical_ids({"color": tf.constant([[b"x"]])}, self._spec([color]), color, 0)


class TextTest(TabularTestBase):

  def test_bag_of_words_is_lower_cased_split_on_whitespace_and_hashed(self):
    text = fs.text_column("review")
    values = np.array([[b"Great  Food\tgreat"], [b""], ["caf\u00c9 ok".encode()]])
    with tf.Graph().as_default():
      ids = tabular.text_ids({"review": tf.constant(values)}, text, 1000)
      reference = tf.strings.to_hash_bucket_fast(["great", "food", "caf\u00e9", "ok"], 1000)
      got, mask, reference = _run([ids.ids, ids.mask, reference])
    self.assertEqual(ids.size, 1000)
    self.assertAllEqual(mask, [[True, True, True], [False] * 3, [True, True, False]])
    self.assertAllEqual(got[0], reference[[0, 1, 0]])
    self.assertAllEqual(got[2, :2], reference[[2, 3]])


class CrossTest(TabularTestBase):

  def _table(self):
    color = fs.categorical_column("color", vocabulary="vocab.color.txt")
    tags = fs.categorical_column("tags", multivalent=True, max_values=2, hash_buckets=100)
    age = fs.numeric_column("age", stats=_AGE_STATS)
    spec = self._spec([color, tags, age, fs.text_column("note")],
                      {"vocab.color.txt": ["red", "blue"]})
    features = {
        "color": np.array([[b"red"], [b"blue"], [b"red"], [b"blue"], [b"red"]]),
        "tags": np.array([[b"x", b"y"], [b"x", b""], [b"", b""], [b"x", b""], [b"y", b""]]),
        "age": np.array([[9.0], [9.0], [9.0], [13.0], [9.0]], np.float32),
        "note": np.array([[b"hi"]] * 5),
    }
    return spec, features

  def _crossed(self, columns):
    spec, features = self._table()
    with tf.Graph().as_default():
      features = {k: tf.constant(v) for k, v in features.items()}
      crossed = tabular.cross_ids(tabular.cross_parts(features, spec, columns, 1, 1000),
                                  10_000)
      self.assertEqual(crossed.size, 10_000)
      return _run([crossed.ids, crossed.mask])

  def test_equal_combinations_share_a_bucket_and_padding_makes_none(self):
    got, mask = self._crossed(("color", "tags"))
    self.assertAllEqual(mask.sum(axis=1), [2, 1, 0, 1, 1])  # the Cartesian product per row
    self.assertTrue(np.all((got >= 0) & (got < 10_000)))
    red_x, red_y, blue_x = got[0, 0], got[0, 1], got[1, 0]
    self.assertEqual(got[3, 0], blue_x)  # (blue, x) again
    self.assertEqual(got[4, 0], red_y)  # (red, y) again
    self.assertLen({red_x, red_y, blue_x}, 3)

  def test_numeric_columns_cross_by_their_buckets(self):
    got = self._crossed(("color", "age"))[0][:, 0]
    self.assertEqual(got[0], got[2])  # (red, bucket 1) twice
    self.assertNotEqual(got[1], got[3])  # blue in bucket 1, then in bucket 3

  def test_a_cross_naming_an_unknown_or_text_column_is_a_user_error(self):
    spec, features = self._table()
    with tf.Graph().as_default():
      features = {k: tf.constant(v) for k, v in features.items()}
      with self.assertRaisesRegex(tabular.TableInputError, "no column 'colour'.*'color'"):
        tabular.linear_logits(features, spec, 1, crosses=[("colour", "age")])
      with self.assertRaisesRegex(tabular.TableInputError, "'note' is text"):
        tabular.linear_logits(features, spec, 1, crosses=[("note", "age")])
    self.assertTrue(issubclass(tabular.TableInputError, errors.UserInputError))

  @parameterized.parameters("a", "a*", "a*a", "*b")
  def test_malformed_cross_text(self, text):
    self.assertFalse(tabular.is_cross(text))
    with self.assertRaisesRegex(ValueError, "two or more distinct column names"):
      tabular.parse_cross(text)

  def test_cross_text_parses(self):
    self.assertEqual(tabular.parse_cross(" a * b*c"), ("a", "b", "c"))


class BuildersTest(TabularTestBase):

  def _table(self):
    spec = self._spec(
        [fs.numeric_column("age", stats=_AGE_STATS),
         fs.numeric_column("income", stats=dict(_AGE_STATS, missing=0)),
         fs.categorical_column("color", vocabulary="vocab.color.txt"),
         fs.categorical_column("tags", multivalent=True, max_values=2, hash_buckets=20),
         fs.text_column("my note")],
        {"vocab.color.txt": ["red", "blue"]})
    features = {
        "age": [[12.0], [NAN]],
        "income": [[8.0], [10.0]],
        "color": [[b"blue"], [b""]],
        "tags": [[b"p", b"q"], [b"p", b""]],
        "my note": [[b"a b"], [b""]],
    }
    return spec, {k: tf.constant(v) for k, v in features.items()}

  def test_deep_input_layout_names_and_embedding_means(self):
    with tf.Graph().as_default():
      spec, features = self._table()
      x = tabular.deep_input(features, spec, embedding_dim=3)
      names = {v.op.name: v for v in tf.compat.v1.global_variables()}
      self.assertCountEqual(names, ["input/color/embeddings", "input/tags/embeddings",
                                    "input/my_note/embeddings"])
      self.assertEqual(names["input/color/embeddings"].shape.as_list(), [2 + 1 + 1, 3])
      self.assertEqual(names["input/tags/embeddings"].shape.as_list(), [21, 3])
      tag_ids = tabular.categorical_ids(features, spec, spec.feature("tags"))
      out, color_table, tag_table, ids = _run([x, names["input/color/embeddings"],
                                              names["input/tags/embeddings"], tag_ids.ids])
    # age z + indicator, income z, then one 3-wide embedding per categorical / text column.
    self.assertEqual(out.shape, (2, 1 + 1 + 1 + 3 * 3))
    self.assertAllClose(out[:, :3], [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    self.assertAllClose(out[0, 3:6], color_table[1])  # "blue"
    self.assertAllClose(out[1, 3:6], color_table[3])  # missing: its own row
    self.assertAllClose(out[0, 6:9], tag_table[ids[0]].mean(axis=0))
    self.assertAllClose(out[1, 6:9], tag_table[ids[1, 0]])  # the padding is not averaged in
    self.assertAllClose(out[1, 9:], np.zeros(3))  # no words: zeros

  def test_auto_embedding_dim(self):
    self.assertEqual(tabular.auto_embedding_dim(4), 8)  # 6 * 4 ** 0.25 = 8.5
    self.assertEqual(tabular.auto_embedding_dim(10_000), 60)
    self.assertEqual(tabular.auto_embedding_dim(10 ** 6), tabular.MAX_AUTO_EMBEDDING_DIM)
    with tf.Graph().as_default():
      spec, features = self._table()
      tabular.deep_input(features, spec)
      shapes = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    self.assertEqual(shapes["input/color/embeddings"], [4, 8])
    self.assertEqual(shapes["input/my_note/embeddings"],
                     [tabular.DEFAULT_TEXT_HASH_BUCKETS, 60])

  def test_linear_logits_names_start_at_zero_and_sum_the_weights_of_each_id(self):
    with tf.Graph().as_default():
      spec, features = self._table()
      logits = tabular.linear_logits(features, spec, 2, crosses=[("color", "age")],
                                     cross_buckets=50, text_hash_buckets=30)
      variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
      self.assertCountEqual(variables, [
          "age/weights", "age/bucket_weights", "income/weights", "income/bucket_weights",
          "color/weights", "tags/weights", "my_note/weights", "color_X_age/weights", "bias"])
      self.assertEqual(variables["age/weights"].shape.as_list(), [2, 2])  # value + indicator
      self.assertEqual(variables["income/weights"].shape.as_list(), [1, 2])
      self.assertEqual(variables["color_X_age/weights"].shape.as_list(), [50, 2])
      with tf.compat.v1.Session() as sess:
        sess.run([tf.compat.v1.global_variables_initializer(),
                  tf.compat.v1.tables_initializer()])
        self.assertAllEqual(sess.run(logits), np.zeros((2, 2)))
        rng = np.random.default_rng(0)
        values = {}
        for name, v in variables.items():
          values[name] = rng.standard_normal(v.shape.as_list()).astype(np.float32)
          sess.run(v.assign(values[name]))
        tags = tabular.categorical_ids(features, spec, spec.feature("tags"))
        words = tabular.text_ids(features, spec.feature("my note"), 30)
        cross = tabular.cross_ids(tabular.cross_parts(features, spec, ("color", "age"), 1,
                                                       1000), 50)
        out, tag_ids, word_ids, word_mask, cross_ids = sess.run(
            [logits, tags.ids, words.ids, words.mask, cross.ids])
    w = values
    expected = np.stack([
        # age 12 (z 1, bucket 3), income 8 (z -1, bucket 1), "blue", tags p q, words a b.
        np.array([1.0, 0.0]) @ w["age/weights"] + w["age/bucket_weights"][3]
        + -1.0 * w["income/weights"][0] + w["income/bucket_weights"][1]
        + w["color/weights"][1] + w["tags/weights"][tag_ids[0]].sum(axis=0)
        + w["my_note/weights"][word_ids[0][word_mask[0]]].sum(axis=0)
        + w["color_X_age/weights"][cross_ids[0, 0]] + w["bias"],
        # age NaN (z 0, indicator 1, NaN bucket 4), income 10 (bucket 2), missing color,
        # tags p, no words.
        np.array([0.0, 1.0]) @ w["age/weights"] + w["age/bucket_weights"][4]
        + w["income/bucket_weights"][2] + w["color/weights"][3]
        + w["tags/weights"][tag_ids[1, 0]] + w["color_X_age/weights"][cross_ids[1, 0]]
        + w["bias"],
    ])
    self.assertAllClose(out, expected, rtol=1e-5)

  def test_linear_gradients_are_sparse(self):
    with tf.Graph().as_default():
      spec, features = self._table()
      logits = tabular.linear_logits(features, spec, 1, text_hash_buckets=10 ** 6)
      (words,) = [v for v in tf.compat.v1.trainable_variables() if v.op.name == "my_note/weights"]
      (grad,) = tf.gradients(tf.reduce_sum(logits), [words])
    self.assertIsInstance(grad, tf.IndexedSlices)  # a gather: no dense [10^6, 1] update

  def test_column_scopes_are_sanitized_unique_and_keep_their_order(self):
    self.assertEqual(tabular.scope_names(["a b", "a_b", "bias", "-x", ""], ("bias",)),
                     ["a_b", "a_b_2", "bias_2", "c_x", "c"])


class SavedModelAssetsTest(TabularTestBase):
  """The vocabulary files are the SavedModel's own assets: it serves after the dataset is
  gone."""

  def test_vocabulary_files_are_exported_as_assets(self):
    spec = self._spec(
        [fs.numeric_column("age", stats=_AGE_STATS),
         fs.categorical_column("color", vocabulary="vocab.color.txt"),
         fs.categorical_column("code", dtype="int64", vocabulary="vocab.code.txt")],
        {"vocab.color.txt": ["red", "blue"], "vocab.code.txt": [5, 7]})
    rows = {"age": np.array([[9.0], [NAN], [13.0], [10.0]], np.float32),
            "color": np.array([[b"red"], [b"blue"], [b"green"], [b""]]),
            "code": np.array([[5], [7], [8], [-1]], np.int64)}
    labels = np.array([1, 0, 0, 1], np.int64)

    def model_fn(features, labels, mode):
      logits = (tabular.linear_logits(features, spec, 1)
                + tf.keras.layers.Dense(1, name="deep")(tabular.deep_input(features, spec)))
      if mode == tf.estimator.ModeKeys.PREDICT:
        return tf.estimator.EstimatorSpec(mode, predictions={"logits": logits})
      loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
          labels=tf.cast(labels[:, None], tf.float32), logits=logits))
      train_op = tf.compat.v1.train.AdagradOptimizer(0.5).minimize(
          loss, global_step=tf.compat.v1.train.get_or_create_global_step())
      return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    estimator = tf.estimator.Estimator(model_fn, self.create_tempdir().full_path)
    estimator.train(lambda: tf.data.Dataset.from_tensors((rows, labels)).repeat(), max_steps=5)
    expected = np.concatenate([p["logits"] for p in estimator.predict(
        lambda: tf.data.Dataset.from_tensors(rows), yield_single_examples=False)])

    def receiver_fn():
      inputs = {name: tf.compat.v1.placeholder(s.dtype, s.shape, name)
                for name, s in spec.serving_signature().items()}
      return tf.estimator.export.ServingInputReceiver(inputs, inputs)

    export_dir = estimator.export_saved_model(self.create_tempdir().full_path,
                                              receiver_fn).decode()
    self.assertCountEqual(os.listdir(os.path.join(export_dir, "assets")),
                          ["vocab.color.txt", "vocab.code.txt"])
    shutil.rmtree(spec.assets_dir)
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in rows.items()})
    self.assertAllClose(out["logits"], expected, rtol=1e-5)
    self.assertTrue(np.any(np.abs(expected) > 1e-3))  # trained: the lookups matter


if __name__ == "__main__":
  tf.test.main()
