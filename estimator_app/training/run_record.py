"""A record of each start of a run, appended to model_dir/run_records.jsonl.

What it takes to redo or compare a run: TF and Python versions, the git commit (and whether
the tree was dirty), the sha256 of every dataset's manifest (data_dir, --train_data sources,
--eval_sets), the seed and determinism settings, the host, the full command line, the time,
and the config this start resolved (every section, and the step counts the automatic
defaults became). config.json holds the latest start's config; this file holds every start's,
so a resumed run's original settings are never lost.
"""

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf

from input_fns import errors
from input_fns import files as files_lib

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
         argv: Optional[Sequence[str]] = None, config: Optional[Mapping[str, Any]] = None,
         resolved: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """Builds the record for a run starting now.

  Args:
    seed: the run's seed.
    deterministic: whether ops were made deterministic.
    data_dirs: every dataset directory the run reads; each gets its manifest's sha256.
    argv: the command line, program first (default sys.argv); URL credentials are redacted.
    config: the resolved config as JSON (ExperimentConfig.to_json_dict()).
    resolved: what the automatic defaults resolved to (the run's Cadence).
  """
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
      "argv": [errors.redact(str(a)) for a in (argv if argv is not None else sys.argv)],
      "config": dict(config or {}),
      "resolved": dict(resolved or {}),
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
  files_lib.write_atomically(path, existing + json.dumps(record, sort_keys=True) + "\n")
  return path


def read(model_dir: str):
  """All records of a model_dir, oldest first."""
  path = os.path.join(model_dir, FILENAME)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]
