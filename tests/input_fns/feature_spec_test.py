"""FeatureSpec: encode -> parse round trips exactly; bad values are refused with a clear error."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs


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


if __name__ == "__main__":
  tf.test.main()
