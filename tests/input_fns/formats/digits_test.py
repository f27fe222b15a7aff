"""digits: the embedded UCI digits convert exactly, split stratified and seeded."""

import numpy as np
import tensorflow as tf

from input_fns import digits as digits_data
from input_fns.formats import base
from tests.testing import data as test_data


class DigitsTest(tf.test.TestCase):

  def test_round_trip_is_exact(self):
    out = self.create_tempdir().full_path
    m = test_data.convert("digits", base.SourceOptions(eval_fraction=0.2, seed=0), out,
                         num_shards=2, shuffle_seed=0)
    images, labels = digits_data.load()
    self.assertEqual(m.count("train") + m.count("eval"), 1797)
    self.assertEqual(m.count("eval"), round(1797 * 0.2))
    self.assertEqual(m.spec.value_range, (0.0, 16.0))
    got = []
    for split in ("train", "eval"):
      features, got_labels = test_data.read_split(m, split)
      got += test_data.example_keys(features["image"], got_labels)
      if split == "eval":
        counts = np.bincount(got_labels, minlength=10)
        self.assertLessEqual(counts.max() - counts.min(), 2)  # stratified
    self.assertEqual(sorted(got), test_data.example_keys(images, labels))
    self.assertEqual(m.source["format"], "digits")


if __name__ == "__main__":
  tf.test.main()
