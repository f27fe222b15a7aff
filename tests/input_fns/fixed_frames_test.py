"""The fixed-frame reader: taken only when records have one size; decodes every example
exactly; refuses files that are not a sequence of equal frames, naming them."""

import numpy as np
import tensorflow as tf

from input_fns import feature_spec as fs
from input_fns import fixed_frames
from input_fns import manifest as manifest_lib
from input_fns import writer

_SPEC = fs.FeatureSpec(
    features=(fs.Feature("image", "uint8", (4, 3, 2)),
              fs.Feature("depth", "float32", (2, 2), "raw"),
              fs.Feature("aux", "float32", (3,), "float_list")),
    input_key="image", kind=fs.IMAGE, label_names=tuple("abcde"))


def _example_values(i):
  rng = np.random.default_rng(i)
  return {"image": rng.integers(0, 256, (4, 3, 2), dtype=np.uint8),
          "depth": rng.standard_normal((2, 2)).astype(np.float32),
          "aux": rng.standard_normal(3).astype(np.float32)}


class FixedFramesTest(tf.test.TestCase):

  def _write(self, n=23, num_shards=2, compression="", spec=_SPEC):
    d = self.create_tempdir().full_path
    examples = [("eval", _example_values(i), i % spec.num_classes) for i in range(n)]
    if spec is not _SPEC:
      examples = [("eval", {"image": v["image"]}, y) for _, v, y in examples]
    m = writer.write_dataset(d, spec, examples, num_shards=num_shards, source={"format": "test"},
                             compression=compression)
    return manifest_lib.read(d), examples

  def _read(self, m, chunk=4):
    stride = fixed_frames.record_bytes(m, "eval")
    self.assertIsNotNone(stride)
    segments, count = fixed_frames.segments(m, "eval", m.files("eval"), stride, chunk)
    ds = segments.flat_map(lambda *s: fixed_frames.read(s, stride, chunk, m.spec))
    out = {name: [] for name in ("image", "depth", "aux", "label")}
    for features, labels in ds:
      for name in ("image", "depth", "aux"):
        out[name].extend(features[name].numpy())
      out["label"].extend(labels.numpy())
    return out, count

  def _assert_matches(self, out, examples):
    got = sorted(range(len(out["label"])), key=lambda j: out["image"][j].tobytes())
    want = sorted(examples, key=lambda e: e[1]["image"].tobytes())
    self.assertLen(got, len(want))
    for j, (_, values, label) in zip(got, want):
      for name in ("image", "depth", "aux"):
        self.assertAllEqual(out[name][j], values[name])
      self.assertEqual(out["label"][j], label)

  def test_record_bytes(self):
    m, _ = self._write()
    shard = m.shards("eval")[0]
    self.assertEqual(fixed_frames.record_bytes(m, "eval"), shard.bytes // shard.count)
    self.assertIsNone(fixed_frames.record_bytes(self._write(compression="GZIP")[0], "eval"))
    many = fs.image_spec(4, 3, 2, [str(i) for i in range(200)])
    self.assertIsNone(fixed_frames.record_bytes(self._write(spec=many)[0], "eval"))
    tokens = fs.FeatureSpec(features=(fs.Feature("t", "int64", (3,), "int64_list"),),
                            input_key="t", kind=fs.TOKENS, label_names=("a", "b"), vocab_size=9)
    d = self.create_tempdir().full_path
    writer.write_dataset(d, tokens, [("eval", {"t": np.array([1, 2, 3])}, 0)], num_shards=1,
                         source={"format": "test"})
    self.assertIsNone(fixed_frames.record_bytes(manifest_lib.read(d), "eval"))

  def test_decodes_every_example_exactly(self):
    m, examples = self._write(n=23, num_shards=2)
    out, count = self._read(m, chunk=4)
    # Shards of 12 and 11 frames: one range of whole blocks each, plus the 11's remainder.
    self.assertEqual(count, 3)
    self._assert_matches(out, examples)

  def test_a_file_that_is_not_equal_frames_is_refused(self):
    m, _ = self._write(n=12, num_shards=1)
    stride = fixed_frames.record_bytes(m, "eval")
    path = m.files("eval")[0]
    with open(path, "rb") as f:
      data = bytearray(f.read())
    data[5 * stride] += 1  # the sixth record's length field
    with open(path, "wb") as f:
      f.write(bytes(data))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, path):
      self._read(m, chunk=4)


if __name__ == "__main__":
  tf.test.main()
