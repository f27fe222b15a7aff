"""The parallel writer: exact round trips, byte-identical reruns, crash resume (real kill -9),
refusing other datasets, and leaving nothing behind on bad records."""

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import records
from input_fns import writer
from input_fns.formats import base
from tests.testing import data as test_data

_SPEC = fs.image_spec(3, 3, 1, ["a", "b", "c"])


class _Source(base.ArraySource):
  """n distinct 3x3 images; train is the first 3/4. Faults are not part of its identity, so a
  faulty and a healthy source are the same dataset."""

  def __init__(self, n=120, fail_at=None, error=None, delay=0.0, kill_at=None, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 3, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256  # distinct
    labels = np.arange(n) % 3
    cut = n - n // 4
    super().__init__(_SPEC, {"image": images}, labels,
                     {"train": np.arange(cut), "eval": np.arange(cut, n)},
                     description={"format": "test", "n": n}, identity={"n": n, "seed": seed},
                     record_name=lambda i: f"test record {i}")
    self.images, self.labels = images, labels
    self._fail_at, self._error, self._delay, self._kill_at = fail_at, error, delay, kill_at

  def load_batch(self, split, records):
    if self._fail_at is None and self._kill_at is None and not self._delay:
      return super().load_batch(split, records)
    return None  # one by one, through load(), where the faults are

  def load(self, split, record):
    if self._delay:
      time.sleep(self._delay)
    if record == self._fail_at:
      raise self._error
    if record == self._kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    return super().load(split, record)


def _shard_files(d):
  return sorted(f for f in os.listdir(d) if ".tfrecord" in f and not f.startswith("."))


def run_slow_write(output_dir: str) -> None:
  """Entry point of the subprocess that the kill -9 test kills mid-write."""
  writer.write(output_dir, _Source(delay=0.02),
               writer.WriteOptions(num_shards=6, workers=2, shuffle_seed=1))


class WriterTest(tf.test.TestCase, parameterized.TestCase):

  def _dir(self):
    return os.path.join(self.create_tempdir().full_path, "out")

  @parameterized.product(compression=("", "GZIP"), workers=(1, 2))
  def test_round_trip_is_exact(self, compression, workers):
    src = _Source()
    d = self._dir()
    m = writer.write(d, src, writer.WriteOptions(num_shards=3, compression=compression,
                                                 workers=workers))
    self.assertEqual(m, manifest_lib.read(d))
    for split in ("train", "eval"):
      idx = src.splits[split]
      self.assertEqual(m.count(split), len(idx))
      m.verify(split)
      # Without shuffling, shard i holds examples i, i+3, ...; files are read in order.
      order = np.concatenate([idx[i::3] for i in range(3)])
      features, labels = test_data.read_split(m, split)
      np.testing.assert_array_equal(features["image"], src.images[order])
      np.testing.assert_array_equal(labels, src.labels[order])
      self.assertEqual(features["image"].dtype, np.uint8)
    suffix = ".tfrecord.gz" if compression else ".tfrecord"
    self.assertEqual(_shard_files(d), sorted(
        f"{s}-{i:05d}-of-00003{suffix}" for s in ("train", "eval") for i in range(3)))
    self.assertCountEqual(os.listdir(d), _shard_files(d) + [manifest_lib.FILENAME])

  def test_same_seed_gives_byte_identical_datasets_whatever_the_workers(self):
    a, b, c = self._dir(), self._dir(), self._dir()
    writer.write(a, _Source(), writer.WriteOptions(num_shards=4, workers=1, shuffle_seed=7))
    writer.write(b, _Source(), writer.WriteOptions(num_shards=4, workers=2, shuffle_seed=7))
    writer.write(c, _Source(), writer.WriteOptions(num_shards=4, workers=2, shuffle_seed=8))
    snap_a, snap_b, snap_c = (test_data.dir_snapshot(x) for x in (a, b, c))
    self.assertEqual({k: v[2] for k, v in snap_a.items()}, {k: v[2] for k, v in snap_b.items()})
    self.assertNotEqual(snap_a["train-00000-of-00004.tfrecord"][2],
                        snap_c["train-00000-of-00004.tfrecord"][2])
    # Another seed shuffles differently but holds the same examples.
    fa, la = test_data.read_split(manifest_lib.read(a), "train")
    fc, lc = test_data.read_split(manifest_lib.read(c), "train")
    self.assertCountEqual([x.tobytes() + bytes([y]) for x, y in zip(fa["image"], la)],
                          [x.tobytes() + bytes([y]) for x, y in zip(fc["image"], lc)])

  def test_vectorized_and_per_record_paths_write_the_same_bytes(self):
    src = _Source()
    batched, single = self._dir(), self._dir()
    opts = writer.WriteOptions(num_shards=3, shuffle_seed=2)
    writer.write(batched, src, opts)
    examples = [(split, {"image": src.images[i]}, src.labels[i])
                for split, idx in src.splits.items() for i in idx]
    writer.write_dataset(single, _SPEC, examples, 3, {"format": "test"}, shuffle_seed=2)
    a, b = test_data.dir_snapshot(batched), test_data.dir_snapshot(single)
    del a["manifest.json"], b["manifest.json"]  # the sources' descriptions differ
    self.assertEqual({k: v[2] for k, v in a.items()}, {k: v[2] for k, v in b.items()})

  def test_write_dataset_keeps_its_api(self):
    d = self._dir()
    examples = [("train" if i % 5 else "eval", {"image": np.full((3, 3, 1), i, np.uint8)}, i % 3)
                for i in range(40)]
    m = writer.write_dataset(d, _SPEC, examples, num_shards=2, source={"format": "t"})
    self.assertEqual((m.count("train"), m.count("eval")), (32, 8))
    self.assertEqual(m.source["format"], "t")
    features, labels = test_data.read_split(m, "eval")
    expected = [i for i in range(40) if i % 5 == 0]
    expected = expected[0::2] + expected[1::2]
    np.testing.assert_array_equal(features["image"][:, 0, 0, 0], expected)
    np.testing.assert_array_equal(labels, [i % 3 for i in expected])
    # Same examples again: a no-op; other examples: refused.
    self.assertEqual(writer.write_dataset(d, _SPEC, examples, 2, {"format": "t"}), m)
    examples[3] = ("train", {"image": np.zeros((3, 3, 1), np.uint8)}, 0)
    with self.assertRaises(writer.DifferentDatasetError):
      writer.write_dataset(d, _SPEC, examples, 2, {"format": "t"})

  def test_rerun_of_a_complete_dataset_touches_nothing(self):
    d = self._dir()
    m = writer.write(d, _Source(), writer.WriteOptions(num_shards=3))
    before = test_data.dir_snapshot(d)
    self.assertEqual(writer.write(d, _Source(), writer.WriteOptions(num_shards=3, workers=1)), m)
    self.assertEqual(test_data.dir_snapshot(d), before)
    self.assertFalse(os.path.exists(os.path.join(d, writer.WRITING_DIR)))

  def test_crashed_worker_keeps_finished_shards_and_rerun_writes_only_the_rest(self):
    d = self._dir()
    opts = writer.WriteOptions(num_shards=4, workers=1)
    last = writer.plan(_Source(), opts)[-1]
    with self.assertRaisesRegex(RuntimeError, "shard writer crashed writing train-00003"):
      writer.write(d, _Source(fail_at=last.records[2], error=RuntimeError("bug")), opts)
    self.assertFalse(os.path.exists(os.path.join(d, manifest_lib.FILENAME)))
    visible = _shard_files(d)
    self.assertLen(visible, 7)  # every shard but the one that crashed
    self.assertNotIn(last.name, visible)
    self.assertEqual([f for f in os.listdir(os.path.join(d, writer.WRITING_DIR))
                      if f.endswith(".tmp")], [])
    before = test_data.dir_snapshot(d)
    m = writer.write(d, _Source(), opts)
    after = test_data.dir_snapshot(d)
    for name in visible:
      self.assertEqual(after[name][:2], before[name][:2], f"{name} was rewritten")
    self.assertIn(last.name, after)
    fresh = self._dir()
    writer.write(fresh, _Source(), opts)
    self.assertEqual({k: v[2] for k, v in after.items()},
                     {k: v[2] for k, v in test_data.dir_snapshot(fresh).items()})
    m.verify("train")

  def test_damaged_shard_is_rewritten_on_rerun(self):
    d = self._dir()
    opts = writer.WriteOptions(num_shards=2)
    last = writer.plan(_Source(), opts)[-1]
    with self.assertRaises(RuntimeError):
      writer.write(d, _Source(fail_at=last.records[0], error=RuntimeError("bug")), opts)
    victim = os.path.join(d, "eval-00000-of-00002.tfrecord")
    with open(victim, "r+b") as f:
      f.write(b"\0\0\0")  # same size, different sha256
    m = writer.write(d, _Source(), opts)
    m.verify("eval")
    m.verify("train")

  def test_kill_9_mid_write_leaves_only_complete_shards_and_rerun_finishes(self):
    d = self._dir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"from tests.input_fns import writer_test as t; t.run_slow_write({d!r})"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
      if os.path.isdir(d) and len(_shard_files(d)) >= 3:
        break
      time.sleep(0.01)
    if proc.poll() is not None:
      self.fail(f"the writer ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    time.sleep(0.5)  # workers die with their parent (PR_SET_PDEATHSIG); nothing else appears
    visible = _shard_files(d)
    time.sleep(0.5)
    self.assertEqual(_shard_files(d), visible)
    self.assertBetween(len(visible), 3, 11)
    self.assertFalse(os.path.exists(os.path.join(d, manifest_lib.FILENAME)))
    state = os.path.join(d, writer.WRITING_DIR)
    for name in visible:  # every visible shard is complete: its sidecar matches it
      n = len(list(records.read_records(os.path.join(d, name))))
      self.assertEqual(n, json.load(open(os.path.join(state, name + ".json")))["count"])
    before = test_data.dir_snapshot(d)
    opts = writer.WriteOptions(num_shards=6, workers=2, shuffle_seed=1)
    m = writer.write(d, _Source(), opts)
    after = test_data.dir_snapshot(d)
    for name in visible:
      self.assertEqual(after[name][:2], before[name][:2], f"{name} was rewritten")
    self.assertLen(_shard_files(d), 12)
    self.assertFalse(os.path.exists(state))
    fresh = self._dir()
    writer.write(fresh, _Source(), opts)
    self.assertEqual({k: v[2] for k, v in after.items()},
                     {k: v[2] for k, v in test_data.dir_snapshot(fresh).items()})
    for split in m.splits:
      m.verify(split)

  def test_another_complete_dataset_is_refused_and_untouched(self):
    d = self._dir()
    writer.write(d, _Source(), writer.WriteOptions(num_shards=2))
    before = test_data.dir_snapshot(d)
    with self.assertRaisesRegex(writer.DifferentDatasetError,
                                f"{d} already holds a different dataset .*delete it"):
      writer.write(d, _Source(seed=1), writer.WriteOptions(num_shards=2))
    with self.assertRaises(writer.DifferentDatasetError):  # same source, other sharding
      writer.write(d, _Source(), writer.WriteOptions(num_shards=3))
    self.assertEqual(test_data.dir_snapshot(d), before)
    self.assertFalse(os.path.exists(os.path.join(d, writer.WRITING_DIR)))

  def test_another_unfinished_dataset_is_refused_and_untouched(self):
    d = self._dir()
    opts = writer.WriteOptions(num_shards=2, workers=1)
    with self.assertRaises(RuntimeError):
      writer.write(d, _Source(fail_at=100, error=RuntimeError("bug")), opts)
    state = os.path.join(d, writer.WRITING_DIR)
    before = test_data.dir_snapshot(d), test_data.dir_snapshot(state)
    with self.assertRaisesRegex(writer.DifferentDatasetError, "holds an unfinished different"):
      writer.write(d, _Source(seed=3), opts)
    self.assertEqual((test_data.dir_snapshot(d), test_data.dir_snapshot(state)), before)

  def test_stray_shards_without_manifest_are_refused(self):
    d = self._dir()
    os.makedirs(d)
    open(os.path.join(d, "train-00000-of-00001.tfrecord"), "wb").write(b"x")
    with self.assertRaisesRegex(writer.DifferentDatasetError, "shards that no manifest describes"):
      writer.write(d, _Source(), writer.WriteOptions())
    self.assertEqual(os.listdir(d), ["train-00000-of-00001.tfrecord"])

  @parameterized.named_parameters(("new_dir", False), ("existing_dir", True))
  def test_bad_record_leaves_nothing_behind(self, existing):
    d = self._dir()
    if existing:
      os.makedirs(d)
      open(os.path.join(d, "README"), "w").write("mine")
    opts = writer.WriteOptions(num_shards=3, workers=2)
    last = writer.plan(_Source(), opts)[-1]
    bad = int(last.records[1])
    with self.assertRaisesRegex(writer.BadRecordError,
                                f"^test record {bad}: the pixels are unreadable$"):
      writer.write(d, _Source(fail_at=bad, error=errors.UserInputError("the pixels are unreadable")),
                   opts)
    if existing:
      self.assertEqual(os.listdir(d), ["README"])
    else:
      self.assertFalse(os.path.exists(d))

  def test_record_that_does_not_fit_the_spec_is_named(self):
    d = self._dir()

    class Wrong(_Source):

      def load_batch(self, split, records):
        return None

      def load(self, split, record):
        values, label = super().load(split, record)
        return ({"image": np.zeros((2, 2, 1), np.uint8)} if record == 5 else values), label

    with self.assertRaisesRegex(writer.BadRecordError,
                                r"test record 5: feature 'image': expected shape \(3, 3, 1\)"):
      writer.write(d, Wrong(), writer.WriteOptions())
    self.assertFalse(os.path.exists(d))

  def test_killed_worker_is_a_clear_error(self):
    d = self._dir()
    # One worker writes eval-0, eval-1, train-0, then dies in train-1 (odd records).
    with self.assertRaisesRegex(writer.WriterError, "died .*killed by signal 9.*rerun"):
      writer.write(d, _Source(kill_at=1), writer.WriteOptions(num_shards=2, workers=1))
    self.assertEqual(_shard_files(d), ["eval-00000-of-00002.tfrecord",
                                       "eval-00001-of-00002.tfrecord",
                                       "train-00000-of-00002.tfrecord"])
    m = writer.write(d, _Source(), writer.WriteOptions(num_shards=2))
    self.assertEqual(m.count("train") + m.count("eval"), 120)

  def test_failing_disk_is_a_clear_error_and_leaves_no_partial_file(self):
    d = self._dir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Like a full disk: writing past 2,000 bytes of one file fails (EFBIG; Python ignores
    # SIGXFSZ, and the forked workers inherit both the limit and that).
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))
    try:
      with self.assertRaisesRegex(writer.WriterError,
                                  "cannot write shard .*: File too large; finished shards are kept"):
        writer.write(d, _Source(n=400), writer.WriteOptions(num_shards=2))
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    self.assertEqual(_shard_files(d), [])
    state = os.path.join(d, writer.WRITING_DIR)
    self.assertEqual([f for f in os.listdir(state) if f.endswith(".tmp")], [])
    m = writer.write(d, _Source(n=400), writer.WriteOptions(num_shards=2))
    m.verify("train")

  @parameterized.named_parameters(
      ("no_shards", dict(num_shards=0), r"--num_shards must be in \[1, 99999\], got 0"),
      ("too_many_shards", dict(num_shards=100000), r"--num_shards must be in \[1, 99999\]"),
      ("compression", dict(compression="ZLIB"), "--compression must be none or GZIP"),
      ("workers", dict(workers=-1), "--workers must be >= 0"),
  )
  def test_bad_options(self, kwargs, message):
    d = self._dir()
    with self.assertRaisesRegex(writer.WriterError, message):
      writer.write(d, _Source(), writer.WriteOptions(**kwargs))
    self.assertFalse(os.path.exists(d))

  def test_empty_source(self):
    d = self._dir()
    with self.assertRaisesRegex(writer.WriterError, "empty source: test has no examples"):
      writer.write(d, base.ArraySource(_SPEC, {"image": np.zeros((0, 3, 3, 1))}, np.zeros(0),
                                       {"train": np.arange(0)}, {"format": "test"}, {}))
    with self.assertRaisesRegex(writer.WriterError, "empty source"):
      writer.write_dataset(d, _SPEC, [], num_shards=1, source={})
    self.assertFalse(os.path.exists(d))

  def test_output_dir_that_is_a_file(self):
    path = os.path.join(self.create_tempdir().full_path, "file")
    open(path, "w").close()
    with self.assertRaisesRegex(writer.WriterError, f"output dir {path} exists and is not a dir"):
      writer.write(path, _Source())
    with self.assertRaisesRegex(writer.WriterError, "cannot create output dir"):
      writer.write(os.path.join(path, "sub"), _Source())

  def test_a_second_writer_is_locked_out(self):
    d = self._dir()
    os.makedirs(os.path.join(d, writer.WRITING_DIR))
    fd = os.open(os.path.join(d, writer.WRITING_DIR, "lock"), os.O_CREAT | os.O_RDWR)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      with self.assertRaisesRegex(writer.WriterError, f"another writer is writing to {d}"):
        writer.write(d, _Source())
    finally:
      os.close(fd)
    self.assertEqual(_shard_files(d), [])
    writer.write(d, _Source())
    self.assertLen(_shard_files(d), 2)

  def test_shards_are_capped_by_split_size_and_progress_is_logged(self):
    d = self._dir()
    with self.assertLogs(level="INFO") as logs:
      m = writer.write(d, _Source(n=8), writer.WriteOptions(num_shards=5, progress_interval_s=0))
    self.assertEqual([s.name for s in m.shards("eval")],
                     ["eval-00000-of-00002.tfrecord", "eval-00001-of-00002.tfrecord"])
    self.assertLen(m.shards("train"), 5)
    self.assertTrue(any("examples/s" in line for line in logs.output), logs.output)


if __name__ == "__main__":
  tf.test.main()
