"""Whole-file writes that a reader sees complete or not at all, local or gs://: one mechanism.

Every file the project replaces in place (manifests, config.json, reports, checkpoint state
files, caches, sidecars) is written the same way:

  1. the bytes go to a unique hidden name in the target's own directory,
     `.<name>.<pid>-<hex>.tmp` (same directory: a rename never crosses file systems; unique:
     two processes writing one target never share a temporary; ending in `.tmp`: cleanup
     scanners such as the writer's resume recognise a leftover by that suffix alone);
  2. local files are flushed and fsynced, so the rename cannot publish bytes still in the page
     cache;
  3. the temporary is renamed over the target (atomic on POSIX);
  4. locally, the directory is fsynced, so the rename itself survives a power cut.

Any path with a scheme (`gs://`, `ram://`, ...) goes through tf.io.gfile instead; there is no
fsync to make, and a GCS object appears only once its upload completes. On any error the
temporary is removed and the target keeps its old content (or stays absent).

Entry points: `write_atomically(path, data)` for a str or bytes value in hand, and
`atomic_open(path)` for content written piece by piece (CSV rows, `json.dump`).
"""

import contextlib
import os
import secrets
from typing import IO, Iterator, Union

import tensorflow as tf

TEMPORARY_SUFFIX = ".tmp"


def is_local(path: str) -> bool:
  """Whether `path` is on the local file system (no `scheme://`)."""
  return "://" not in path


def is_temporary(name: str) -> bool:
  """Whether a file name is a temporary of this module (or another `.tmp` leftover)."""
  return name.endswith(TEMPORARY_SUFFIX)


def temporary_path(path: str) -> str:
  """A fresh hidden name beside `path`: `<dir>/.<name>.<pid>-<8 hex>.tmp`."""
  directory, name = os.path.split(path)
  return os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}"
                                 f"{TEMPORARY_SUFFIX}")


def fsync_dir(directory: str) -> None:
  """Fsyncs a local directory, making the renames and creations in it durable."""
  fd = os.open(directory or ".", os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _remove_quietly(path: str) -> None:
  # Runs while another exception propagates: never let the cleanup hide it.
  try:
    if is_local(path):
      if os.path.lexists(path):
        os.remove(path)
    elif tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except (OSError, tf.errors.OpError):
    pass


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
  """Opens a temporary beside `path`; on a clean exit it replaces `path`, durably.

  Use: `with files.atomic_open(path) as f: json.dump(value, f)`. Text is UTF-8, written
  without newline translation (as tf.io.gfile writes it).

  Args:
    path: the target, a local path or a `scheme://` path tf.io.gfile knows. Its directory
      must exist.
    mode: "w" (str) or "wb" (bytes).

  Yields:
    A writable file object on the temporary.

  Raises:
    ValueError: a mode other than "w" or "wb".
    Whatever opening, writing or renaming raises (an OSError names `path`, not the
    temporary); the temporary is removed then, and `path` keeps its old content.
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
  tmp = temporary_path(path)
  local = is_local(path)
  try:
    if local:
      with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    else:
      with tf.io.gfile.GFile(tmp, mode) as f:
        yield f
      tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException as e:
    _remove_quietly(tmp)
    if isinstance(e, OSError) and e.filename in (None, tmp):
      # Messages name the file the user asked for: not the temporary, and not nothing (a
      # full disk's ENOSPC from write() carries no file name).
      e.filename, e.filename2 = path, None
    raise
  if local:
    fsync_dir(os.path.dirname(path))


def write_atomically(path: str, data: Union[str, bytes]) -> None:
  """Replaces the file at `path` with `data` (str as UTF-8), all or nothing (see atomic_open).

  Args:
    path: a local path or a `scheme://` path (gs://); its directory must exist.
    data: the whole new content.

  Raises:
    Whatever the write or the rename raises; `path` keeps its old content then.
  """
  with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
