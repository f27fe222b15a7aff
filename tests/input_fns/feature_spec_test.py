"""FeatureSpec: encode -> parse round trips exactly; bad values are refused with a clear error."""

import dataclasses

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns import records


class FeatureSpecTest(tf.test.TestCase, parameterized.TestCase):

  def _spec(self):
    return fs.FeatureSpec(
        features=(fs.Feature("image", "uint8", (4, 3, 2)),
                  fs.Feature("tokens", "int64", (5,), "int64_list"),
                  fs.Feature("extra", "float32", (2,), "float_list")),
        input_key="image", kind=fs.IMAGE, label_names=("a", "b", "c"), value_range=(0, 255))

  def test_round_trip_is_exact(self):
    spec = self._spec()
    rng = np.random.default_rng(0)
    rows = [({"image": rng.integers(0, 256, (4, 3, 2), dtype=np.uint8),
              "tokens": rng.integers(0, 1000, (5,)),
              "extra": rng.standard_normal(2).astype(np.float32)}, i % 3) for i in range(7)]
    serialized = tf.constant([spec.encode(v, label) for v, label in rows])
    features, labels = self.evaluate(spec.parse_batch(serialized))
    for i, (values, label) in enumerate(rows):
      for name, v in values.items():
        np.testing.assert_array_equal(features[name][i], v)
        self.assertEqual(features[name].dtype, np.dtype(spec.feature(name).dtype))
      self.assertEqual(labels[i], label)

  def test_json_round_trip(self):
    spec = self._spec()
    self.assertEqual(fs.FeatureSpec.from_json_dict(spec.to_json_dict()), spec)

  @parameterized.named_parameters(
      ("wrong_shape", {"image": np.zeros((4, 3, 1))}, 0, "expected shape"),
      ("missing", {}, 0, "'image' is missing"),
      ("does_not_fit", {"image": np.full((4, 3, 2), 300)}, 0, "do not fit dtype uint8"),
      ("label_range", {"image": np.zeros((4, 3, 2))}, 3, r"label 3 is out of range \[0, 3\)"),
  )
  def test_bad_values_are_refused(self, values, label, message):
    spec = fs.image_spec(4, 3, 2, ["a", "b", "c"])
    with self.assertRaisesRegex(fs.SpecError, message):
      spec.encode(values, label)

  def test_describe_difference_names_what_changed(self):
    spec = self._spec()
    self.assertEqual(fs.describe_difference(spec, spec), "")
    other = fs.FeatureSpec(
        features=(fs.Feature("image", "float32", (4, 3, 1)),
                  fs.Feature("tokens", "int64", (5,), "int64_list"),
                  fs.Feature("mask", "int64", (5,), "int64_list")),
        input_key="image", kind=fs.IMAGE, label_names=("a", "b"), value_range=(0, 255))
    self.assertEqual(fs.describe_difference(spec, other),
                     "features added: 'mask'; features removed: 'extra'; feature 'image' dtype "
                     "uint8 -> float32, shape [4, 3, 2] -> [4, 3, 1]; label_names 3 -> 2 classes")
    renamed = fs.image_spec(4, 3, 2, ["a", "x", "y"], value_range=(0, 1))
    self.assertEqual(fs.describe_difference(fs.image_spec(4, 3, 2, ["a", "b", "c"]), renamed),
                     "value_range (0.0, 255.0) -> (0.0, 1.0); label_names: 2 of 3 renamed "
                     "('b' -> 'x', 'c' -> 'y')")

  def test_serving_signature_matches_features(self):
    sig = self._spec().serving_signature()
    self.assertEqual(sig["image"].shape.as_list(), [None, 4, 3, 2])
    self.assertEqual(sig["tokens"].dtype, tf.int64)


def _table_spec(label_kind=fs.BINARY):
  return fs.table_spec(
      [fs.numeric_column("age"), fs.numeric_column("xy", (2,)), fs.categorical_column("work"),
       fs.categorical_column("tags", multivalent=True, max_values=3),
       fs.categorical_column("zip", "int64"),
       fs.text_column("note")],
      label_names=("no", "yes") if label_kind != fs.REGRESSION else (),
      label_kind=label_kind, weight_key="w")


