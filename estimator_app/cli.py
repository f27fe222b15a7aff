"""What every script's __main__ shares: quiet TF logs, and user errors as one clear line."""

import os
import sys
from typing import Callable

# TF's C++ start-up chatter (CUDA probes, CPU features) hides what the user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from input_fns import errors  # pylint: disable=g-import-not-at-top

EXIT_USER_ERROR = 2


def run(main: Callable) -> None:
  """app.run(main), turning UserInputError into `error: <message>` and exit code 2."""

  def wrapped(argv):
    try:
      return main(argv)
    except errors.UserInputError as e:
      logging.flush()
      print(f"error: {e}", file=sys.stderr)
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
