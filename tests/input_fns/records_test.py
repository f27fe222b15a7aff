"""records: the TF-free encoder and framing agree with TensorFlow, byte for byte where it counts."""

import gzip
import os
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns import records


def _spec():
  return fs.FeatureSpec(
      features=(fs.Feature("image", "uint8", (4, 3, 2)),
                fs.Feature("tokens", "int64", (5,), "int64_list"),
                fs.Feature("extra", "float32", (2,), "float_list")),
      input_key="image", kind=fs.IMAGE, label_names=[str(i) for i in range(300)])


def _values(rng, i):
  tokens = (rng.integers(-2**63, 2**63 - 1, (5,), dtype=np.int64) if i % 2
            else rng.integers(0, 1 << 20, (5,)))
  return {"image": rng.integers(0, 256, (4, 3, 2), dtype=np.uint8), "tokens": tokens,
          "extra": rng.standard_normal(2).astype(np.float32)}


class ExampleEncoderTest(tf.test.TestCase, parameterized.TestCase):

  def test_parses_to_the_same_example_as_feature_spec_encode(self):
    spec = _spec()
    enc = records.ExampleEncoder(spec)
    rng = np.random.default_rng(0)
    for i in range(200):
      values, label = _values(rng, i), i % 300
      ours = enc.encode(values, label)
      self.assertEqual(tf.train.Example.FromString(ours),
                       tf.train.Example.FromString(spec.encode(values, label)))
      self.assertLen(ours, len(spec.encode(values, label)))

  @parameterized.named_parameters(("binary", fs.BINARY), ("regression", fs.REGRESSION))
  def test_table_examples_equal_feature_spec_encode(self, label_kind):
    spec = fs.table_spec(
        [fs.numeric_column("age"), fs.numeric_column("xy", (2,)), fs.categorical_column("work"),
         fs.categorical_column("tags", multivalent=True, max_values=3),
         fs.categorical_column("zip", "int64"),
         fs.text_column("note")],
        label_names=("no", "yes") if label_kind == fs.BINARY else (), label_kind=label_kind,
        weight_key="w")
    enc = records.ExampleEncoder(spec)
    rng = np.random.default_rng(3)
    for i in range(100):
      values = {"age": rng.choice([np.nan, rng.standard_normal()]),
                "xy": rng.standard_normal(2), "work": rng.choice(["", "a", "\u00e9t\u00e9"]),
                "tags": list(rng.choice(["x", "y", "z"], size=i % 4)),
                "zip": None if i % 5 == 0 else int(rng.integers(0, 1 << 40)),
                "note": None if i % 7 == 0 else "word " * (i % 3),
                fs.WEIGHT_KEY: float(i % 3)}
      label = i % 2 if label_kind == fs.BINARY else float(rng.standard_normal())
      ours = enc.encode(values, label)
      # Compared re-serialized (NaN != NaN in proto equality; the bytes are what matters).
      canonical = lambda b: tf.train.Example.FromString(b).SerializeToString(deterministic=True)
      self.assertEqual(canonical(ours), canonical(spec.encode(values, label)))
      self.assertLen(ours, len(spec.encode(values, label)))
    self.assertIsNone(enc.encode_batch({"age": np.zeros((2, 1))}, np.zeros(2, np.int64)))

  def test_cached_and_packed_table_entries_equal_the_general_path(self):
    spec = fs.table_spec([fs.numeric_column("x"), fs.categorical_column("c"),
                          fs.categorical_column("i", "int64"), fs.text_column("t")],
                         label_names=("a", "b"))
    rows = [{"x": x, "c": c, "i": i, "t": t}
            for x in (0.5, np.float32(-2.25), 3, np.nan, None, np.float64(1e-40))
            for c in ("red", "", None, "red", b"blue")
            for i in (7, np.int64(7), None)
            for t in ("a b", "", None)]
    with mock.patch.object(records, "_MAX_CACHED", 3):  # the cache also empties and refills
      enc = records.ExampleEncoder(spec)
      canonical = lambda b: tf.train.Example.FromString(b).SerializeToString(deterministic=True)
      for row in rows:
        self.assertEqual(canonical(enc.encode(row, 1)), canonical(spec.encode(row, 1)), row)
      for bad, message in (({"x": 1e39}, "does not fit float32"), ({"c": ["a"]}, "one value"),
                           ({"i": -1}, "non-negative integer id"), ({"x": "one"}, "not a number")):
        with self.assertRaisesRegex(records.EncodeError, message):
          enc.encode({**rows[0], **bad}, 0)

  def test_bytes_are_deterministic_and_keys_sorted(self):
    spec = _spec()
    values = _values(np.random.default_rng(1), 0)
    a = records.ExampleEncoder(spec).encode(values, 7)
    self.assertEqual(a, records.ExampleEncoder(spec).encode(dict(reversed(values.items())), 7))
    positions = [a.index(k.encode()) for k in ("extra", "image", "label", "tokens")]
    self.assertEqual(positions, sorted(positions))

  def test_packed_varints_match_protobuf(self):
    values = np.array([0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -2**63], np.int64)
    expected = tf.train.Int64List(value=values).SerializeToString()
    self.assertEqual(records._field(0x0A, records.packed_varints(values)), expected)

  @parameterized.named_parameters(
      ("wrong_shape", {"image": np.zeros((4, 3, 1))}, 0, "expected shape"),
      ("missing", {}, 0, "'image' is missing"),
      ("does_not_fit", {"image": np.full((4, 3, 2), 300)}, 0, "do not fit dtype uint8"),
      ("label_range", {"image": np.zeros((4, 3, 2))}, 3, r"label 3 is out of range \[0, 3\)"),
      ("negative_label", {"image": np.zeros((4, 3, 2))}, -1, "label -1 is out of range"),
  )
  def test_bad_values_are_refused_like_feature_spec(self, values, label, message):
    spec = fs.image_spec(4, 3, 2, ["a", "b", "c"])
    with self.assertRaisesRegex(records.EncodeError, message):
      records.ExampleEncoder(spec).encode(values, label)
    with self.assertRaisesRegex(fs.SpecError, message):
      spec.encode(values, label)


