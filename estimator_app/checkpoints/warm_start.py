"""Warm start from a pre-trained checkpoint, with a report made before training starts.

    variables = warm_start.model_variables(model_fn, train_input_fn)
    settings = warm_start.prepare_warm_start("path/to/ckpt_or_dir", model_dir, variables,
                                             vars_regex="hidden_.*", name_map={"new": "old"})
    estimator = tf.estimator.Estimator(model_fn, config=run_config, warm_start_from=settings)

`prepare_warm_start` compares the model's variables with the checkpoint's
(`tf.train.list_variables`), prints what will be loaded, what is missing from the checkpoint
and what has a different shape (or dtype), saves that as `model_dir/warm_start_report.json`,
and returns `tf.estimator.WarmStartSettings` that load exactly the variables that fit:
WarmStartSettings itself would fail on a mismatched or missing variable.

Which variables: those the model_fn creates (built once in EVAL mode, so optimizer slots such
as Adam's moments are not among them: a warm start brings weights, not optimizer state), whose
names `re.match` the regex (the same rule as WarmStartSettings). The name map says, for a
model variable, under which name the checkpoint holds it. Name-based checkpoints (Estimator,
`tf.compat.v1.train.Saver`) and object-based ones (`tf.train.Checkpoint`) are both read.

The Estimator warm-starts only when `model_dir` has no checkpoint yet; resuming a run ignores
the settings, and the report says so.
"""

import dataclasses
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
from absl import logging
from tensorflow.python.training import saver as saver_lib  # pylint: disable=g-direct-tensorflow-import

from estimator_app import model_call
from estimator_app.checkpoints import info as checkpoint_info
from input_fns import errors
from input_fns import files as files_lib

REPORT_FILENAME = "warm_start_report.json"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_PRINT_LIMIT = 20

# A model variable as VariableInfo, or as a (name, shape) pair.
VariableOrPair = Union[checkpoint_info.VariableInfo, Tuple[str, Sequence[int]]]


class WarmStartError(errors.UserInputError):
  """A bad --warm_start_from path, variable regex or name map."""


@dataclasses.dataclass
class WarmStartReport:
  """What a warm start loads. Every list holds dicts with "name" (the model's) and more.

  Attributes:
    checkpoint: the resolved checkpoint prefix.
    checkpoint_global_step: its global_step value, if it holds one.
    vars_regex: which model variables were asked for.
    name_map: model name -> checkpoint name overrides.
    loaded: {"name", "checkpoint_name", "shape"} for every variable that will be loaded.
    missing: selected variables the checkpoint does not hold {"name", "checkpoint_name", "shape"}.
    shape_mismatched: {"name", "checkpoint_name", "shape", "checkpoint_shape"}; not loaded.
    dtype_mismatched: {"name", "checkpoint_name", "dtype", "checkpoint_dtype"}; not loaded.
    not_selected: model variable names the regex left out (they keep their initializers).
    unused_in_checkpoint: checkpoint names no loaded variable takes.
    applies: False when model_dir already has a checkpoint (the Estimator resumes instead).
  """
  checkpoint: str
  checkpoint_global_step: Optional[int]
  vars_regex: str
  name_map: Dict[str, str]
  loaded: List[Dict[str, Any]]
  missing: List[Dict[str, Any]]
  shape_mismatched: List[Dict[str, Any]]
  dtype_mismatched: List[Dict[str, Any]]
  not_selected: List[str]
  unused_in_checkpoint: List[str]
  applies: bool = True

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def format(self) -> str:
    """A human-readable summary (long lists cut; the JSON has everything)."""
    step = (f" (global step {self.checkpoint_global_step})"
            if self.checkpoint_global_step is not None else "")
    lines = [f"warm start from {self.checkpoint}{step}, model variables matching "
             f"{self.vars_regex!r}:"]
    if not self.applies:
      lines.append("  NOT APPLIED: model_dir already has a checkpoint, training resumes from it")

    def section(title, items, fmt):
      lines.append(f"  {title} ({len(items)})" + (":" if items else ""))
      for item in items[:_PRINT_LIMIT]:
        lines.append("    " + fmt(item))
      if len(items) > _PRINT_LIMIT:
        lines.append(f"    ... and {len(items) - _PRINT_LIMIT} more")

    def src(e):
      return "" if e["checkpoint_name"] == e["name"] else f" <- {e['checkpoint_name']}"

    section("loaded", self.loaded, lambda e: f"{e['name']} {list(e['shape'])}{src(e)}")
    section("missing from the checkpoint, not loaded", self.missing,
            lambda e: f"{e['name']} {list(e['shape'])}{src(e)}")
    section("shape-mismatched, not loaded", self.shape_mismatched,
            lambda e: f"{e['name']}: model {list(e['shape'])} vs checkpoint "
                      f"{list(e['checkpoint_shape'])}{src(e)}")
    if self.dtype_mismatched:
      section("dtype-mismatched, not loaded", self.dtype_mismatched,
              lambda e: f"{e['name']}: model {e['dtype']} vs checkpoint {e['checkpoint_dtype']}")
    section("not selected by the regex (initialized fresh)", self.not_selected, str)
    lines.append(f"  checkpoint variables not used: {len(self.unused_in_checkpoint)}")
    return "\n".join(lines)


