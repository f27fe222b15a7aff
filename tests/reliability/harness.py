"""Shared by the reliability tests: run the real scripts as subprocesses, kill them at a phase,
hash trees, and collect the case/expected/observed table."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script_path(name: str) -> str:
  return os.path.join(REPO, "scripts", f"{name}.py")


def child_env(**extra: str) -> Dict[str, str]:
  """The environment of a script subprocess: this interpreter's sys.path, quiet TF logs."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
             TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def run_script(name: str, args: Sequence[str], env: Optional[Dict[str, str]] = None,
               cwd: Optional[str] = None, timeout: float = 180) -> subprocess.CompletedProcess:
  """Runs scripts/<name>.py to completion; stdout and stderr captured as text."""
  return subprocess.run([sys.executable, script_path(name), *args], env=env or child_env(),
                        cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_script(name: str, args: Sequence[str], log_path: str,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
  """Starts scripts/<name>.py with stdout+stderr going to `log_path`; returns the Popen."""
  log = open(log_path, "wb")  # pylint: disable=consider-using-with
  proc = subprocess.Popen([sys.executable, script_path(name), *args], env=env or child_env(),
                          cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
  log.close()
  return proc


def kill_when(proc: subprocess.Popen, reached: Callable[[], bool], timeout: float = 120,
              poll: float = 0.02) -> bool:
  """SIGKILLs `proc` as soon as `reached()` holds; returns whether it was killed there.

  Returns False (after killing it anyway, so nothing hangs) if the process exited first or the
  phase was not reached within `timeout`.
  """
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if reached():
      if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return True
      return False
    if proc.poll() is not None:
      return False
    time.sleep(poll)
  proc.kill()
  proc.wait(timeout=30)
  return False


def file_contains(path: str, text: str) -> Callable[[], bool]:
  def check():
    try:
      with open(path, "rb") as f:
        return text.encode() in f.read()
    except OSError:
      return False
  return check


def tree_hashes(path: str, skip: Callable[[str], bool] = lambda rel: False) -> Dict[str, str]:
  """relative path -> sha256 of every file under `path` (or of `path` itself if a file)."""
  if not os.path.exists(path):
    return {}
  if os.path.isfile(path):
    with open(path, "rb") as f:
      return {".": hashlib.sha256(f.read()).hexdigest()}
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, path)
      if skip(rel):
        continue
      with open(full, "rb") as f:
        out[rel] = hashlib.sha256(f.read()).hexdigest()
  return out


def checkpoint_files(rel: str) -> bool:
  """True for what a run directory must never lose: checkpoints, the config, best/ copies."""
  base = os.path.basename(rel)
  return (base == "checkpoint" or base.startswith("model.ckpt-") or base == "config.json"
          or rel.startswith("best" + os.sep))


def latest_step(model_dir: str) -> Optional[int]:
  prefix = tf.train.latest_checkpoint(model_dir)
  return int(prefix.rsplit("-", 1)[1]) if prefix else None


def checkpoint_steps(model_dir: str) -> List[int]:
  return sorted(int(n[len("model.ckpt-"):-len(".index")]) for n in os.listdir(model_dir)
                if n.startswith("model.ckpt-") and n.endswith(".index"))


def error_lines(stderr: str) -> List[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


class Table:
  """The case / expected / observed table; printed, and written as markdown to `path`."""

  def __init__(self, title: str):
    self.title = title
    self.rows: List[tuple] = []

  def add(self, case: str, expected: str, observed: str) -> None:
    self.rows.append((case, expected, observed))

  def markdown(self) -> str:
    def cell(text):
      return str(text).replace("|", "\\|").replace("\n", " ")
    lines = [f"### {self.title}", "", "| case | expected | observed |", "|---|---|---|"]
    lines += [f"| {cell(c)} | {cell(e)} | {cell(o)} |" for c, e, o in self.rows]
    return "\n".join(lines) + "\n"

  def write(self) -> None:
    """Prints the table and writes it where the test's outputs go (Bazel keeps them)."""
    text = self.markdown()
    print("\n" + text)
    out_dir = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or os.environ.get(
        "RELIABILITY_TABLE_DIR")
    if out_dir:
      os.makedirs(out_dir, exist_ok=True)
      name = self.title.lower().replace(" ", "_").replace("/", "_") + ".md"
      with open(os.path.join(out_dir, name), "w") as f:
        f.write(text)


def dump(obj) -> str:
  return json.dumps(obj, sort_keys=True)
