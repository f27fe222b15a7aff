"""//scripts:local_cluster: its flags as the launch config, and the command's exit on Ctrl-C.

The launcher itself (GPU assignment, teardown, real clusters) is tested in
tests/estimator_app/training/local_cluster_test.py.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from unittest import mock

from absl.testing import absltest
from absl.testing import flagsaver

from estimator_app.training import local_cluster as local_cluster_lib
from scripts import local_cluster

# A stand-in task that writes its pid to argv[1] and waits to be stopped.
_WAITING_TASK = textwrap.dedent("""
    import json, os, sys, time
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    with open(os.path.join(sys.argv[1], f"{task['type']}_{task['index']}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
    """)


def _running(pid):
  """Whether process `pid` exists and is not a zombie."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


class FlagsTest(absltest.TestCase):

  def test_flags_become_the_launch_config_with_train_py_by_default(self):
    with flagsaver.flagsaver(workers=2, ps=0, evaluator=False, timeout_secs=9, grace_secs=1.5):
      cfg = local_cluster.config_from_flags(["--model=dnn", "--train_steps=5"])
    self.assertEqual(cfg, local_cluster_lib.LaunchConfig(
        train_script=os.path.join(os.path.dirname(local_cluster.__file__), "train.py"),
        train_args=("--model=dnn", "--train_steps=5"), workers=2, ps=0, evaluator=False,
        timeout_secs=9, grace_secs=1.5))
    self.assertTrue(os.path.exists(cfg.train_script))

  def test_a_relative_train_script_is_the_users_directorys(self):
    user_dir = self.create_tempdir().full_path
    with mock.patch.dict(os.environ, {"BUILD_WORKING_DIRECTORY": user_dir}):
      with flagsaver.flagsaver(train_script="tools/task.py"):
        cfg = local_cluster.config_from_flags([])
    self.assertEqual(cfg.train_script, os.path.join(user_dir, "tools", "task.py"))


class CommandTest(absltest.TestCase):

  def test_interrupting_the_launcher_stops_every_task_and_exits_130(self):
    work = self.create_tempdir().full_path
    script = os.path.join(work, "task.py")
    with open(script, "w") as f:
      f.write(_WAITING_TASK)

    def pids():
      found = {}
      for path in glob.glob(os.path.join(work, "*.pid")):
        with open(path) as f:
          found[os.path.basename(path)] = int(f.read())
      return found

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, local_cluster.__file__, "--workers=1", "--ps=1", "--grace_secs=5",
         f"--train_script={script}", "--", work],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
      deadline = time.monotonic() + 60
      while len(pids()) < 4:
        self.assertLess(time.monotonic(), deadline, "tasks did not start")
        time.sleep(0.1)
      proc.send_signal(signal.SIGINT)
      out, _ = proc.communicate(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
    self.assertEqual(proc.returncode, local_cluster_lib.EXIT_INTERRUPTED, out)
    self.assertEqual(proc.returncode, 130)
    self.assertIn("SIGINT: stopping every task", out)
    self.assertFalse(any(_running(p) for p in pids().values()))


if __name__ == "__main__":
  absltest.main()
