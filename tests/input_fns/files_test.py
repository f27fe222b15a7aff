"""input_fns.files: a replaced file is old or new, never partial, and no temporary stays behind.

Local paths are checked on disk (fsync order included); the path for `scheme://` targets is
checked on TensorFlow's `ram://` file system, the same tf.io.gfile calls a gs:// path takes.
TensorFlow's gs:// file system cannot be pointed at the loopback GCS emulator (TOOLCHAIN.md),
so gs:// itself is not exercised here.
"""

import errno
import os
import threading
import uuid
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized

from input_fns import files


class _Interrupted(Exception):
  pass


class LocalAtomicWriteTest(tf.test.TestCase, parameterized.TestCase):

  def test_temporary_is_hidden_unique_beside_the_target_and_ends_in_tmp(self):
    target = os.path.join(self.create_tempdir().full_path, "config.json")
    names = {files.temporary_path(target) for _ in range(100)}
    self.assertLen(names, 100)
    for name in names:
      self.assertEqual(os.path.dirname(name), os.path.dirname(target))
      self.assertStartsWith(os.path.basename(name), f".config.json.{os.getpid()}-")
      self.assertTrue(files.is_temporary(os.path.basename(name)), name)
    self.assertFalse(files.is_temporary("config.json"))

  @parameterized.named_parameters(
      ("text", "héllo\r\nwörld\n", "héllo\r\nwörld\n".encode()),
      ("bytes", b"\x00\xff raw", b"\x00\xff raw"),
  )
  def test_writes_text_as_utf8_without_newline_translation_and_bytes_as_is(self, data, on_disk):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "f")
    files.write_atomically(path, data)
    with open(path, "rb") as f:
      self.assertEqual(f.read(), on_disk)
    self.assertEqual(os.listdir(d), ["f"])

  def test_replaces_old_content_and_leaves_only_the_target(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "state.json")
    files.write_atomically(path, "old")
    files.write_atomically(path, "new")
    with open(path) as f:
      self.assertEqual(f.read(), "new")
    self.assertEqual(os.listdir(d), ["state.json"])

  def test_error_while_writing_keeps_the_old_content_and_removes_the_temporary(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "rows.jsonl")
    files.write_atomically(path, "old\n")
    with self.assertRaises(_Interrupted):
      with files.atomic_open(path) as f:
        f.write("partial row 1\n")
        raise _Interrupted()
    with open(path) as f:
      self.assertEqual(f.read(), "old\n")
    self.assertEqual(os.listdir(d), ["rows.jsonl"])

  def test_error_before_any_target_leaves_nothing(self):
    d = self.create_tempdir().full_path
    with self.assertRaises(_Interrupted):
      with files.atomic_open(os.path.join(d, "out.csv")) as f:
        f.write("a,b\n")
        raise _Interrupted()
    self.assertEqual(os.listdir(d), [])

  def test_os_errors_name_the_target_not_the_temporary(self):
    target = os.path.join(self.create_tempdir().full_path, "missing_dir", "p.jsonl")
    with self.assertRaises(FileNotFoundError) as raised:
      files.write_atomically(target, "x")
    self.assertEqual(raised.exception.filename, target)
    self.assertIn(target, str(raised.exception))

  def test_a_full_disk_names_the_target(self):
    target = os.path.join(self.create_tempdir().full_path, "p.jsonl")

    def full(fd):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with mock.patch.object(files.os, "fsync", full), self.assertRaises(OSError) as raised:
      files.write_atomically(target, "row\n")
    self.assertEqual((raised.exception.errno, raised.exception.filename), (errno.ENOSPC, target))
    self.assertEqual(os.listdir(os.path.dirname(target)), [])

  def test_failed_rename_removes_the_temporary(self):
    d = self.create_tempdir().full_path
    os.mkdir(os.path.join(d, "taken"))  # a directory cannot be replaced by a file
    with self.assertRaises(OSError):
      files.write_atomically(os.path.join(d, "taken"), "x")
    self.assertEqual(os.listdir(d), ["taken"])

  def test_file_is_fsynced_before_the_rename_and_the_directory_after(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "manifest.json")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
      events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
      real_fsync(fd)

    def replace(src, dst):
      events.append("rename")
      real_replace(src, dst)

    with mock.patch.object(files.os, "fsync", fsync), \
        mock.patch.object(files.os, "replace", replace):
      files.write_atomically(path, "{}")
    self.assertEqual(events, ["fsync file", "rename", "fsync dir"])

  def test_rejects_modes_that_are_not_whole_file_writes(self):
    path = os.path.join(self.create_tempdir().full_path, "f")
    for mode in ("a", "r", "w+"):
      with self.assertRaisesRegex(ValueError, "whole files", msg=mode):
        with files.atomic_open(path, mode):
          pass

  def test_concurrent_readers_see_old_or_new_content_never_a_mix(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "big")
    contents = [bytes([c]) * (1 << 20) for c in b"ab"]
    files.write_atomically(path, contents[0])
    seen, stop = set(), threading.Event()

    def read():
      while not stop.is_set():
        with open(path, "rb") as f:
          data = f.read()
        seen.add(contents.index(data) if data in contents else "torn")

    reader = threading.Thread(target=read)
    reader.start()
    try:
      for i in range(20):
        files.write_atomically(path, contents[i % 2])
    finally:
      stop.set()
      reader.join()
    self.assertNotIn("torn", seen)
    self.assertEqual(os.listdir(d), ["big"])

  def test_concurrent_writers_of_one_target_never_share_a_temporary(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "index.json")
    values = [f"writer {i}\n" * 1000 for i in range(8)]
    threads = [threading.Thread(target=files.write_atomically, args=(path, v)) for v in values]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    with open(path) as f:
      self.assertIn(f.read(), values)
    self.assertEqual(os.listdir(d), ["index.json"])


class RemoteAtomicWriteTest(tf.test.TestCase):
  """A `scheme://` target goes through tf.io.gfile (GFile, then rename over the target)."""

  def setUp(self):
    super().setUp()
    self.dir = f"ram://files_test_{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(self.dir)

  def test_replaces_and_leaves_only_the_target(self):
    path = f"{self.dir}/config.json"
    files.write_atomically(path, "old")
    files.write_atomically(path, b"new")
    with tf.io.gfile.GFile(path) as f:
      self.assertEqual(f.read(), "new")
    self.assertEqual(tf.io.gfile.listdir(self.dir), ["config.json"])

  def test_error_keeps_the_old_content_and_removes_the_temporary(self):
    path = f"{self.dir}/report.json"
    files.write_atomically(path, "old")
    with self.assertRaises(_Interrupted):
      with files.atomic_open(path) as f:
        f.write("half")
        raise _Interrupted()
    with tf.io.gfile.GFile(path) as f:
      self.assertEqual(f.read(), "old")
    self.assertEqual(tf.io.gfile.listdir(self.dir), ["report.json"])

  def test_no_local_fsync_for_remote_paths(self):
    with mock.patch.object(files.os, "fsync") as fsync:
      files.write_atomically(f"{self.dir}/f", "x")
    fsync.assert_not_called()


if __name__ == "__main__":
  tf.test.main()
