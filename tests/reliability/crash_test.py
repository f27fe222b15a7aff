"""kill -9 through the real scripts at several phases (training, TFRecord writing, export), and
NaN loss: a rerun resumes and finishes, nothing partial is ever visible, nothing good is lost."""

import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from input_fns import manifest as manifest_lib
from input_fns import records
from tests.reliability import harness

_SHARD = re.compile(r"^(train|eval)-\d{5}-of-\d{5}\.tfrecord$")
_INTERVAL = 10
_STEPS = 50


def _shards(directory):
  return sorted(n for n in os.listdir(directory) if _SHARD.match(n)) if os.path.isdir(
      directory) else []


def _versions(directory):
  """The version dirs TF Serving would load (integer names)."""
  return sorted((n for n in os.listdir(directory) if n.isdigit()), key=int)


def _stat(directory, names):
  return {n: (os.stat(os.path.join(directory, n)).st_ino, os.stat(os.path.join(directory, n)).st_mtime_ns,
              os.path.getsize(os.path.join(directory, n))) for n in names}


class CrashTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.table = harness.Table("crash safety")
    cls.root = tempfile.mkdtemp(dir=absltest.TEST_TMPDIR.value)
    cls.data = os.path.join(cls.root, "digits")
    result = harness.run_script("make_tfrecords", ["--format=digits", f"--output_dir={cls.data}",
                                                   "--num_shards=2"])
    assert result.returncode == 0, result.stderr[-3000:]

  @classmethod
  def tearDownClass(cls):
    cls.table.write()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _train_args(self, model_dir, *extra):
    return [f"--data_dir={self.data}", f"--model_dir={model_dir}", "--model=dnn",
            f"--train_steps={_STEPS}", f"--save_checkpoints_steps={_INTERVAL}",
            "--log_every_steps=5", "--export=false", *extra]

  @parameterized.named_parameters(
      # Right after a checkpoint is written: the rerun must start from it.
      ("after_checkpoint", lambda d, log: harness.latest_step(d) == 20),
      # While the in-process evaluation of checkpoint 10 runs.
      ("during_eval", lambda d, log: harness.file_contains(log, " eval 10/")()),
  )
  def test_kill_9_during_training_then_rerun_resumes(self, reached):
    model_dir = self.create_tempdir().full_path
    log = os.path.join(self.create_tempdir().full_path, "train.log")
    proc = harness.start_script("train", self._train_args(model_dir), log)
    killed = harness.kill_when(proc, lambda: reached(model_dir, log))
    with open(log) as f:
      first = f.read()
    self.assertTrue(killed, f"training ended before the kill point: {first[-3000:]}")
    kept = harness.latest_step(model_dir)
    self.assertIsNotNone(kept)
    # Lost at most one interval: the next checkpoint after the kept one was never written.
    reached_steps = [int(s) for s in re.findall(r" step (\d+)/\d+ ", first)]
    lost = max(reached_steps + [kept]) - kept
    self.assertLessEqual(lost, _INTERVAL)
    rerun = harness.run_script("train", self._train_args(model_dir))
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    self.assertIn(f"resuming from {model_dir}/model.ckpt-{kept} (step {kept} of {_STEPS})",
                  rerun.stderr)
    resumed = [int(s) for s in re.findall(r" step (\d+)/\d+ ", rerun.stderr)]
    self.assertGreater(min(resumed), kept)
    self.assertEqual(harness.latest_step(model_dir), _STEPS)
    self.assertIn(f"to step {_STEPS}", rerun.stdout)
    self.table.add(f"kill -9 training, {self._testMethodName.rsplit('resumes_', 1)[-1]}",
                   f"rerun resumes from the last checkpoint, loses <= {_INTERVAL} steps, "
                   f"ends at step {_STEPS}",
                   f"killed at step ~{max(reached_steps + [kept])}, kept ckpt-{kept}, "
                   f"lost {lost} steps, rerun restored ckpt-{kept} and ended at "
                   f"{harness.latest_step(model_dir)}")

  @parameterized.named_parameters(("first_shards", 3), ("half_the_shards", 150))
  def test_kill_9_during_tfrecord_writing_then_rerun_completes(self, visible_at):
    out = os.path.join(self.create_tempdir().full_path, "ds")
    args = ["--format=digits", f"--output_dir={out}", "--num_shards=150", "--workers=1",
            "--progress_interval=0"]
    log = os.path.join(self.create_tempdir().full_path, "write.log")
    proc = harness.start_script("make_tfrecords", args, log)
    killed = harness.kill_when(proc, lambda: len(_shards(out)) >= visible_at, poll=0.002)
    self.assertTrue(killed, "the writer finished before the kill point")
    visible = _shards(out)
    self.assertFalse(os.path.exists(os.path.join(out, manifest_lib.FILENAME)))
    for name in visible:  # every visible shard is a complete TFRecord file
      self.assertGreater(len(list(records.read_records(os.path.join(out, name)))), 0, name)
    before = _stat(out, visible)
    rerun = harness.run_script("make_tfrecords", args)
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    self.assertEqual({n: v for n, v in _stat(out, visible).items()}, before,
                     "a finished shard was rewritten")
    m = manifest_lib.read(out)
    listed = sorted(s.name for split in m.splits for s in m.shards(split))
    self.assertEqual(_shards(out), listed)
    self.assertEqual(sorted(os.listdir(out)), sorted(listed + [manifest_lib.FILENAME]))
    for split in m.splits:
      m.verify(split)  # sizes and sha256 match the files
    self.table.add(f"kill -9 make_tfrecords after {visible_at}+ shards",
                   "only complete shards visible, no manifest; rerun writes only the missing "
                   "shards; manifest matches the files",
                   f"{len(visible)} complete shards visible and kept byte-identical, no "
                   f"manifest; rerun wrote {len(listed) - len(visible)} more; manifest verified")

  @parameterized.named_parameters(
      ("writing_saved_model", lambda tmp: True),
      ("writing_warmup_assets", lambda tmp: os.path.exists(os.path.join(tmp, "assets.extra"))),
  )
  def test_kill_9_during_export_then_next_export_succeeds(self, phase):
    model_dir = self.create_tempdir().full_path
    result = harness.run_script("train", self._train_args(model_dir, "--train_steps=10"))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    base = self.create_tempdir().full_path
    args = [f"--model_dir={model_dir}", f"--export_base={base}", "--model_name=m", "--validate"]
    first = harness.run_script("export", args)
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    versions = os.path.join(base, "m")
    self.assertEqual(_versions(versions), ["1"])
    snapshot = {k: v for k, v in harness.tree_hashes(versions).items()
                if k.startswith("1" + os.sep)}

    def reached():
      tmps = [n for n in os.listdir(versions) if n.startswith(".tmp-")]
      return bool(tmps) and phase(os.path.join(versions, tmps[0]))

    log = os.path.join(self.create_tempdir().full_path, "export.log")
    killed = harness.kill_when(harness.start_script("export", args, log), reached, poll=0.005)
    self.assertTrue(killed, "the export finished before the kill point")
    self.assertEqual(_versions(versions), ["1"])
    again = harness.run_script("export", args)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(_versions(versions), ["1", "2"])
    self.assertEqual([n for n in os.listdir(versions) if n.startswith(".tmp-")], [])
    self.assertEqual({k: v for k, v in harness.tree_hashes(versions).items()
                      if k.startswith("1" + os.sep)}, snapshot)
    self.assertTrue(os.path.exists(os.path.join(versions, "2", "saved_model.pb")))
    self.table.add(f"kill -9 export, {self._testMethodName.rsplit('succeeds_', 1)[-1]}",
                   "no partial version dir visible; next export succeeds",
                   "only version 1 visible after the kill (byte-identical); next export wrote "
                   "version 2 and removed the killed .tmp- dir")

  def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(self):
    model_dir = self.create_tempdir().full_path
    result = harness.run_script("train", self._train_args(
        model_dir, "--optimizer=sgd", "--learning_rate=1e6"))
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    line = harness.error_lines(result.stderr)[-1]
    found = re.search(r"loss became (NaN|Inf) at step (\d+); the last good checkpoint "
                      r"model.ckpt-(\d+) is kept as latest", line)
    self.assertIsNotNone(found, line)
    bad_step, kept = int(found.group(2)), int(found.group(3))
    self.assertLess(kept, bad_step)
    self.assertEqual(harness.latest_step(model_dir), kept)
    self.assertNotIn("Traceback", result.stderr)
    reader = tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{kept}"))
    for name in reader.get_variable_to_shape_map():
      value = reader.get_tensor(name)
      if np.issubdtype(np.asarray(value).dtype, np.floating):
        self.assertTrue(np.all(np.isfinite(value)), name)
    self.table.add("NaN loss (sgd, learning_rate=1e6)",
                   "exit non-zero, message names the step, last good checkpoint stays latest",
                   f"exit {result.returncode}: {found.group(1)} at step {bad_step}; latest is "
                   f"ckpt-{kept}, all its variables finite")


if __name__ == "__main__":
  absltest.main()
