"""What every script's __main__ shares: one quiet log stream, and user errors as one clear line.

Import it FIRST in every script (before anything that imports TensorFlow): TensorFlow reads
TF_CPP_MIN_LOG_LEVEL once, when it is imported, and installs its own log handler unless the
root logger already has one. Then the main job prints what a user reads (progress, one line per
evaluation and export) and not TensorFlow's C++ start-up probes, its INFO chatter or each log
line twice. `-v 1` (`--verbosity=1`) brings everything back: C++ logs, TensorFlow's INFO lines
and absl's full `I1203 10:03:45.776403 1398 file.py:45]` prefix.
"""

import atexit
import errno
import importlib.abc
import logging as std_logging
import os
import re
import sys
import time
import warnings
import textwrap
from typing import Callable, Dict, Optional, Sequence


def verbose_requested(argv: Sequence[str]) -> bool:
  """Whether the command line asks for absl verbosity >= 1 (-v 1, --verbosity=1, --v=2...)."""
  for i, arg in enumerate(argv):
    name, eq, value = arg.partition("=")
    if name not in ("-v", "--v", "--verbosity", "-verbosity"):
      continue
    if not eq:
      value = argv[i + 1] if i + 1 < len(argv) else ""
    try:
      return int(value) >= 1
    except ValueError:
      return False
  return False


_VERBOSE = verbose_requested(sys.argv[1:])
# TF's C++ start-up chatter (CUDA probes, "Unable to register cuDNN factory", CPU features)
# hides what the user needs to read; errors that matter reach Python as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _VERBOSE else "3")

