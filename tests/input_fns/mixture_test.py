"""Flag syntaxes for several datasets: weighted training sources and named eval sets."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import mixture
from input_fns import writer


class ParseSourcesTest(parameterized.TestCase):

  def test_weights_are_normalised(self):
    got = mixture.parse_sources("data/a:3, data/b:1")
    self.assertEqual(got, (mixture.Source("data/a", 0.75), mixture.Source("data/b", 0.25)))

  def test_no_weights_means_equal(self):
    got = mixture.parse_sources("a,b,c")
    self.assertEqual([s.directory for s in got], ["a", "b", "c"])
    for s in got:
      self.assertAlmostEqual(s.weight, 1 / 3)

  def test_url_colon_is_not_a_weight(self):
    got = mixture.parse_sources("gs://bucket/a:0.7,gs://bucket/b:0.3")
    self.assertEqual(got, (mixture.Source("gs://bucket/a", 0.7), mixture.Source("gs://bucket/b", 0.3)))
    self.assertEqual(mixture.parse_sources("gs://bucket/a"), (mixture.Source("gs://bucket/a", 1.0),))

  def test_result_is_frozen(self):
    s = mixture.parse_sources("a")[0]
    with self.assertRaises(AttributeError):
      s.weight = 2.0  # pytype: disable=not-writable

  @parameterized.named_parameters(
      ("empty", " , ", "no dataset directory"),
      ("not_a_number", "a:x,b:1", "weight 'x' is not a number"),
      ("some_weights", "a:0.5,b", "give a weight to every source or to none; missing for b"),
      ("zero", "a:0,b:1", "weight of a must be a positive number"),
      ("negative", "a:-1,b:1", "weight of a must be a positive number"),
      ("infinite", "a:inf,b:1", "weight of a must be a positive number"),
      ("twice", "a:1,a:2", "a given more than once"),
  )
  def test_bad_lists(self, text, message):
    with self.assertRaisesRegex(mixture.MixtureError, message) as cm:
      mixture.parse_sources(text, what="--train_data")
    self.assertIsInstance(cm.exception, errors.UserInputError)
    self.assertIn("--train_data", str(cm.exception))


class ParseEvalSetsTest(parameterized.TestCase):

  def test_named_and_bare(self):
    got = mixture.parse_eval_sets("clean=data/mnist, data/fashion/,noisy=gs://b/noisy")
    self.assertEqual(got, (mixture.EvalSet("clean", "data/mnist"),
                           mixture.EvalSet("fashion", "data/fashion/"),
                           mixture.EvalSet("noisy", "gs://b/noisy")))

  @parameterized.named_parameters(
      ("empty", "", "no evaluation dataset"),
      ("empty_dir", "a=", "is not name=dir"),
      ("bad_name", "a b=dir", "may only hold"),
      ("duplicate", "x=a,x=b", "x used more than once"),
  )
  def test_bad_lists(self, text, message):
    with self.assertRaisesRegex(mixture.MixtureError, message):
      mixture.parse_eval_sets(text, what="--eval_data")


class CompatibilityTest(tf.test.TestCase):

  def _write(self, spec, n=6):
    d = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    f = spec.input_feature
    examples = [("train", {f.name: rng.integers(0, 10, f.shape).astype(f.dtype)}, i % 2)
                for i in range(n)]
    writer.write_dataset(d, spec, examples, num_shards=1, source={"format": "test"})
    return d

  def test_read_sources_gives_manifests_and_weights(self):
    spec = fs.image_spec(2, 2, 1, ["a", "b"])
    a, b = self._write(spec), self._write(spec)
    pairs = mixture.read_sources(mixture.parse_sources(f"{a}:1,{b}:3"))
    self.assertEqual([m.directory for m, _ in pairs], [a, b])
    self.assertEqual([w for _, w in pairs], [0.25, 0.75])

  def test_read_eval_sets(self):
    spec = fs.image_spec(2, 2, 1, ["a", "b"])
    a, b = self._write(spec, n=4), self._write(spec, n=6)
    got = mixture.read_eval_sets(mixture.parse_eval_sets(f"small={a},large={b}"))
    self.assertEqual([(name, m.directory, m.count("train")) for name, m in got],
                     [("small", a, 4), ("large", b, 6)])

  def test_incompatible_specs_name_both_directories(self):
    a = self._write(fs.image_spec(2, 2, 1, ["a", "b"]))
    b = self._write(fs.image_spec(3, 2, 1, ["a", "b"]))
    with self.assertRaises(mixture.MixtureError) as cm:
      mixture.read_sources(mixture.parse_sources(f"{a},{b}"))
    message = str(cm.exception)
    self.assertIn(a, message)
    self.assertIn(b, message)
    self.assertIn("features", message)

  def test_different_label_names_are_incompatible(self):
    a = self._write(fs.image_spec(2, 2, 1, ["a", "b"]))
    b = self._write(fs.image_spec(2, 2, 1, ["cat", "dog"]))
    with self.assertRaisesRegex(mixture.MixtureError, "label_names"):
      mixture.read_sources(mixture.parse_sources(f"{a},{b}"))


if __name__ == "__main__":
  tf.test.main()
