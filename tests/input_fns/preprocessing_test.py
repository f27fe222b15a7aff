"""Preprocessing presets: each one's numerical effect, augmentation only in training, chains
checked by name, and the serving case (raw uint8, unknown batch size, graph mode)."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import preprocessing as pp


def _spec(h=4, w=5, c=1, value_range=(0, 255)):
  return fs.image_spec(h, w, c, ["a", "b"], value_range=value_range)


def _images(n=32, h=4, w=5, c=1, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


class PresetTest(tf.test.TestCase, parameterized.TestCase):

  def _run(self, chain, x, spec, training=False, seed=None):
    seed = None if seed is None else tf.constant(seed, tf.int64)
    out = pp.apply(pp.parse_chain(chain), {spec.input_key: tf.constant(x)}, spec, training, seed)
    return self.evaluate(out[spec.input_key])

  @parameterized.named_parameters(
      ("scale", "scale", (0, 255), [0.0, 0.2, 1.0]),
      ("scale_digits_range", "scale", (0, 16), [0.0, 51 / 16, 255 / 16]),
      ("inception", "inception", (0, 255), [-1.0, -0.6, 1.0]),
  )
  def test_range_presets(self, chain, value_range, expected):
    spec = _spec(1, 3, 1, value_range)
    x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
    out = self._run(chain, x, spec)
    self.assertEqual(out.dtype, np.float32)
    self.assertAllClose(out.ravel(), expected)

  def test_standardize_is_per_example(self):
    spec = _spec()
    x = _images(3)
    x[2] = 7  # a constant example must stay finite
    out = self._run("standardize", x, spec)
    for i in range(2):
      self.assertAllClose(out[i].mean(), 0.0, atol=1e-5)
      self.assertAllClose(out[i].std(), 1.0, atol=1e-4)
    self.assertAllEqual(out[2], np.zeros_like(out[2]))

  def test_imagenet_three_channels(self):
    spec = _spec(1, 1, 3)
    x = np.array([255, 0, 128], np.uint8).reshape(1, 1, 1, 3)
    out = self._run("imagenet", x, spec).ravel()
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    self.assertAllClose(out, expected, rtol=1e-5)

  def test_imagenet_one_channel_uses_mean_statistics(self):
    spec = _spec(1, 1, 1)
    out = self._run("imagenet", np.full((1, 1, 1, 1), 255, np.uint8), spec).ravel()
    mean, std = sum(pp.IMAGENET_MEAN) / 3, sum(pp.IMAGENET_STD) / 3
    self.assertAllClose(out, [(1 - mean) / std])

  def test_imagenet_refuses_two_channels(self):
    spec = _spec(2, 2, 2)
    with self.assertRaisesRegex(pp.PreprocessingError, "1 or 3 channels, got 2"):
      self._run("imagenet", _images(1, 2, 2, 2), spec)

  def test_resize(self):
    spec = _spec()
    x = np.full((2, 4, 5, 1), 9, np.uint8)
    out = self._run("resize=8x6", x, spec)
    self.assertEqual(out.shape, (2, 8, 6, 1))
    self.assertAllClose(out, np.full((2, 8, 6, 1), 9.0))

  def test_random_crop_is_a_per_example_shift_of_the_padded_image(self):
    spec = _spec()
    x = _images(64) + 1  # no zeros, so padding is recognisable
    out = self._run("random_crop=1", x, spec, training=True, seed=[1, 2])
    self.assertEqual(out.shape, x.shape)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    offsets = []
    for i in range(len(x)):
      match = [(dy, dx) for dy in range(3) for dx in range(3)
               if np.array_equal(out[i], padded[i, dy:dy + 4, dx:dx + 5])]
      self.assertLen(match, 1, msg=f"example {i} is not a crop of its padded image")
      offsets.append(match[0])
    self.assertGreater(len(set(offsets)), 4)  # offsets differ between examples

  def test_random_flip_mirrors_about_half(self):
    spec = _spec()
    x = _images(200)
    out = self._run("random_flip", x, spec, training=True, seed=[3, 4])
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    self.assertTrue(all(f or k for f, k in zip(flipped, kept)))
    self.assertBetween(sum(flipped), 70, 130)

  @parameterized.parameters("random_crop", "random_flip", "random_crop=2,random_flip")
  def test_augmentation_is_off_unless_training(self, chain):
    spec = _spec()
    x = _images(8)
    self.assertAllEqual(self._run(chain, x, spec, training=False), x.astype(np.float32))
    self.assertNotAllEqual(self._run(chain, x, spec, training=True, seed=[0, 1]),
                           x.astype(np.float32))

  def test_seeded_augmentation_is_reproducible(self):
    spec = _spec()
    x = _images(16)
    a = self._run("random_crop,random_flip,scale", x, spec, training=True, seed=[5, 6])
    b = self._run("random_crop,random_flip,scale", x, spec, training=True, seed=[5, 6])
    c = self._run("random_crop,random_flip,scale", x, spec, training=True, seed=[5, 7])
    self.assertAllEqual(a, b)
    self.assertNotAllEqual(a, c)

  def test_chain_composes_in_order(self):
    spec = _spec()
    x = _images(4)
    out = self._run("resize=2x2,inception", x, spec)
    resized = self.evaluate(tf.image.resize(tf.cast(x, tf.float32), (2, 2)))
    self.assertAllClose(out, resized / 127.5 - 1.0, atol=1e-5)

  def test_tokens_pass_through(self):
    spec = fs.FeatureSpec(features=(fs.Feature("tokens", "int64", (6,), "int64_list"),),
                          input_key="tokens", kind=fs.TOKENS, label_names=("a", "b"),
                          vocab_size=50)
    x = np.arange(12, dtype=np.int64).reshape(2, 6)
    out = self._run("random_flip,standardize", x, spec, training=True)
    self.assertEqual(out.dtype, np.int64)
    self.assertAllEqual(out, x)

  def test_vector_standardize_and_scale(self):
    spec = fs.FeatureSpec(features=(fs.Feature("v", "float32", (4,), "float_list"),),
                          input_key="v", kind=fs.VECTOR, label_names=("a", "b"),
                          value_range=(0, 10))
    x = np.array([[0, 5, 10, 5]], np.float32)
    self.assertAllClose(self._run("scale", x, spec), [[0, 0.5, 1, 0.5]])
    # Image-only presets leave vectors alone.
    self.assertAllClose(self._run("random_flip,resize=2x2", x, spec, training=True), x)

  def test_other_features_are_untouched(self):
    spec = fs.FeatureSpec(features=(fs.Feature("image", "uint8", (2, 2, 1)),
                                    fs.Feature("extra", "int64", (3,), "int64_list")),
                          input_key="image", kind=fs.IMAGE, label_names=("a", "b"))
    extra = tf.constant([[1, 2, 3]], tf.int64)
    out = pp.apply(("scale",), {"image": tf.zeros([1, 2, 2, 1], tf.uint8), "extra": extra},
                   spec, False)
    self.assertIs(out["extra"], extra)


class ChainTest(tf.test.TestCase, parameterized.TestCase):

  def test_parse_chain(self):
    self.assertEqual(pp.parse_chain(" random_flip , resize=32x32,scale,"),
                     ("random_flip", "resize=32x32", "scale"))
    self.assertEqual(pp.parse_chain(""), ())

  def test_unknown_preset_lists_known_ones(self):
    with self.assertRaises(pp.PreprocessingError) as cm:
      pp.parse_chain("scale,sharpen")
    self.assertIsInstance(cm.exception, errors.UserInputError)
    self.assertIn("'sharpen'", str(cm.exception))
    for name in pp.names():
      self.assertIn(name, str(cm.exception))

  @parameterized.named_parameters(
      ("two_normalizers", "scale,inception", "2 value-normalizing presets"),
      ("resize_without_size", "resize", r"needs an argument: resize=HxW"),
      ("resize_bad_size", "resize=32", r"expected HxW"),
      ("argument_to_scale", "scale=2", "takes no argument"),
      ("negative_padding", "random_crop=-1", "padding >= 0"),
  )
  def test_bad_chains(self, chain, message):
    with self.assertRaisesRegex(pp.PreprocessingError, message):
      pp.parse_chain(chain)

  def test_apply_checks_the_chain(self):
    with self.assertRaisesRegex(pp.PreprocessingError, "unknown preprocessing preset 'blur'"):
      pp.apply(("blur",), {"image": tf.zeros([1, 4, 5, 1], tf.uint8)}, _spec(), False)


class ServingTest(tf.test.TestCase):

  def test_raw_uint8_batch_of_unknown_size_in_graph_mode(self):
    spec = _spec(8, 8, 3)
    chain = pp.parse_chain("random_crop,random_flip,resize=4x4,imagenet")
    with tf.Graph().as_default():
      raw = tf.compat.v1.placeholder(tf.uint8, [None, 8, 8, 3])
      out = pp.apply(chain, {"image": raw}, spec, training=False)["image"]
      self.assertEqual(out.shape.as_list(), [None, 4, 4, 3])
      self.assertEqual(out.dtype, tf.float32)
      x = _images(3, 8, 8, 3)
      with tf.compat.v1.Session() as sess:
        got = sess.run(out, {raw: x})
    expected = pp.apply(chain[2:], {"image": tf.constant(x)}, spec, training=False)["image"]
    self.assertAllClose(got, self.evaluate(expected))

  def test_training_augmentation_in_graph_mode_with_unknown_batch(self):
    spec = _spec(8, 8, 1)
    with tf.Graph().as_default():
      raw = tf.compat.v1.placeholder(tf.uint8, [None, 8, 8, 1])
      out = pp.apply(("random_crop", "random_flip", "scale"), {"image": raw}, spec, True)["image"]
      with tf.compat.v1.Session() as sess:
        got = sess.run(out, {raw: _images(5, 8, 8, 1)})
    self.assertEqual(got.shape, (5, 8, 8, 1))
    self.assertBetween(float(got.max()), 0.0, 1.0)


if __name__ == "__main__":
  tf.test.main()
