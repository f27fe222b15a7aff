"""gs:// output against the real GCS emulator on loopback: uploads, retries with backoff, a
stopped emulator, resume, refusing other datasets."""

import hashlib
import os
import threading
import time

import numpy as np
import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import gcs
from input_fns import manifest as manifest_lib
from input_fns import writer
from input_fns.formats import base
from tests.testing import data as test_data

_SPEC = fs.image_spec(2, 2, 1, ["a", "b"])
_FAST_RETRY = gcs.RetryPolicy(attempts=2, initial_delay_s=0.01, max_delay_s=0.02, timeout_s=10)


class _Source(base.ArraySource):

  def __init__(self, n=40, seed=0, broken=()):
    images = np.random.default_rng(seed).integers(0, 256, (n, 2, 2, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    labels = np.arange(n) % 2
    super().__init__(_SPEC, {"image": images}, labels,
                     {"train": np.arange(n - 10), "eval": np.arange(n - 10, n)},
                     {"format": "test"}, {"n": n, "seed": seed},
                     assets={"notes": ("notes.txt", b"hello\n")},
                     record_name=lambda i: f"record {i}")
    self.images, self.labels, self._broken = images, labels, broken

  def load_batch(self, split, records):
    return None  # one by one, through load(), where the faults are

  def load(self, split, record):
    if self._broken == "all":
      raise RuntimeError("this run must not write any shard")
    if record in self._broken:
      raise errors.UserInputError("broken")
    return super().load(split, record)


class _RecordingFolder(gcs.Folder):
  """A real Folder that records uploads and can run a hook before each."""

  def __init__(self, url, before_upload=None, **kwargs):
    super().__init__(url, **kwargs)
    self.uploads = []
    self._before = before_upload
    self._lock = threading.Lock()
    self._calls = 0

  def upload_file(self, local_path, name, metadata=None):
    if self._before:
      with self._lock:
        self._calls += 1
        calls = self._calls
      self._before(calls)
    super().upload_file(local_path, name, metadata)
    self.uploads.append(name)

  def upload_bytes(self, data, name, **kwargs):
    super().upload_bytes(data, name, **kwargs)
    self.uploads.append(name)


def _download(folder: gcs.Folder, local: str) -> manifest_lib.Manifest:
  """Copies a gs:// dataset to a local dir (TF cannot read from the emulator) and reads it."""
  os.makedirs(local, exist_ok=True)
  client = gcs.make_client()
  for name in folder.list():
    blob = client.bucket(folder.bucket_name).blob(f"{folder.prefix}/{name}")
    blob.download_to_filename(os.path.join(local, name))
  return manifest_lib.read(local)


class FolderTest(tf.test.TestCase):

  def test_folder_operations(self):
    with test_data.emulator() as emu:
      emu.create_bucket("bkt")
      folder = gcs.Folder("gs://bkt/data/set", retry=_FAST_RETRY)
      path = os.path.join(self.create_tempdir().full_path, "f")
      open(path, "wb").write(b"payload")
      folder.upload_file(path, "a.bin", metadata={"k": "v"})
      folder.upload_bytes(b"{}", "m.json")
      gcs.Folder("gs://bkt/data/set/sub").upload_bytes(b"x", "nested")
      listing = folder.list()
      self.assertEqual(sorted(listing), ["a.bin", "m.json"])  # not the sub-folder's object
      self.assertEqual(listing["a.bin"].size, 7)
      self.assertEqual(listing["a.bin"].metadata, {"k": "v"})
      self.assertEqual(folder.read_text("m.json"), "{}")
      self.assertIsNone(folder.read_text("nope"))
      folder.delete("a.bin")
      folder.delete("a.bin")  # already gone: fine
      self.assertEqual(sorted(folder.list()), ["m.json"])

  def test_missing_bucket_is_named(self):
    with test_data.emulator():
      with self.assertRaisesRegex(gcs.GcsError, "does the bucket gs://nobucket exist"):
        gcs.Folder("gs://nobucket/x", retry=_FAST_RETRY).list()

  def test_unreachable_endpoint_retries_with_backoff_then_says_so(self):
    port = test_data.free_port()
    old = os.environ.get(gcs.EMULATOR_ENV)
    os.environ[gcs.EMULATOR_ENV] = f"http://127.0.0.1:{port}"
    try:
      sleeps = []
      folder = gcs.Folder("gs://bkt/p", retry=gcs.RetryPolicy(attempts=4, initial_delay_s=0.1,
                                                             max_delay_s=0.3),
                          sleep=sleeps.append)
      with self.assertRaisesRegex(gcs.GcsError,
                                  "uploading gs://bkt/p/x failed after 4 attempts: ConnectionError"):
        folder.upload_bytes(b"data", "x")
    finally:
      if old is None:
        del os.environ[gcs.EMULATOR_ENV]
      else:
        os.environ[gcs.EMULATOR_ENV] = old
    self.assertLen(sleeps, 3)
    for delay, cap in zip(sleeps, (0.1, 0.2, 0.3)):  # exponential, capped, jittered to 50-100%
      self.assertBetween(delay, cap / 2, cap)

  def test_url_parsing(self):
    self.assertEqual(gcs.parse_url("gs://b/x/y/"), ("b", "x/y"))
    self.assertEqual(gcs.parse_url("gs://b"), ("b", ""))
    with self.assertRaisesRegex(gcs.GcsError, "names no bucket"):
      gcs.parse_url("gs:///x")


class GcsWriterTest(tf.test.TestCase):

  def test_round_trip_manifest_last_and_rerun_is_a_no_op(self):
    with test_data.emulator() as emu:
      emu.create_bucket("bkt")
      url = "gs://bkt/datasets/t"
      staging = os.path.join(self.create_tempdir().full_path, "staging")
      opts = writer.WriteOptions(num_shards=3, staging_dir=staging, gcs_retry=_FAST_RETRY)
      folder = _RecordingFolder(url, retry=_FAST_RETRY)
      m = writer.write(url, _Source(), opts, folder=folder)
      self.assertEqual(folder.uploads[-1], manifest_lib.FILENAME)
      self.assertCountEqual(folder.uploads[:-1], [s.name for split in m.splits.values()
                                                  for s in split] + ["notes.txt"])
      self.assertFalse(os.path.exists(staging))
      self.assertEqual(m.directory, url)
      local = _download(folder, self.create_tempdir().full_path)
      self.assertEqual(local.to_json_dict(), m.to_json_dict())
      src = _Source()
      for split in ("train", "eval"):
        local.verify(split)
        features, labels = test_data.read_split(local, split)
        idx = src.splits[split]
        self.assertEqual(test_data.example_keys(features["image"], labels),
                         test_data.example_keys(src.images[idx], src.labels[idx]))
      listing = folder.list()
      for shard in m.shards("train"):
        data = open(os.path.join(local.directory, shard.name), "rb").read()
        self.assertEqual(listing[shard.name].metadata["sha256"], hashlib.sha256(data).hexdigest())
      again = _RecordingFolder(url, retry=_FAST_RETRY)
      self.assertEqual(writer.write(url, _Source(broken="all"), opts, folder=again), m)
      self.assertEqual(again.uploads, [])

  def test_emulator_stopped_mid_upload_then_rerun_finishes_without_rewriting(self):
    data_dir = self.create_tempdir().full_path
    emu = test_data.Emulator(data_dir=data_dir).start()
    try:
      emu.create_bucket("bkt")
      url = "gs://bkt/t"
      staging = os.path.join(self.create_tempdir().full_path, "staging")
      opts = writer.WriteOptions(num_shards=3, workers=1, staging_dir=staging,
                                 gcs_retry=_FAST_RETRY)

      stopped = threading.Event()

      def stop_at_third(n):
        # Once the first two uploads are done the emulator goes away, with no request in
        # flight (killing its on-disk store mid-write would corrupt it).
        if n == 3:
          deadline = time.monotonic() + 30
          while len(folder.uploads) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
          emu.stop()
          stopped.set()
        elif n > 3:
          stopped.wait(30)

      folder = _RecordingFolder(url, before_upload=stop_at_third, retry=_FAST_RETRY)
      with self.assertRaisesRegex(gcs.GcsError, r"uploading gs://bkt/t/\S+ failed after 2 "
                                  "attempts: ConnectionError"):
        writer.write(url, _Source(), opts, folder=folder)
      uploaded = list(folder.uploads)
      self.assertLen(uploaded, 2)
      self.assertTrue(os.path.isdir(os.path.join(staging, writer.WRITING_DIR)))
      emu.start()
      listing = gcs.Folder(url).list()
      self.assertCountEqual(listing, uploaded)  # no partial object, no manifest
      rerun = _RecordingFolder(url, retry=_FAST_RETRY)
      m = writer.write(url, _Source(broken="all"), opts, folder=rerun)  # writes no shard
      self.assertNoCommonElements(rerun.uploads, uploaded)
      self.assertEqual(rerun.uploads[-1], manifest_lib.FILENAME)
      self.assertLen(rerun.uploads, 6 - len(uploaded) + 2)  # other shards, notes.txt, manifest
      self.assertEqual(m.count("train") + m.count("eval"), 40)
      self.assertFalse(os.path.exists(staging))
    finally:
      emu.stop()
      os.environ.pop(gcs.EMULATOR_ENV, None)

  def test_staging_dir_keeps_files_that_are_not_the_writers(self):
    with test_data.emulator() as emu:
      emu.create_bucket("bkt")
      staging = self.create_tempdir().full_path
      open(os.path.join(staging, "mine.txt"), "w").write("keep me")
      writer.write("gs://bkt/t", _Source(), writer.WriteOptions(staging_dir=staging))
      self.assertEqual(os.listdir(staging), ["mine.txt"])

  def test_another_dataset_is_refused(self):
    with test_data.emulator() as emu:
      emu.create_bucket("bkt")
      url = "gs://bkt/t"
      staging = os.path.join(self.create_tempdir().full_path, "staging")
      opts = writer.WriteOptions(num_shards=2, staging_dir=staging, gcs_retry=_FAST_RETRY)
      writer.write(url, _Source(), opts)
      before = gcs.Folder(url).list()
      with self.assertRaisesRegex(writer.DifferentDatasetError,
                                  "gs://bkt/t already holds a different dataset"):
        writer.write(url, _Source(seed=1), opts)
      self.assertEqual(gcs.Folder(url).list(), before)

  def test_bad_record_leaves_nothing_in_the_bucket(self):
    with test_data.emulator() as emu:
      emu.create_bucket("bkt")
      url = "gs://bkt/t"
      staging = os.path.join(self.create_tempdir().full_path, "staging")
      opts = writer.WriteOptions(num_shards=4, workers=1, staging_dir=staging,
                                 gcs_retry=_FAST_RETRY)
      with self.assertRaisesRegex(writer.BadRecordError, "record 29: broken"):
        writer.write(url, _Source(broken=(29,)), opts)
      self.assertEqual(gcs.Folder(url).list(), {})
      self.assertFalse(os.path.exists(staging))


if __name__ == "__main__":
  tf.test.main()
