"""Stratified splits: seeded, class proportions kept, the requested size, clear errors."""

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from input_fns import splits


class SplitsTest(parameterized.TestCase):

  def test_same_seed_same_split_other_seed_other_split(self):
    labels = np.repeat(np.arange(5), 40)
    a = splits.stratified_split(labels, 0.25, seed=3)
    np.testing.assert_array_equal(a, splits.stratified_split(labels, 0.25, seed=3))
    self.assertFalse(np.array_equal(a, splits.stratified_split(labels, 0.25, seed=4)))

  def test_each_class_keeps_its_share(self):
    labels = np.concatenate([np.zeros(100), np.ones(50), np.full(10, 2)]).astype(int)
    out = splits.stratified_split(labels, 0.2, seed=0)
    for c, n_eval in ((0, 20), (1, 10), (2, 2)):
      self.assertEqual(int(np.sum((labels == c) & (out == splits.EVAL))), n_eval)

  @parameterized.parameters((0.1, 4), (0.05, 2), (0.3, 12))
  def test_total_eval_size_is_rounded_over_all_examples(self, fraction, expected):
    # 10 classes x 4 examples: per-class rounding would give 0 eval examples at 0.1.
    labels = np.repeat(np.arange(10), 4)
    out = splits.stratified_split(labels, fraction, seed=1)
    self.assertEqual(int(np.sum(out == splits.EVAL)), expected)

  def test_split_indices(self):
    labels = np.repeat(np.arange(2), 10)
    out = splits.split_indices(labels, 0.2, seed=0)
    self.assertEqual(sorted(out), [splits.EVAL, splits.TRAIN])
    self.assertLen(out[splits.EVAL], 4)
    self.assertEqual(sorted(np.concatenate(list(out.values()))), list(range(20)))
    self.assertEqual(list(splits.split_indices(labels, 0.0, seed=0)), [splits.TRAIN])

  @parameterized.named_parameters(
      ("too_big", 1.0, 10, r"--eval_fraction must be in \[0, 1\)"),
      ("negative", -0.1, 10, r"--eval_fraction must be in \[0, 1\)"),
      ("no_eval_left", 0.01, 10, "leaves no eval example"),
      ("no_train_left", 0.9, 1, "leaves no training example"),
  )
  def test_errors(self, fraction, n, message):
    with self.assertRaisesRegex(splits.SplitError, message):
      splits.split_indices(np.zeros(n, int), fraction, seed=0, source="x.csv")


if __name__ == "__main__":
  absltest.main()