class TableSpecTest(tf.test.TestCase, parameterized.TestCase):

  def test_round_trip_with_missing_values(self):
    spec = _table_spec()
    rows = [({"age": 3.5, "xy": [1, 2], "work": "Private", "tags": ["a", "b", "c"], "zip": 7,
              "note": "h\u00e9llo, world", fs.WEIGHT_KEY: 2.0}, 1),
            ({"age": None, "xy": [np.nan, 1], "work": None, "tags": [], "zip": None,
              "note": None}, 0),
            ({"age": np.nan, "xy": [0, 0], "work": "", "tags": ["b"], "zip": 0, "note": ""}, 1)]
    features, labels = self.evaluate(spec.parse_batch(tf.constant(
        [spec.encode(v, label) for v, label in rows])))
    np.testing.assert_array_equal(features["age"], [[3.5], [np.nan], [np.nan]])
    np.testing.assert_array_equal(features["xy"], [[1, 2], [np.nan, 1], [0, 0]])
    self.assertEqual(features["work"].ravel().tolist(), [b"Private", b"", b""])
    self.assertEqual(features["tags"].tolist(),
                     [[b"a", b"b", b"c"], [b"", b"", b""], [b"b", b"", b""]])
    self.assertEqual(features["zip"].ravel().tolist(), [7, -1, 0])
    self.assertEqual(features["note"].ravel().tolist(),
                     ["h\u00e9llo, world".encode(), b"", b""])
    self.assertEqual(features[fs.WEIGHT_KEY].tolist(), [2.0, 1.0, 1.0])
    self.assertEqual(labels.tolist(), [1, 0, 1])

  def test_absent_columns_take_their_missing_value_and_serving_has_no_label(self):
    spec = _table_spec()
    empty = tf.train.Example().SerializeToString()
    features, labels = self.evaluate(spec.parse_batch(tf.constant([empty]), with_label=False))
    self.assertIsNone(labels)
    self.assertNotIn(fs.WEIGHT_KEY, features)
    self.assertTrue(np.isnan(features["age"]).all())
    self.assertEqual(features["work"].tolist(), [[b""]])
    self.assertEqual(features["zip"].tolist(), [[-1]])
    self.assertEqual(features["tags"].tolist(), [[b"", b"", b""]])  # padded to max_values

  def test_regression_labels_are_floats(self):
    spec = _table_spec(fs.REGRESSION)
    self.assertEqual(spec.logits_dimension, 1)
    serialized = [spec.encode({"age": 1.0, "xy": [0, 0], "work": "a", "tags": [], "zip": 1,
                               "note": "x"}, y) for y in (1.25, -3.0)]
    _, labels = self.evaluate(spec.parse_batch(tf.constant(serialized)))
    self.assertAllClose(labels, [1.25, -3.0])
    with self.assertRaisesRegex(fs.SpecError, "regression label nan is not a finite"):
      spec.encode({"age": 1.0, "xy": [0, 0], "work": "a", "tags": [], "zip": 1, "note": ""},
                  float("nan"))

  def test_json_round_trip_keeps_stats_and_old_specs_keep_their_json(self):
    spec = dataclasses.replace(_table_spec(), assets_dir="/data/x")
    column = fs.categorical_column("c", vocabulary="vocab.c.txt", stats={"vocab_size": 3})
    spec = fs.table_spec([column], label_names=("a", "b", "c"))
    again = fs.FeatureSpec.from_json_dict(spec.to_json_dict(), assets_dir="/data/x")
    self.assertEqual(again, spec)
    self.assertEqual(again.features[0].stats, {"vocab_size": 3})
    self.assertEqual(again.vocabulary_path(again.features[0]), "/data/x/vocab.c.txt")
    # A spec of before TABLE support serializes to exactly the keys it had then.
    self.assertEqual(sorted(fs.image_spec(2, 2, 1, ["a", "b"]).to_json_dict()),
                     ["features", "input_key", "kind", "label_names", "value_range",
                      "vocab_size"])
    self.assertEqual(sorted(fs.image_spec(2, 2, 1, ["a", "b"]).to_json_dict()["features"][0]),
                     ["dtype", "encoding", "name", "shape"])

  def test_serving_signature_names_each_column(self):
    sig = _table_spec().serving_signature()
    self.assertEqual(sig["work"].dtype, tf.string)
    self.assertEqual(sig["tags"].shape.as_list(), [None, None])
    self.assertEqual(sig["xy"].shape.as_list(), [None, 2])

  @parameterized.named_parameters(
      ("string_numeric", lambda: fs.Feature("a", "string", (1,), "bytes_list", role=fs.NUMERIC),
       "a numeric column is float32"),
      ("multivalent_numeric", lambda: fs.Feature("a", "float32", (1,), "float_list",
                                                 role=fs.NUMERIC, multivalent=True),
       "only a categorical column"),
      ("vocab_and_hash", lambda: fs.categorical_column("a", vocabulary="v", hash_buckets=8),
       "exclusive with a vocabulary"),
      ("role_in_image_spec", lambda: fs.FeatureSpec(
          (fs.numeric_column("a"),), input_key="a", kind=fs.VECTOR, label_names=("x", "y")),
       "roles are for TABLE specs"),
      ("binary_three_classes", lambda: fs.table_spec(
          [fs.numeric_column("a")], label_names=("x", "y", "z"), label_kind=fs.BINARY),
       "exactly 2 classes"),
      ("regression_names", lambda: fs.table_spec(
          [fs.numeric_column("a")], label_names=("x", "y"), label_kind=fs.REGRESSION),
       "no label_names"),
      ("weight_name", lambda: fs.table_spec([fs.numeric_column("weight")], ("x", "y")),
       "not 'label' or 'weight'"),
  )
  def test_malformed_specs_are_refused(self, make, message):
    with self.assertRaisesRegex(fs.SpecError, message):
      make()

  @parameterized.named_parameters(
      ("list_for_single", {"work": ["a", "b"]}, "one value expected"),
      ("numeric_text", {"age": "old"}, "'old' is not a number"),
      ("numeric_count", {"xy": [1, 2, 3]}, r"expected 2 number\(s\)"),
      ("negative_id", {"zip": -4}, "not a non-negative integer id"),
      ("too_many_values", {"tags": ["a", "b", "c", "d"]}, "4 values, the column holds at most 3"),
      ("missing_key", {"drop": "note"}, "'note' is missing"),
      ("negative_weight", {fs.WEIGHT_KEY: -1.0}, "example weight -1.0"),
  )
  def test_bad_table_values_are_refused_by_both_encoders(self, change, message):
    spec = _table_spec()
    values = {"age": 1.0, "xy": [0, 0], "work": "a", "tags": [], "zip": 1, "note": "x"}
    values.update({k: v for k, v in change.items() if k != "drop"})
    values.pop(change.get("drop", "-"), None)
    with self.assertRaisesRegex(fs.SpecError, message):
      spec.encode(values, 0)
    with self.assertRaisesRegex(records.EncodeError, message):
      records.ExampleEncoder(spec).encode(values, 0)


if __name__ == "__main__":
  tf.test.main()
