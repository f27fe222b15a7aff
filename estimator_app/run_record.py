"""A record of each start of a run, appended to model_dir/run_records.jsonl.

What it takes to reproduce or compare a run beside its config.json: TF and Python versions,
the git commit (and whether the tree was dirty), the data manifest's hash, the seed and
determinism settings, the host, the command line, the time.
"""

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence

import tensorflow as tf

FILENAME = "run_records.jsonl"


def git_state(directory: Optional[str]) -> Dict[str, Any]:
  """{"commit": sha, "dirty": bool} of the checkout holding `directory`, or {} if none."""
  if not directory:
    return {}
  try:
    commit = subprocess.run(["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", directory, "status", "--porcelain"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return {}
  return {"commit": commit, "dirty": bool(status.strip())}


def manifest_hash(data_dir: str) -> Optional[str]:
  path = os.path.join(data_dir, "manifest.json")
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def make(seed: int, deterministic: bool, data_dirs: Sequence[str],
         argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Builds the record for a run starting now."""
  source_dir = os.environ.get("BUILD_WORKSPACE_DIRECTORY") or os.path.dirname(
      os.path.dirname(os.path.abspath(__file__)))
  return {
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "host": socket.gethostname(),
      "platform": platform.platform(),
      "python": sys.version.split()[0],
      "tensorflow": tf.__version__,
      "git": git_state(source_dir),
      "data": {d: manifest_hash(d) for d in data_dirs},
      "seed": seed,
      "deterministic": deterministic,
      "argv": list(argv if argv is not None else sys.argv),
  }


def append(model_dir: str, record: Dict[str, Any]) -> str:
  """Appends `record` as one JSON line; returns the file's path."""
  tf.io.gfile.makedirs(model_dir)
  path = os.path.join(model_dir, FILENAME)
  existing = ""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      existing = f.read()
  # Rewrite-and-rename rather than append: gs:// has no append, and a reader never sees half a line.
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(existing + json.dumps(record, sort_keys=True) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def read(model_dir: str):
  """All records of a model_dir, oldest first."""
  path = os.path.join(model_dir, FILENAME)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]
