"""The experiment flags shared by the scripts that build an ExperimentConfig.

Every field of DataConfig, RunSettings and the optimization TrainConfig is a flag of the same
name, typed by the field and documented by the dataclass's docstring, so `--helpfull`, config
files and the saved config.json always agree. Only flags the user actually set override the
config file (precedence: defaults < --config < flags < --hparams).

Importing this module imports neither TensorFlow nor a model, so `--help` and a bad flag are
answered at once; `config_from_flags` (in main) and `models_help` (--helpfull) import them.
"""

import ast
import dataclasses
import re
import sys
import typing
from typing import Dict, List, Optional, Sequence, Tuple

from absl import flags

from estimator_app import config as config_lib
from estimator_app import paths
from model_fns import hparams as hparams_lib
from model_fns import registry
from scripts import source_flags

# The defaults the flags show are the main job's: ExperimentConfig's section defaults, read
# from its fields (building an ExperimentConfig would build the default model's hparams, and so
# import the model and TensorFlow).
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(config_lib.ExperimentConfig)}
_SECTIONS = {section: _FIELD_DEFAULTS[section]
             for section in ("data", "run", "optimization", "distribution")}


def _attribute_docs(cls) -> Dict[str, str]:
  """Field -> its help text from the class docstring's "Attributes:" section."""
  return _docs_of(cls.__doc__ or "", {f.name for f in dataclasses.fields(cls)})


def _docs_of(doc: str, names) -> Dict[str, str]:
  """Field -> its help text from a docstring's "Attributes:" section, for the fields `names`."""
  docs, current = {}, None
  in_attrs = False
  for line in doc.splitlines():
    if line.strip() == "Attributes:":
      in_attrs = True
      continue
    if not in_attrs:
      continue
    m = re.match(r"^\s{2,6}(\w+)(?: \([^)]*\))?: ?(.*)$", line)
    if m and m.group(1) in names:
      current = m.group(1)
      docs[current] = m.group(2).strip()
    elif current and line.strip():
      docs[current] += " " + line.strip()
  return docs


def _define(section: str, defaults) -> Dict[str, flags.FlagHolder]:
  holders = {}
  cls = type(defaults)
  docs = _attribute_docs(cls)
  for name, tp in hparams_lib.field_types(cls).items():
    default = getattr(defaults, name)
    help_text = f"[{section}] {docs.get(name, name)}"
    if tp is bool:
      holders[name] = flags.DEFINE_boolean(name, default, help_text)
    elif tp is int:
      holders[name] = flags.DEFINE_integer(name, default, help_text)
    elif tp is float:
      holders[name] = flags.DEFINE_float(name, default, help_text)
    else:  # str, tuples and optionals: parsed by the field's type (model_fns/hparams.py)
      text = ",".join(map(str, default)) if isinstance(default, tuple) else (
          "" if default is None else str(default))
      holders[name] = flags.DEFINE_string(name, text, help_text)
  return holders


MODEL = flags.DEFINE_string(
    "model", registry.DEFAULT_MODEL, f"Model to train: {', '.join(registry.names())}.")
CONFIG = flags.DEFINE_string(
    "config", None, "JSON experiment config (sections model, hparams, optimization, data, run); "
    "flags you set override it.")
HPARAMS = flags.DEFINE_string(
    "hparams", "", "Model (then optimization) hyperparameters, 'key=value,key2=[1,2]'; "
    "override everything else.")
SECTION_FLAGS = {section: _define(section, defaults) for section, defaults in _SECTIONS.items()}


def config_from_flags(base_dir: Optional[str] = None) -> config_lib.ExperimentConfig:
  """Reads the flags once into the frozen ExperimentConfig, paths resolved.

  Args:
    base_dir: where relative paths start (default: where the user ran the command).

  Raises:
    config_lib.ConfigError: a bad config file, flag value or hparam.
  """
  layers = []
  if CONFIG.value:
    layers.append(config_lib.read_file(paths.resolve_path(CONFIG.value, base_dir)))
  overrides = {section: {name: holder.value for name, holder in holders.items() if holder.present}
               for section, holders in SECTION_FLAGS.items()}
  overrides = {k: v for k, v in overrides.items() if v}
  if flags.FLAGS["model"].present:
    overrides["model"] = MODEL.value
  layers.append((overrides, "flags"))
  cfg = config_lib.from_layers(layers, HPARAMS.value)
  return config_lib.with_resolved_paths(cfg, base_dir)


def flag_names() -> List[str]:
  return ["model", "config", "hparams"] + [n for h in SECTION_FLAGS.values() for n in h]


def models_help() -> str:
  """Each registered model with its hparams, their defaults and meaning (for --helpfull).

  Read from the model files' source (their HParams dataclass, its docstring and defaults)
  without importing them: a model module imports TensorFlow, seconds that help should not wait.
  """
  lines = ["models (--model) and their hparams (--hparams=name=value,...):"]
  for name in registry.names():
    doc, fields, docs = _model_source_help(registry.module_name(name))
    lines.append(f"  {name}: {doc}")
    for field, default in fields:
      lines.append(f"      {field}={default}  {docs.get(field, '')}".rstrip())
  return "\n".join(lines)


def _imported_modules(tree: ast.Module) -> Dict[str, str]:
  """Local name -> module, for `from package import module [as name]` and `import a.b as n`."""
  out = {}
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    elif isinstance(node, ast.Import):
      for alias in node.names:
        out[alias.asname or alias.name] = alias.name
  return out


def _default_text(value: ast.expr, module: str) -> str:
  """A field default as help shows it: the literal's repr, following a module constant or
  `module.CONSTANT` of an imported project module one step; else the expression as written."""
  imported = _imported_modules(source_flags.module_tree(module))
  if isinstance(value, ast.Name):
    value = source_flags.assignments(module).get(value.id, value)
  elif (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
        and value.value.id in imported):
    try:
      value = source_flags.assignments(imported[value.value.id]).get(value.attr, value)
    except LookupError:
      pass
  try:
    return repr(ast.literal_eval(value))
  except (ValueError, TypeError, SyntaxError):
    return ast.unparse(value)


def _model_source_help(module: str) -> Tuple[str, List[Tuple[str, str]], Dict[str, str]]:
  """(first docstring line, [(field, default)], field -> help) of a model module's HParams."""
  tree = source_flags.module_tree(module)
  doc = (ast.get_docstring(tree) or "").strip().splitlines()
  fields, class_doc = [], ""
  for node in tree.body:
    if isinstance(node, ast.ClassDef) and node.name == "HParams":
      class_doc = ast.get_docstring(node) or ""
      for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
          default = "" if item.value is None else _default_text(item.value, module)
          fields.append((item.target.id, default))
  return (doc[0] if doc else ""), fields, _docs_of(class_doc, {f for f, _ in fields})
