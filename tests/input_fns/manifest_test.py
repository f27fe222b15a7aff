"""manifest.json: round trip, and verify() names the shard that is missing, truncated or corrupt."""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import writer

_SPEC = fs.image_spec(2, 2, 1, ["a", "b"])


class ManifestTest(tf.test.TestCase, parameterized.TestCase):

  def _dataset(self):
    d = self.create_tempdir().full_path
    examples = [("train" if i < 8 else "eval", {"image": np.full((2, 2, 1), i, np.uint8)}, i % 2)
                for i in range(10)]
    return writer.write_dataset(d, _SPEC, examples, num_shards=2, source={"format": "test"})

  def test_written_manifest_reads_back_equal(self):
    m = self._dataset()
    again = manifest_lib.read(m.directory)
    self.assertEqual(again, m)
    self.assertEqual(again.count("train"), 8)
    self.assertEqual(again.count("eval"), 2)
    self.assertLen(again.fingerprint, 64)
    self.assertEqual(again.writer_version, manifest_lib.WRITER_VERSION)
    with open(m.path) as f:
      d = json.load(f)
    self.assertEqual(d["label_names"], ["a", "b"])
    self.assertEqual(d["splits"]["train"]["count"], 8)
    self.assertEqual(set(d["splits"]["train"]["shards"][0]), {"name", "count", "bytes", "sha256"})
    m.verify("train")
    m.verify("eval")

  def test_describe_lists_splits_features_and_assets(self):
    m = dataclasses.replace(self._dataset(), assets={"vocab": "vocab.txt"})
    self.assertEqual(m.describe().splitlines(), [
        f"dataset: {m.directory}",
        "  eval: 2 examples in 2 shards",
        "  train: 8 examples in 2 shards",
        "  image 'image' uint8[2, 2, 1], 2 classes",
        "  vocab: vocab.txt",
        f"  manifest: {m.path}"])

  def test_assets(self):
    m = manifest_lib.Manifest(directory="/d", spec=_SPEC, splits={}, compression="", source={},
                              assets={"vocab": "vocab.txt"})
    self.assertEqual(m.asset_path("vocab"), "/d/vocab.txt")
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no 'labels' asset"):
      m.asset_path("labels")
    self.assertEqual(manifest_lib.parse(m.to_json(), "/d"), m)

  @parameterized.named_parameters(
      ("missing", lambda p: os.remove(p), "is missing"),
      ("truncated", lambda p: open(p, "r+b").truncate(10), r"is 10 bytes, manifest says \d+"),
      ("corrupted", lambda p: open(p, "r+b").write(b"\xff"), "is corrupted: its sha256 differs"),
  )
  def test_verify_names_the_bad_shard(self, damage, message):
    m = self._dataset()
    path = m.files("train")[1]
    damage(path)
    with self.assertRaisesRegex(manifest_lib.ManifestError, f"{path}.*{message}|{message}"):
      m.verify("train")
    m.verify("eval")  # other splits are unaffected

  @parameterized.named_parameters(
      ("not_json", "{", "is malformed: JSONDecodeError"),
      ("no_splits", '{"feature_spec": {}}', "is malformed"),
      ("bad_count", None, "count 99 != sum of its shards"),
  )
  def test_malformed_manifest(self, text, message):
    m = self._dataset()
    if text is None:
      d = json.loads(open(m.path).read())
      d["splits"]["train"]["count"] = 99
      text = json.dumps(d)
    with open(m.path, "w") as f:
      f.write(text)
    with self.assertRaisesRegex(manifest_lib.ManifestError, message):
      manifest_lib.read(m.directory)

  def test_no_manifest_and_unknown_split(self):
    d = self.create_tempdir().full_path
    with self.assertRaisesRegex(manifest_lib.ManifestError, "not a dataset directory"):
      manifest_lib.read(d)
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no split 'test'"):
      self._dataset().files("test")

  def test_rewriting_the_manifest_replaces_it_and_leaves_no_temporary(self):
    m = self._dataset()
    before = sorted(os.listdir(m.directory))
    changed = dataclasses.replace(m, source={"format": "rewritten"})
    manifest_lib.write(changed)
    self.assertEqual(manifest_lib.read(m.directory), changed)
    self.assertEqual(sorted(os.listdir(m.directory)), before)


if __name__ == "__main__":
  tf.test.main()
