"""A full disk while writing (a small tmpfs): a clear error, no partial file visible, and a rerun
with space finishes."""

import os
import re
import subprocess

from absl.testing import absltest

from input_fns import manifest as manifest_lib
from input_fns import records
from tests.reliability import harness

_SHARD = re.compile(r"^(train|eval)-\d{5}-of-\d{5}\.tfrecord$")


class DiskFullTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.mnt = self.create_tempdir().full_path
    # 64 KiB: the digits dataset (~120 KB) does not fit. Needs root and a sandbox that allows
    # mounts; writer_test covers the same path with RLIMIT_FSIZE where this is skipped.
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs",
                             self.mnt], capture_output=True, text=True, check=False)
    if result.returncode != 0:
      self.skipTest(f"cannot mount a tmpfs here ({result.stderr.strip()}); the full-disk path "
                    "is covered by tests/input_fns/writer_test.py with RLIMIT_FSIZE")
    self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], check=False)

  def test_make_tfrecords_on_a_full_disk(self):
    out = os.path.join(self.mnt, "ds")
    args = ["--format=digits", f"--output_dir={out}", "--num_shards=4", "--workers=1"]
    result = harness.run_script("make_tfrecords", args)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    lines = harness.error_lines(result.stderr)
    self.assertLen(lines, 1)
    self.assertRegex(lines[0], r"^error: cannot write shard " + re.escape(out) +
                     r"/\S+\.tfrecord: No space left on device; finished shards are kept")
    self.assertNotIn("Traceback", result.stderr)
    self.assertFalse(os.path.exists(os.path.join(out, manifest_lib.FILENAME)))
    visible = sorted(n for n in os.listdir(out) if _SHARD.match(n))
    for name in os.listdir(out):  # nothing but complete shards and the hidden state dir
      self.assertTrue(_SHARD.match(name) or name.startswith("."), name)
    for name in visible:
      self.assertGreater(len(list(records.read_records(os.path.join(out, name)))), 0)
    for root, _, files in os.walk(out):
      self.assertEqual([f for f in files if f.endswith(".tmp")], [], root)
    # With space again (a bigger tmpfs over the same data), the rerun finishes the rest.
    subprocess.run(["mount", "-o", "remount,size=4m", self.mnt], check=True)
    rerun = harness.run_script("make_tfrecords", args)
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    m = manifest_lib.read(out)
    for split in m.splits:
      m.verify(split)
    print(f"\n| disk full (64 KiB tmpfs) during make_tfrecords | clear error, no partial file, "
          f"rerun finishes | exit 2: {lines[0][:120]}; {len(visible)} complete shards kept, "
          f"no .tmp; rerun after remount verified |")

  def test_predict_output_on_a_full_disk(self):
    work = self.create_tempdir().full_path
    steps = [
        ("make_tfrecords", ["--format=digits", f"--output_dir={work}/d", "--num_shards=1"]),
        ("train", [f"--data_dir={work}/d", f"--model_dir={work}/run", "--model=linear",
                   "--train_steps=2", "--save_checkpoints_steps=2", "--export=false"]),
    ]
    for name, args in steps:
      result = harness.run_script(name, args)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(self.mnt, "filler"), "wb") as f:  # leave ~8 KiB free
      f.write(b"\0" * (56 * 1024))
    out = os.path.join(self.mnt, "p.jsonl")
    result = harness.run_script("predict", [f"--model_dir={work}/run", f"--output={out}"])
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^error: .*(No space left on device|Resource exhausted)")
    self.assertNotIn("Traceback", result.stderr)
    self.assertEqual(sorted(os.listdir(self.mnt)), ["filler"])  # no p.jsonl, no .p.jsonl.<id>.tmp


if __name__ == "__main__":
  absltest.main()