def parse_name_map(text: str) -> Dict[str, str]:
  """Parses "model_name=checkpoint_name,..." (the --warm_start_name_map format).

  Raises:
    WarmStartError: an entry without "=" or with an empty side, or a name given twice.
  """
  out = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    new, sep, old = (s.strip() for s in item.partition("="))
    if not sep or not new or not old:
      raise WarmStartError(f"warm start name map entry {item!r}: expected "
                           "model_variable=checkpoint_variable")
    if new in out:
      raise WarmStartError(f"warm start name map names {new!r} twice")
    out[new] = old
  return out


def model_variables(model_fn: Callable, input_fn: Callable[[], Any],
                    mode: str = tf.estimator.ModeKeys.EVAL, params: Optional[dict] = None,
                    config: Optional[tf.estimator.RunConfig] = None
                    ) -> List[checkpoint_info.VariableInfo]:
  """Builds the model once in a scratch graph and lists its variables.

  The input_fn's dataset is only wired in, never read.

  Args:
    model_fn: an Estimator model_fn.
    input_fn: a no-argument input_fn returning a Dataset of (features, labels) or a
      (features, labels) pair.
    mode: EVAL (default) creates the model's variables without optimizer slots.
    params: passed to model_fn if it takes `params`.
    config: passed to model_fn if it takes `config`.

  Returns:
    The global variables (global_step excluded), in creation order.
  """
  with tf.Graph().as_default() as graph:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    batch = input_fn()
    if isinstance(batch, tf.data.Dataset):
      batch = tf.compat.v1.data.make_initializable_iterator(batch).get_next()
    features, labels = batch if isinstance(batch, (tuple, list)) and len(batch) == 2 else (
        batch, None)
    model_call.call_model_fn(model_fn, features, labels, mode, params, config)
    return [checkpoint_info.VariableInfo(v.op.name, tuple(v.shape.as_list()),
                                         v.dtype.base_dtype.name)
            for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            if v.op.name != global_step.op.name]


def _as_infos(variables: Sequence[VariableOrPair]) -> List[checkpoint_info.VariableInfo]:
  return [v if isinstance(v, checkpoint_info.VariableInfo)
          else checkpoint_info.VariableInfo(v[0], tuple(v[1])) for v in variables]


