"""//scripts:gpu_check: its flags as the check config, and the real command's no-GPU answer
and its failure on a GPU TensorFlow cannot see.

What the check plans, parses and reports is tested in
tests/estimator_app/benchmarks/gpu_check_test.py.
"""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from unittest import mock

from absl.testing import absltest
from absl.testing import flagsaver

from estimator_app.benchmarks import gpu_check as gpu_check_lib
from scripts import gpu_check

_NO_GPU_LINE = "gpu_check: no GPU on this machine (nvidia-smi is not installed); nothing to check."


class FlagsTest(absltest.TestCase):

  def test_flags_become_the_check_config_with_train_py_beside_the_script(self):
    user_dir = self.create_tempdir().full_path
    with mock.patch.dict(os.environ, {"BUILD_WORKING_DIRECTORY": user_dir}):
      with flagsaver.flagsaver(budget_secs=300.0, run_steps=200, work_dir="gc"):
        cfg = gpu_check.config_from_flags()
    self.assertEqual(cfg, gpu_check_lib.CheckConfig(
        train_script=os.path.join(os.path.dirname(gpu_check.__file__), "train.py"),
        budget_secs=300.0, run_steps=200, work_dir=os.path.join(user_dir, "gc")))
    self.assertTrue(os.path.exists(cfg.train_script))
    with flagsaver.flagsaver():
      self.assertIsNone(gpu_check.config_from_flags().work_dir)  # a temporary one


class CommandTest(absltest.TestCase):
  """The real command, as `bazel run` starts it, on machines without a usable GPU."""

  def _run(self, *args, path_dirs=(), **env):
    work = os.path.join(self.create_tempdir().full_path, "work")
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = gpu_check_lib.ROOT
    environ["PATH"] = os.pathsep.join([*path_dirs, environ.get("PATH", "")])
    start = time.monotonic()
    out = subprocess.run([sys.executable, gpu_check.__file__, f"--work_dir={work}", *args],
                         capture_output=True, text=True, env=environ, timeout=300)
    return out, time.monotonic() - start, work

  def _fake_nvidia_smi(self, script):
    bin_dir = self.create_tempdir("bin").full_path
    path = os.path.join(bin_dir, "nvidia-smi")
    with open(path, "w") as f:
      f.write("#!/bin/sh\n" + textwrap.dedent(script))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return bin_dir

  def test_without_a_gpu_it_says_so_in_one_line_and_runs_nothing(self):
    if shutil.which("nvidia-smi"):
      self.skipTest("this machine has nvidia-smi; the fake ones below cover it")
    out, seconds, work = self._run()
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertEqual(out.stdout.splitlines(), [_NO_GPU_LINE])
    self.assertFalse(os.path.exists(work))  # no data, model_dir or log was written
    self.assertLess(seconds, 20)  # no TensorFlow import, no training

  def test_nvidia_smi_that_lists_no_gpu_means_no_gpu(self):
    bin_dir = self._fake_nvidia_smi("""
        echo "No devices were found"
        exit 6
        """)
    out, seconds, work = self._run(path_dirs=[bin_dir])
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertEqual(out.stdout.splitlines(), [
        "gpu_check: no GPU on this machine (nvidia-smi -L lists none (exit 6: No devices were "
        "found)); nothing to check."])
    self.assertFalse(os.path.exists(work))
    self.assertLess(seconds, 20)

  def test_a_gpu_tensorflow_cannot_see_fails_and_names_the_cuda_wheels(self):
    bin_dir = self._fake_nvidia_smi("""
        echo "GPU 0: NVIDIA H200 (UUID: GPU-0000)"
        """)
    # CUDA_VISIBLE_DEVICES hides any real GPU, so TensorFlow sees none on every machine.
    out, _, work = self._run(path_dirs=[bin_dir], CUDA_VISIBLE_DEVICES="")
    self.assertEqual(out.returncode, gpu_check_lib.EXIT_FAILED, out.stdout + out.stderr)
    lines = out.stdout.splitlines()
    self.assertEqual(lines[0], "gpu_check: nvidia-smi sees 1 GPU(s): GPU 0: NVIDIA H200 "
                               "(UUID: GPU-0000)")
    self.assertStartsWith(lines[1], "gpu_check: FAILED: nvidia-smi sees 1 GPU(s) but "
                                    f"TensorFlow in {sys.executable} sees none: ")
    self.assertIn("pip install -r deploy/requirements_gpu.txt", lines[1])
    self.assertIn("deploy/Dockerfile.gpu", lines[1])
    self.assertFalse(os.path.exists(work))


if __name__ == "__main__":
  absltest.main()
