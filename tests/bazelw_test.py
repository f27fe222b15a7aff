"""./bazelw on machines it cannot fix, and on a warm one, with fake tools on a bare PATH."""

import hashlib
import os
import shutil
import stat
import subprocess

from absl.testing import absltest

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# Real tools bazelw needs besides bazel, apt-get and python.
_TOOLS = ("bash", "env", "awk", "sha256sum", "tr", "cat", "dirname", "id", "rm", "grep")


def _script(path, body):
  with open(path, "w") as f:
    f.write("#!/bin/bash\n" + body)
  os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


class BazelwTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.repo = self.create_tempdir("repo").full_path
    for name in ("bazelw", ".bazelversion"):
      shutil.copy(os.path.join(_ROOT, name), self.repo)
    self.lock = os.path.join(self.repo, "requirements_lock.txt")
    with open(self.lock, "w") as f:
      f.write("absl-py==0\n")
    self.bin = self.create_tempdir("bin").full_path
    for tool in _TOOLS:
      os.symlink(shutil.which(tool), os.path.join(self.bin, tool))

  def _run(self):
    return subprocess.run([os.path.join(self.repo, "bazelw"), "test", "//..."],
                          env={"PATH": self.bin, "HOME": self.repo}, cwd=self.repo,
                          capture_output=True, text=True, timeout=60)

  def test_uninstallable_bazel_says_what_to_install_and_leaves_nothing(self):
    _script(os.path.join(self.bin, "apt-get"), "echo 'E: Unable to locate package' >&2; exit 100\n")
    result = self._run()
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("install Debian's bazel-bootstrap package", result.stderr)
    self.assertFalse(os.path.exists(os.path.join(self.repo, ".venv")))

  def test_no_apt_get_at_all(self):
    result = self._run()
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("could not find or install Bazel 4.2.3", result.stderr)

  def test_warm_machine_execs_bazel_with_venv_first_on_path(self):
    log = os.path.join(self.repo, "bazel.log")
    _script(os.path.join(self.bin, "bazel-4.2.3"),
            f'[ "$1" = --version ] && {{ echo "bazel 4.2.3"; exit 0; }}\n'
            f'echo "args=$* path=$PATH" > {log}\n')
    venv_bin = os.path.join(self.repo, ".venv", "bin")
    os.makedirs(venv_bin)
    _script(os.path.join(venv_bin, "python3"), "exit 0\n")
    with open(self.lock, "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(self.repo, ".venv", ".lock.sha256"), "w") as f:
      f.write(digest + "\n")
    result = self._run()
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertNotIn("creating", result.stderr)  # nothing reinstalled
    with open(log) as f:
      self.assertEqual(f.read().strip(), f"args=test //... path={venv_bin}:{self.bin}")

  def test_changed_lock_rebuilds_venv(self):
    _script(os.path.join(self.bin, "bazel-4.2.3"),
            '[ "$1" = --version ] && echo "bazel 4.2.3"; exit 0\n')
    os.makedirs(os.path.join(self.repo, ".venv", "bin"))
    with open(os.path.join(self.repo, ".venv", ".lock.sha256"), "w") as f:
      f.write("stale\n")
    # No python3.11 on this PATH: bazelw must throw the stale venv away and say what to install.
    result = self._run()
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("Python 3.11 is required", result.stderr)


if __name__ == "__main__":
  absltest.main()