class EncodeBatchTest(tf.test.TestCase, parameterized.TestCase):

  def _fixed_spec(self, num_classes=300):
    return fs.FeatureSpec(
        features=(fs.Feature("image", "uint8", (4, 3, 2)),
                  fs.Feature("extra", "float32", (2,), "float_list"),
                  fs.Feature("z", "float32", (3,))),
        input_key="image", kind=fs.IMAGE, label_names=[str(i) for i in range(num_classes)])

  @parameterized.parameters((range(0, 100),), (range(128, 300),), ([5],))
  def test_rows_equal_per_example_encoding(self, label_range):
    spec = self._fixed_spec()
    enc = records.ExampleEncoder(spec)
    rng = np.random.default_rng(0)
    labels = np.array(list(label_range))
    n = len(labels)
    values = {"image": rng.integers(0, 256, (n, 4, 3, 2)).astype(np.int64),  # cast exactly
              "extra": rng.standard_normal((n, 2)).astype(np.float32),
              "z": rng.standard_normal((n, 3)).astype(np.float32)}
    rows = enc.encode_batch(values, labels)
    self.assertEqual(rows.shape[0], n)
    for i in range(n):
      one = enc.encode({k: v[i] for k, v in values.items()}, labels[i])
      self.assertEqual(rows[i].tobytes(), one)

  @parameterized.named_parameters(
      ("mixed_label_lengths", lambda v, l: (v, np.array([1, 200]))),
      ("label_out_of_range", lambda v, l: (v, np.array([1, 300]))),
      ("wrong_shape", lambda v, l: ({**v, "z": np.zeros((2, 4), np.float32)}, l)),
      ("does_not_fit", lambda v, l: ({**v, "image": np.full((2, 4, 3, 2), 256)}, l)),
      ("missing", lambda v, l: ({"image": v["image"]}, l)),
  )
  def test_batches_that_do_not_qualify_return_none(self, change):
    enc = records.ExampleEncoder(self._fixed_spec())
    values = {"image": np.zeros((2, 4, 3, 2), np.uint8), "extra": np.zeros((2, 2), np.float32),
              "z": np.zeros((2, 3), np.float32)}
    self.assertIsNotNone(enc.encode_batch(values, np.array([1, 2])))
    self.assertIsNone(enc.encode_batch(*change(values, np.array([1, 2]))))

  def test_int64_lists_are_not_batched(self):
    self.assertIsNone(records.ExampleEncoder(_spec()).encode_batch(
        _values(np.random.default_rng(0), 0), np.array([0])))

  def test_write_rows_equals_write(self):
    d = self.create_tempdir().full_path
    rows = np.random.default_rng(0).integers(0, 256, (50, 37), dtype=np.uint8)
    with records.ShardWriter(os.path.join(d, "a"), buffer_bytes=500) as w:
      w.write_rows(rows[:20])
      w.write_rows(rows[20:])
    with records.ShardWriter(os.path.join(d, "b")) as w:
      for r in rows:
        w.write(r.tobytes())
    self.assertEqual(open(os.path.join(d, "a"), "rb").read(), open(os.path.join(d, "b"), "rb").read())


class ShardWriterTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("", "GZIP")
  def test_tf_reads_what_we_write(self, compression):
    path = os.path.join(self.create_tempdir().full_path, "x.tfrecord")
    rows = [os.urandom(n) for n in (0, 1, 100, 5000, 100)]
    with records.ShardWriter(path, compression, buffer_bytes=1000) as w:
      for r in rows:
        w.write(r)
    count, nbytes, sha = w.close()
    self.assertEqual(count, len(rows))
    self.assertEqual(nbytes, os.path.getsize(path))
    import hashlib  # pylint: disable=g-import-not-at-top
    self.assertEqual(sha, hashlib.sha256(open(path, "rb").read()).hexdigest())
    read = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression or None)]
    self.assertEqual(read, rows)
    self.assertEqual(list(records.read_records(path, compression)), rows)

  def test_uncompressed_bytes_equal_tf_writer(self):
    d = self.create_tempdir().full_path
    rows = [os.urandom(n) for n in (3, 70, 1)]
    with records.ShardWriter(os.path.join(d, "ours")) as w:
      for r in rows:
        w.write(r)
    with tf.io.TFRecordWriter(os.path.join(d, "tf")) as w:
      for r in rows:
        w.write(r)
    self.assertEqual(open(os.path.join(d, "ours"), "rb").read(),
                     open(os.path.join(d, "tf"), "rb").read())

  def test_gzip_output_is_a_gzip_stream_of_the_framing(self):
    d = self.create_tempdir().full_path
    with records.ShardWriter(os.path.join(d, "a.gz"), "GZIP") as w:
      w.write(b"abc")
    with gzip.open(os.path.join(d, "a.gz")) as f:
      self.assertEqual(f.read(), records.frame(b"abc"))

  @parameterized.named_parameters(
      ("truncated", lambda b: b[:-3], "record 1 is truncated"),
      ("flipped_data", lambda b: b[:41] + bytes([b[41] ^ 1]) + b[42:], "record 1 is corrupted"),
      ("flipped_length", lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "record 1 has a corrupted length"),
  )
  def test_read_records_names_the_bad_record(self, damage, message):
    path = os.path.join(self.create_tempdir().full_path, "x.tfrecord")
    with records.ShardWriter(path) as w:
      w.write(b"0123456789")
      w.write(b"abcdefghij")
    data = open(path, "rb").read()
    open(path, "wb").write(damage(data))
    with self.assertRaisesRegex(records.RecordFileError, f"{path}: {message}"):
      list(records.read_records(path))


if __name__ == "__main__":
  tf.test.main()
