"""The base of every error a user can cause with a bad file, flag, record or config.

It lives in the bottom layer so input_fns, model_fns and estimator_app can all raise it.
Scripts (estimator_app/cli.py) print its message as one line and exit non-zero; any other
exception is a bug and keeps its traceback.
"""


class UserInputError(ValueError):
  """Bad input from the user. The message names what is wrong and where (file, flag, record)."""