# Keras (which TensorFlow imports) imports pandas whenever it is installed, for a Keras data
# adapter no Estimator uses: ~0.5 s of every script's start-up. pandas is in the venv only as the
# conversion benchmark's baseline; in scripts `import pandas` raises ImportError (as if it were
# not installed: Keras and pyarrow then do without it) until allow_pandas().
class _NoPandas(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname == "pandas" or fullname.startswith("pandas."):
      raise ImportError(f"{fullname} is not loaded by this project's scripts (see scripts/cli.py)",
                        name=fullname)
    return None


_NO_PANDAS = _NoPandas()
if "pandas" not in sys.modules:
  sys.meta_path.insert(0, _NO_PANDAS)


def allow_pandas() -> None:
  """Lets `import pandas` work again in this process (see above)."""
  if _NO_PANDAS in sys.meta_path:
    sys.meta_path.remove(_NO_PANDAS)


from absl import app  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from input_fns import errors  # pylint: disable=g-import-not-at-top
from input_fns.errors import redact  # pylint: disable=g-import-not-at-top

# Now, before TensorFlow is imported: a root logger with a handler keeps TF from adding its own.
logging.use_absl_handler()

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


def run(main: Callable, key_flags: Sequence[str] = (),
        more_help: Optional[Callable[[], str]] = None) -> None:
  """app.run(main), turning UserInputError into `error: <message>` and exit code 2.

  `--help` prints the script's docstring and `key_flags`; `--helpfull` every flag of this
  project grouped by section, then `more_help()` (e.g. each model's hparams); both exit 0.
  """
  asked = _help_requested(sys.argv[1:])
  if asked:
    print(full_help(more_help) if asked == "full" else short_help(key_flags or _default_key_flags()))
    sys.exit(0)

  def wrapped(argv):
    # Here, once absl has parsed the flags: quieting TensorFlow's deprecation warnings imports
    # TensorFlow, and a bad flag (absl's error, exit 1) must not wait seconds for that.
    configure_logging(_VERBOSE)
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
  try:
    app.run(wrapped)
  except SystemExit as e:
    code = e.code
  except BaseException:  # pylint: disable=broad-except
    sys.excepthook(*sys.exc_info())  # the traceback, as an uncaught exception prints it
    code = 1
  else:
    code = 0
  _exit_now(code)


def _exit_now(code) -> None:
  """Ends the process with `code` (a SystemExit's: None, an int or a message) without Python's
  interpreter teardown, which after TensorFlow is imported takes 3 s or more and does nothing a
  script needs: the atexit handlers still run (the serving process is stopped, temporary
  directories removed), cached TensorBoard writers are closed (flushed), stdout and stderr are
  flushed; then os._exit.
  """
  if code is None:
    status = 0
  elif isinstance(code, int):
    status = code
  else:
    print(code, file=sys.stderr)
    status = 1
  try:
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    tf = sys.modules.get("tensorflow")
    if tf is not None:
      tf.compat.v1.summary.FileWriterCache.clear()
    logging.flush()
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except (OSError, ValueError):
        pass
    os._exit(status)  # pylint: disable=protected-access


class ShortFormatter(std_logging.Formatter):
  """`10:03:45 message`; warnings and errors say so: `10:03:45 warning: message`."""

  def format(self, record: std_logging.LogRecord) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    level = ("" if record.levelno < std_logging.WARNING else
             "warning: " if record.levelno < std_logging.ERROR else "ERROR: ")
    text = f"{stamp} {level}{record.getMessage()}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


def configure_logging(verbose: bool) -> None:
  """One stream: absl's handler on the root logger, TensorFlow's records going through it.

  Not verbose: TensorFlow's own INFO lines (model_fn calls, session set-up, raw eval dicts)
  are dropped, its warnings kept; library deprecation warnings are silenced; lines are short.
  """
  logging.use_absl_handler()  # before TF asks: it adds its own handler only to a bare root
  tf_logger = std_logging.getLogger("tensorflow")
  for handler in list(tf_logger.handlers):  # if TF was imported first after all
    tf_logger.removeHandler(handler)
  tf_logger.propagate = True
  if verbose:
    tf_logger.setLevel(std_logging.DEBUG)
    return
  tf_logger.setLevel(std_logging.WARNING)
  logging.get_absl_handler().setFormatter(ShortFormatter())
  for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", category=category)
  # Estimator is deprecated as a whole; its per-call deprecation warnings are noise here.
  try:
    from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
    deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access
  except ImportError:
    pass


# --- Help -------------------------------------------------------------------------------------

_SHORT_HELP = ("-h", "-help", "--help", "--helpshort", "-helpshort", "-?")
_FULL_HELP = ("--helpfull", "-helpfull")
_SECTION = re.compile(r"^\[(\w+)\] ")
_OUR_PACKAGES = ("scripts.", "estimator_app.", "input_fns.", "model_fns.", "__main__")
_WIDTH = 100


def _flag_entry(flag) -> str:
  default = flag.default_as_str if flag.default_as_str is not None else ""
  head = f"  --{flag.name}" + (f"={default.strip(chr(39))}" if default not in ("", "''") else "")
  if flag.short_name:
    head += f" (-{flag.short_name})"
  body = textwrap.fill(_SECTION.sub("", flag.help or ""), _WIDTH, initial_indent="      ",
                       subsequent_indent="      ")
  return f"{head}\n{body}"


def _script_name() -> str:
  return os.path.splitext(os.path.basename(sys.argv[0]))[0]


def _our_flags() -> "Dict[str, list]":
  """Group -> flags: the config sections ("[data] ..." helps), this script's own, logging."""
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  groups: Dict[str, list] = {}
  for module, module_flags in absl_flags.FLAGS.flags_by_module_dict().items():
    ours = module.startswith(_OUR_PACKAGES) or os.path.abspath(module) == os.path.abspath(sys.argv[0])
    for flag in module_flags:
      section = _SECTION.match(flag.help or "")
      if section:
        group = section.group(1)
      elif flag.name == "verbosity":
        group = "logging"
      elif ours and module.endswith("experiment_flags"):
        group = "model"
      elif ours:
        group = _script_name()
      else:
        continue  # absl's test flags, TensorFlow's TPU and tracer flags...
      if all(f.name != flag.name for f in groups.get(group, [])):
        groups.setdefault(group, []).append(flag)
  return groups


def _default_key_flags():
  return [f.name for f in _our_flags().get(_script_name(), [])]


def _usage() -> str:
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  return doc


def short_help(key_flags: Sequence[str]) -> str:
  """The script's docstring (its examples), then the flags most runs need."""
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  lines = [_usage(), "", "Flags most runs need:"]
  for name in key_flags:
    if name in absl_flags.FLAGS:
      lines.append(_flag_entry(absl_flags.FLAGS[name]))
  lines += ["", "Every flag, grouped by section, and each model's hparams: --helpfull. "
            "Everything TensorFlow logs: -v 1."]
  return "\n".join(lines)


_GROUP_ORDER = ("model", "data", "run", "optimization", "distribution")


def full_help(more: Optional[Callable[[], str]] = None) -> str:
  """Every flag of this project, grouped: model, the config sections, the script's, logging."""
  groups = _our_flags()
  order = [g for g in _GROUP_ORDER if g in groups] + sorted(
      g for g in groups if g not in _GROUP_ORDER and g != "logging") + (
          ["logging"] if "logging" in groups else [])
  lines = [_usage()]
  for group in order:
    lines += ["", f"{group} flags:"]
    lines += [_flag_entry(f) for f in sorted(groups[group], key=lambda f: f.name)]
  if more is not None:
    lines += ["", more()]
  return "\n".join(lines)


def _help_requested(argv: Sequence[str]) -> Optional[str]:
  for arg in argv:
    if arg == "--":
      return None
    if arg in _FULL_HELP:
      return "full"
    if arg in _SHORT_HELP:
      return "short"
  return None