def plan(checkpoint: str, variables: Sequence[VariableOrPair],
         vars_regex: str = ".*", name_map: Optional[Mapping[str, str]] = None
         ) -> Tuple[Optional[tf.estimator.WarmStartSettings], WarmStartReport]:
  """Matches model variables against a checkpoint.

  Args:
    checkpoint: a checkpoint prefix (see checkpoint_info.checkpoint_prefix).
    variables: the model's variables, as checkpoint_info.VariableInfo or (name, shape) pairs.
    vars_regex: which variables to load (`re.match` on the name).
    name_map: model variable name -> name in the checkpoint.

  Returns:
    (WarmStartSettings loading exactly the report's `loaded` variables, or None if none;
    the report).

  Raises:
    WarmStartError: an invalid regex, or a name-map key that is not a model variable.
  """
  infos = _as_infos(variables)
  name_map = dict(name_map or {})
  try:
    pattern = re.compile(vars_regex)
  except re.error as e:
    raise WarmStartError(f"warm start variable regex {vars_regex!r} is invalid: {e}") from e
  known = {v.name for v in infos}
  unknown = sorted(set(name_map) - known)
  if unknown:
    raise WarmStartError(
        f"warm start name map names {', '.join(unknown)}, not variables of the model "
        f"(it has: {', '.join(sorted(known)[:_PRINT_LIMIT])}{' ...' if len(known) > 20 else ''})")
  reader = tf.train.load_checkpoint(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  object_keys = {}
  if _OBJECT_GRAPH_KEY in shapes:
    # tf.train.Checkpoint stores values under object-path keys; map variable names to them.
    object_keys = saver_lib.object_graph_key_mapping(checkpoint)
  step = None
  if "global_step" in shapes:
    step = int(reader.get_tensor("global_step"))
  loaded, missing, shape_bad, dtype_bad, not_selected = [], [], [], [], []
  for v in infos:
    if not pattern.match(v.name):
      not_selected.append(v.name)
      continue
    ckpt_name = name_map.get(v.name, v.name)
    ckpt_key = object_keys.get(ckpt_name, ckpt_name)
    entry = {"name": v.name, "checkpoint_name": ckpt_key, "shape": list(v.shape)}
    if ckpt_key not in shapes:
      missing.append(entry)
    elif tuple(shapes[ckpt_key]) != tuple(v.shape):
      shape_bad.append(dict(entry, checkpoint_shape=list(shapes[ckpt_key])))
    elif v.dtype and dtypes[ckpt_key].base_dtype.name != v.dtype:
      dtype_bad.append(dict(entry, dtype=v.dtype, checkpoint_dtype=dtypes[ckpt_key].name))
    else:
      loaded.append(entry)
  used = {e["checkpoint_name"] for e in loaded}
  unused = sorted(k for k in shapes if k not in used and k != _OBJECT_GRAPH_KEY)
  report = WarmStartReport(
      checkpoint=checkpoint, checkpoint_global_step=step, vars_regex=vars_regex,
      name_map=name_map, loaded=loaded, missing=missing, shape_mismatched=shape_bad,
      dtype_mismatched=dtype_bad, not_selected=not_selected, unused_in_checkpoint=unused)
  if not loaded:
    return None, report
  settings = tf.estimator.WarmStartSettings(
      ckpt_to_initialize_from=checkpoint,
      # Exact names: anything else matched by the user's regex was excluded above on purpose.
      vars_to_warm_start=[re.escape(e["name"]) + r"(:\d+)?$" for e in loaded],
      var_name_to_prev_var_name={e["name"]: e["checkpoint_name"] for e in loaded
                                 if e["checkpoint_name"] != e["name"]} or None)
  return settings, report


def write_report(report: WarmStartReport, model_dir: str) -> str:
  """Writes the report as `model_dir/warm_start_report.json`; returns its path."""
  tf.io.gfile.makedirs(model_dir)
  path = os.path.join(model_dir, REPORT_FILENAME)
  with files_lib.atomic_open(path) as f:
    json.dump(report.to_dict(), f, indent=2)
  return path


def prepare_warm_start(warm_start_from: str, model_dir: str,
                       variables: Sequence[VariableOrPair],
                       vars_regex: str = ".*", name_map: Optional[Mapping[str, str]] = None,
                       print_fn: Callable[[str], None] = print, save_report: bool = True
                       ) -> tf.estimator.WarmStartSettings:
  """Resolves, plans, prints and saves the warm start; returns the settings for the Estimator.

  Args:
    warm_start_from: a checkpoint prefix, one of its files, a directory (its latest
      checkpoint) or a SavedModel directory (its variables): checkpoint_info.checkpoint_prefix.
    model_dir: the run's model_dir (the report goes there).
    variables: the model's variables (see `model_variables`).
    vars_regex: which variables to load.
    name_map: model variable name -> checkpoint name.
    print_fn: where the human-readable report goes.
    save_report: write model_dir/warm_start_report.json (in a cluster only the chief does:
      every task plans the same warm start, and one writer keeps the file whole).

  Returns:
    WarmStartSettings for `tf.estimator.Estimator(warm_start_from=...)`.

  Raises:
    WarmStartError: a bad path, regex or name map, or nothing would be loaded.
  """
  if not warm_start_from:
    raise WarmStartError("--warm_start_from is empty; give a checkpoint prefix or directory")
  try:
    checkpoint = checkpoint_info.checkpoint_prefix(warm_start_from)
  except checkpoint_info.CheckpointError as e:
    raise WarmStartError(f"--warm_start_from: {e}") from None
  settings, report = plan(checkpoint, variables, vars_regex, name_map)
  report.applies = tf.train.latest_checkpoint(model_dir) is None
  path = os.path.join(model_dir, REPORT_FILENAME)
  if save_report:
    write_report(report, model_dir)
  print_fn(report.format() + (f"\n  report saved to {path}" if save_report else ""))
  if settings is None:
    raise WarmStartError(
        f"--warm_start_from={warm_start_from}: no model variable can be loaded from "
        f"{checkpoint} ({len(report.missing)} missing, {len(report.shape_mismatched)} "
        f"shape-mismatched, {len(report.not_selected)} not matching {vars_regex!r}); "
        f"see {path}")
  logging.info("warm start: %d variables from %s", len(report.loaded), checkpoint)
  return settings
