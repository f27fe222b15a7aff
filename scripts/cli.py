"""What every script's __main__ shares: quiet TF logs, and user errors as one clear line."""

import errno
import os
import re
import sys
from typing import Callable

# TF's C++ start-up chatter (CUDA probes, CPU features) hides what the user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from input_fns import errors  # pylint: disable=g-import-not-at-top
from input_fns.errors import redact  # pylint: disable=g-import-not-at-top

EXIT_USER_ERROR = 2

# A path the user named that cannot be used (under a regular file, not writable, a directory
# where a file is expected) is their input, not a bug: report it in one line like any other.
_PATH_ERRORS = (NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
# tf.io.gfile raises these for the same causes; they carry no graph op (a runtime failure in a
# graph does, and keeps its traceback).
_TF_PATH_ERROR_NAMES = ("FailedPreconditionError", "PermissionDeniedError",
                        "AlreadyExistsError")


# model_fns check labels in the graph (tf.debugging asserts with these messages); a record
# that fails them is bad data, which the user fixes, not a bug.
_LABEL_ASSERT = re.compile(r"labels must be [<>]=? ?[\w=]+")


def _print_error(message: str) -> None:
  logging.flush()
  # One line, always: TF errors carry "\n\t when reading ..." continuations.
  line = re.sub(r"\s*\n\s*", " ", str(message).strip())
  print(f"error: {redact(line)}", file=sys.stderr)


def _path_error_message(e: BaseException):
  """The one-line message for a bad-path or bad-label error, or None if `e` is neither."""
  if type(e).__name__ == "InvalidArgumentError" and type(e).__module__.startswith("tensorflow"):
    found = _LABEL_ASSERT.search(str(e))
    if found:
      return (f"a record's label is out of range ({found.group(0)}): the dataset's records do "
              "not match its manifest's label_names")
    return None
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:  # a full disk: the user frees space
    return f"cannot write {e.filename or ''}: {e.strerror}".replace("write :", "write:")
  if (type(e).__name__ == "ResourceExhaustedError" and type(e).__module__.startswith("tensorflow")
      and getattr(e, "op", True) is None):  # tf.io.gfile's ENOSPC
    return f"cannot write: {getattr(e, 'message', e)}"
  if isinstance(e, _PATH_ERRORS):
    return f"cannot use path {e.filename!r}: {e.strerror}" if e.filename else str(e)
  if (type(e).__name__ in _TF_PATH_ERROR_NAMES and type(e).__module__.startswith("tensorflow")
      and getattr(e, "op", True) is None):
    return f"cannot use path: {getattr(e, 'message', e)}"
  return None


def run(main: Callable) -> None:
  """app.run(main), turning UserInputError into `error: <message>` and exit code 2."""

  def wrapped(argv):
    try:
      return main(argv)
    except errors.UserInputError as e:
      _print_error(str(e))
      sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # pylint: disable=broad-except
      message = _path_error_message(e)
      if message is None:
        raise
      _print_error(message)
      sys.exit(EXIT_USER_ERROR)

  logging.set_verbosity(logging.INFO)
  _quiet_tf_deprecations()
  app.run(wrapped)


def _quiet_tf_deprecations() -> None:
  """Estimator is deprecated as a whole; its per-call deprecation warnings are noise here."""
  try:
    from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
    deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access
  except ImportError:
    pass
