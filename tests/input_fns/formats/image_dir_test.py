"""image_dir: class folders of PNG/JPEG round trip exactly; a broken image is named and leaves
nothing behind."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from input_fns import writer
from input_fns.formats import base
from input_fns.formats import image_dir
from input_fns.formats import registry
from tests.testing import data as test_data


class ImageDirTest(tf.test.TestCase, parameterized.TestCase):

  def _tree(self, per_class=6, size=(5, 4), mode="RGB", classes=("dog", "cat", "bird")):
    """root/<class>/<i>.png of distinct random images; returns (root, {relpath: (array, label)})."""
    root = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    expected = {}
    for label, name in enumerate(sorted(classes)):
      os.makedirs(os.path.join(root, name))
      for i in range(per_class):
        shape = size + ((3,) if mode == "RGB" else ())
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        rel = os.path.join(name, f"{i}.png")
        Image.fromarray(pixels, mode).save(os.path.join(root, rel))
        expected[rel] = (pixels.reshape(size + (-1,)), label)
    return root, expected

  @parameterized.named_parameters(("rgb", "RGB", 3), ("grey", "L", 1))
  def test_png_round_trip_is_exact(self, mode, channels):
    root, expected = self._tree(mode=mode)
    open(os.path.join(root, "cat", "notes.txt"), "w").write("ignored")
    out = self.create_tempdir().full_path
    m = test_data.convert("image_dir", base.SourceOptions(input=root, channels=channels,
                                                         eval_fraction=1 / 3), out, num_shards=2,
                         shuffle_seed=0)
    self.assertEqual(m.spec.label_names, ("bird", "cat", "dog"))
    self.assertEqual(m.spec.input_feature.shape, (5, 4, channels))
    self.assertEqual((m.count("train"), m.count("eval")), (12, 6))
    got = []
    for split in ("train", "eval"):
      features, labels = test_data.read_split(m, split)
      got += test_data.example_keys(features["image"], labels)
    self.assertEqual(sorted(got), test_data.example_keys(
        [v for v, _ in expected.values()], [l for _, l in expected.values()]))

  def test_what_it_does_not_read_is_counted_and_named_in_one_warning(self):
    root, _ = self._tree(per_class=2)
    for rel in ("cat/notes.txt", "dog/photo.gif", "README.md", "bird/.DS_Store", "a.png"):
      with open(os.path.join(root, rel), "w") as f:
        f.write("not an image")
    os.makedirs(os.path.join(root, "dog", "more"))

    with self.assertLogs(level="WARNING") as logs:
      source = registry.open_source("image_dir", base.SourceOptions(input=root))

    # Hidden files are skipped without a word, as always.
    self.assertEqual(source.skipped,
                     ("README.md", "a.png", "cat/notes.txt", "dog/more/", "dog/photo.gif"))
    self.assertEqual([r.getMessage() for r in logs.records],
                     [f"{root}: skipped 5 entries (only .png/.jpg/.jpeg files inside class "
                      "folders are read): README.md, a.png, cat/notes.txt, dog/more/, "
                      "dog/photo.gif"])
    with open(os.path.join(root, "cat", "z.bmp"), "w"):
      pass
    with self.assertLogs(level="WARNING") as logs:
      registry.open_source("image_dir", base.SourceOptions(input=root))
    self.assertRegex(logs.records[0].getMessage(), r"skipped 6 entries .*dog/more/ and 1 more$")

  def test_jpeg_and_resize_match_pillow(self):
    root, _ = self._tree(per_class=2, size=(9, 7))
    jpeg = os.path.join(root, "cat", "photo.JPG")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(jpeg, format="JPEG")
    out = self.create_tempdir().full_path
    m = test_data.convert("image_dir", base.SourceOptions(input=root, image_size=(4, 6),
                                                         eval_fraction=0.0), out)
    features, _ = test_data.read_split(m, "train")
    self.assertEqual(features["image"].shape, (7, 4, 6, 3))
    want = np.asarray(Image.open(jpeg).convert("RGB").resize((6, 4), Image.BILINEAR))
    self.assertIn(want.tobytes(), [x.tobytes() for x in features["image"]])

  def test_unreadable_image_is_named_and_nothing_is_left(self):
    root, _ = self._tree()
    bad = os.path.join(root, "dog", "3.png")
    open(bad, "wb").write(b"\x89PNG not really")
    out = os.path.join(self.create_tempdir().full_path, "out")
    with self.assertRaisesRegex(writer.BadRecordError, f"^{bad}: unreadable image"):
      test_data.convert("image_dir", base.SourceOptions(input=root), out, num_shards=3)
    self.assertFalse(os.path.exists(out))

  def test_images_of_another_size_need_image_size(self):
    root, _ = self._tree(per_class=3)
    odd = os.path.join(root, "dog", "9.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(odd)
    out = os.path.join(self.create_tempdir().full_path, "out")
    with self.assertRaisesRegex(writer.BadRecordError,
                                f"{odd}: image is 8x8 .*pass --image_size=H,W"):
      test_data.convert("image_dir", base.SourceOptions(input=root, eval_fraction=0.0), out)
    self.assertFalse(os.path.exists(out))

  def test_folder_errors(self):
    root = self.create_tempdir().full_path
    open(os.path.join(root, "loose.png"), "wb").write(b"")
    with self.assertRaisesRegex(image_dir.ImageDirError, f"{root}: no class folders"):
      registry.open_source("image_dir", base.SourceOptions(input=root))
    os.makedirs(os.path.join(root, "a"))
    os.makedirs(os.path.join(root, "b"))
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(os.path.join(root, "a", "x.png"))
    with self.assertRaisesRegex(image_dir.ImageDirError,
                                f"{root}/b: class folder holds no .png/.jpg/.jpeg images"):
      registry.open_source("image_dir", base.SourceOptions(input=root))
    with self.assertRaisesRegex(image_dir.ImageDirError, f"--input={root}/nope: no such folder"):
      registry.open_source("image_dir", base.SourceOptions(input=f"{root}/nope"))
    with self.assertRaisesRegex(image_dir.ImageDirError, "--channels must be 1 or 3, got 2"):
      registry.open_source("image_dir", base.SourceOptions(input=root, channels=2))

  def test_unreadable_first_image_is_named_up_front(self):
    root, _ = self._tree(per_class=2)
    first = os.path.join(root, "bird", "0.png")
    open(first, "wb").write(b"junk")
    with self.assertRaisesRegex(image_dir.ImageDirError, f"{first}: unreadable image"):
      registry.open_source("image_dir", base.SourceOptions(input=root))


if __name__ == "__main__":
  tf.test.main()
