"""User paths on the command line, resolved where the user typed them.

Kept apart from config.py so light scripts (report, inspect_checkpoint, make_tfrecords) do
not import the model registry just to resolve a path.
"""

import os
from typing import Optional


def resolve_path(path: str, base: Optional[str] = None) -> str:
  """Makes a user path absolute against where the user typed the command.

  `bazel run` executes in the runfiles tree; it exports the user's directory as
  BUILD_WORKING_DIRECTORY. Remote paths (gs://...) and empty strings are returned unchanged.
  """
  if not path or "://" in path or os.path.isabs(path):
    return path
  base = base or os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
  return os.path.normpath(os.path.join(base, os.path.expanduser(path)))
