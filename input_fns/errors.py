"""The base of every error a user can cause with a bad file, flag, record or config.

It lives in the bottom layer so input_fns, model_fns and estimator_app can all raise it.
Scripts (scripts/cli.py) print its message as one line and exit non-zero; any other
exception is a bug and keeps its traceback. `redact` keeps credentials a user put in a URL
out of those lines and out of run records; `did_you_mean` ends a message about a mistyped
name with the valid names nearest to it.
"""

import difflib
import re
from typing import Callable, Iterable

# Credentials a user may have put in a URL (query tokens, user:password@).
_URL_SECRETS = (
    re.compile(r"(?i)([?&](?:access_token|token|key|sig|signature|x-goog-signature|"
               r"x-goog-credential|password|secret)=)[^&\s/]+"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@"),
)


def redact(text: str) -> str:
  """`text` with URL credentials replaced by REDACTED."""
  text = _URL_SECRETS[0].sub(r"\1REDACTED", text)
  return _URL_SECRETS[1].sub(r"\1REDACTED@", text)


def did_you_mean(name: str, choices: Iterable[str],
                 key: Callable[[str], str] = lambda choice: choice) -> str:
  """"; did you mean 'x'?" naming the choices nearest to `name`, or "" when none is near.

  Args:
    name: what the user typed.
    choices: the valid names.
    key: what of a choice to compare with `name` (e.g. a path's basename); the suggestion
      shows the whole choice.

  Returns:
    A suffix for an error message (up to three suggestions, nearest first).
  """
  by_key = {}
  for choice in choices:
    by_key.setdefault(key(choice), choice)
  near = [by_key[k] for k in difflib.get_close_matches(name, list(by_key), n=3) if k != name]
  if not near:
    return ""
  return "; did you mean " + " or ".join(repr(c) for c in near) + "?"


class UserInputError(ValueError):
  """Bad input from the user. The message names what is wrong and where (file, flag, record)."""


class MetricNotFoundError(UserInputError):
  """A metric the user named (for early stopping or best-checkpoint retention) is not among the
  metrics the evaluation wrote."""
