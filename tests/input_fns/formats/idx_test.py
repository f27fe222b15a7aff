"""IDX (MNIST family): exact round trips, plain and gzipped, and every malformed file named."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns.formats import base
from input_fns.formats import idx
from input_fns.formats import registry
from tests.testing import data as test_data


def _mnist_like(n, seed=0, classes=10):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
  images[:, 0, 0], images[:, 0, 1] = divmod(np.arange(n), 256)  # all distinct
  return images, (np.arange(n) % classes).astype(np.uint8)


class IdxTest(tf.test.TestCase, parameterized.TestCase):

  def _files(self, n=100, gz=False, seed=0, prefix="train"):
    d = self.create_tempdir().full_path
    images, labels = _mnist_like(n, seed)
    ext = ".gz" if gz else ""
    return (test_data.write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte{ext}"), images, gz),
            test_data.write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte{ext}"), labels, gz),
            images, labels)

  @parameterized.named_parameters(("plain", False), ("gzip", True))
  def test_round_trip_with_stratified_split(self, gz):
    images_path, labels_path, images, labels = self._files(gz=gz)
    out = self.create_tempdir().full_path
    m = test_data.convert("idx", base.SourceOptions(images=images_path, labels=labels_path,
                                                   eval_fraction=0.2, seed=3), out, num_shards=3,
                         shuffle_seed=3)
    self.assertEqual((m.count("train"), m.count("eval")), (80, 20))
    self.assertEqual(m.spec.input_feature.shape, (6, 5, 1))
    self.assertEqual(m.spec.label_names, tuple(str(i) for i in range(10)))
    got = []
    for split in ("train", "eval"):
      features, got_labels = test_data.read_split(m, split)
      got += test_data.example_keys(features["image"], got_labels)
      if split == "eval":  # stratified: 2 of each class
        self.assertEqual(np.bincount(got_labels).tolist(), [2] * 10)
    self.assertEqual(sorted(got), test_data.example_keys(images[..., None], labels))

  def test_separate_eval_files_are_the_eval_split(self):
    images_path, labels_path, images, labels = self._files(n=50)
    eval_images_path, eval_labels_path, eval_images, eval_labels = self._files(
        n=12, seed=1, prefix="t10k")
    out = self.create_tempdir().full_path
    m = test_data.convert("idx", base.SourceOptions(
        images=images_path, labels=labels_path, eval_images=eval_images_path,
        eval_labels=eval_labels_path), out, num_shards=2)
    self.assertEqual((m.count("train"), m.count("eval")), (50, 12))
    features, got = test_data.read_split(m, "eval")
    self.assertEqual(test_data.example_keys(features["image"], got),
                     test_data.example_keys(eval_images[..., None], eval_labels))
    self.assertIsNone(m.source["eval_fraction"])

  def test_same_seed_gives_identical_shards(self):
    images_path, labels_path, _, _ = self._files()
    opts = base.SourceOptions(images=images_path, labels=labels_path, seed=5)
    a, b = self.create_tempdir().full_path, self.create_tempdir().full_path
    test_data.convert("idx", opts, a, num_shards=2, shuffle_seed=5, workers=1)
    test_data.convert("idx", opts, b, num_shards=2, shuffle_seed=5, workers=2)
    self.assertEqual({k: v[2] for k, v in test_data.dir_snapshot(a).items()},
                     {k: v[2] for k, v in test_data.dir_snapshot(b).items()})

  def test_wrong_magic(self):
    images_path, labels_path, _, _ = self._files()
    with self.assertRaisesRegex(idx.IdxError, f"{labels_path}: wrong magic number 0x00000801; "
                                "an IDX images file starts with 0x00000803"):
      registry.open_source("idx", base.SourceOptions(images=labels_path, labels=labels_path))
    del images_path

  def test_image_and_label_counts_differ(self):
    images_path, _, _, _ = self._files(n=10)
    _, labels_path, _, _ = self._files(n=9)
    with self.assertRaisesRegex(idx.IdxError, f"{images_path} holds 10 images but {labels_path} "
                                "holds 9 labels"):
      registry.open_source("idx", base.SourceOptions(images=images_path, labels=labels_path))

  def test_truncated_gzip(self):
    images_path, labels_path, _, _ = self._files(gz=True)
    data = open(images_path, "rb").read()
    open(images_path, "wb").write(data[:len(data) // 2])
    with self.assertRaisesRegex(idx.IdxError, f"{images_path}: truncated or corrupt gzip data"):
      registry.open_source("idx", base.SourceOptions(images=images_path, labels=labels_path))

  def test_truncated_data(self):
    images_path, labels_path, _, _ = self._files(n=10)
    data = open(images_path, "rb").read()
    open(images_path, "wb").write(data[:-7])
    with self.assertRaisesRegex(idx.IdxError, f"{images_path}: header says 10 x 6 x 5 = 300 bytes "
                                "of data but the file has 293"):
      registry.open_source("idx", base.SourceOptions(images=images_path, labels=labels_path))

  def test_empty_and_missing(self):
    d = self.create_tempdir().full_path
    images = test_data.write_idx(os.path.join(d, "i"), np.zeros((0, 2, 2)))
    labels = test_data.write_idx(os.path.join(d, "l"), np.zeros((0,)))
    with self.assertRaisesRegex(idx.IdxError, f"empty source: {images} holds no images"):
      registry.open_source("idx", base.SourceOptions(images=images, labels=labels))
    with self.assertRaisesRegex(base.SourceError, f"--labels={d}/nope: no such file"):
      registry.open_source("idx", base.SourceOptions(images=images, labels=f"{d}/nope"))
    with self.assertRaisesRegex(base.SourceError, "--images is required"):
      registry.open_source("idx", base.SourceOptions())

  def test_eval_fraction_conflicts_with_eval_files(self):
    images_path, labels_path, _, _ = self._files(n=10)
    with self.assertRaisesRegex(base.FormatError, "drop it when passing --eval_images"):
      registry.open_source("idx", base.SourceOptions(
          images=images_path, labels=labels_path, eval_images=images_path,
          eval_labels=labels_path, eval_fraction=0.1))

  def test_one_class_is_not_a_classifier(self):
    d = self.create_tempdir().full_path
    images = test_data.write_idx(os.path.join(d, "i"), np.zeros((20, 2, 2)))
    labels = test_data.write_idx(os.path.join(d, "l"), np.zeros((20,)))
    with self.assertRaisesRegex(base.SourceError, "has 1 class"):
      registry.open_source("idx", base.SourceOptions(images=images, labels=labels,
                                                     eval_fraction=0.0))


if __name__ == "__main__":
  tf.test.main()
