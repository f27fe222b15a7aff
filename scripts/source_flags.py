"""Flag defaults whose home is a module that imports TensorFlow, read without importing it.

A script defines its flags when it is imported, and `--help` or a bad flag is answered from
them before main() runs. A default such as checkpoint_info.LATEST or reporting.DEFAULT_TAGS
lives in a library module that imports TensorFlow (seconds); `literal` reads such a constant
from that module's source, so it keeps its one home and help still answers in well under a
second. Only literals (strings, numbers, tuples of them) can be read this way.
"""

import ast
import functools
import importlib.util
from typing import Any, Dict


@functools.lru_cache(maxsize=None)
def module_tree(module: str) -> ast.Module:
  """The parsed source of `module`, without importing it (its parent packages are imported).

  Raises:
    LookupError: the module has no Python source.
  """
  try:
    spec = importlib.util.find_spec(module)
  except ModuleNotFoundError:  # a parent package is missing
    spec = None
  if spec is None or not spec.origin or not spec.origin.endswith(".py"):
    raise LookupError(f"no Python source for module {module}")
  with open(spec.origin, encoding="utf-8") as f:
    return ast.parse(f.read(), filename=spec.origin)


@functools.lru_cache(maxsize=None)
def assignments(module: str) -> Dict[str, ast.expr]:
  """NAME -> its expression, for each `NAME = ...` at the top level of `module`'s source."""
  out = {}
  for node in module_tree(module).body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)):
      out[node.targets[0].id] = node.value
  return out


def literal(module: str, name: str) -> Any:
  """The value of the top-level `name = <literal>` in `module`, read from its source.

  Args:
    module: a dotted module name, e.g. "estimator_app.checkpoints.info".
    name: a constant of that module assigned a Python literal, e.g. "LATEST".

  Returns:
    The constant's value, as importing the module would give it.

  Raises:
    LookupError: the module has no source, no top-level `name = ...`, or `name` is not assigned
      a literal there.
  """
  value = assignments(module).get(name)
  if value is None:
    raise LookupError(f"{module} has no top-level assignment to {name}")
  try:
    return ast.literal_eval(value)
  except (ValueError, TypeError, SyntaxError) as e:
    raise LookupError(f"{module}.{name} is not a literal: {ast.unparse(value)}") from e
