"""How a checkpoint is named and found, and what it holds: variables, shapes, dtypes, sizes, step.

The one place that turns what a user gave into a checkpoint prefix:

  * `resolve(model_dir, which)`: "latest", "best" (model_dir/best, else the best evaluated
    checkpoint still in model_dir) or a path; what every script's --checkpoint means;
  * `checkpoint_prefix(path)`: a checkpoint prefix, one of its files, a directory's latest
    checkpoint or a SavedModel directory's variables (--warm_start_from, inspect_checkpoint);
  * `checkpoint_step(prefix)`: the global step in a prefix's name (`model.ckpt-400` -> 400).

Inspecting reads the checkpoint's index only (tf.train.load_checkpoint), so a large checkpoint
costs no tensor reads, except for string tensors, whose size is only known from their values.
Works with any tf.train.Saver / Estimator checkpoint (and object-based ones), local or gs://.
Each saved tensor is put in one of GROUPS: what training learns apart from what the optimizer
and the run keep (see `group_variables`), so a checkpoint's size can be read per group.
"""

import dataclasses
import os
import re
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import message
from tensorflow.core.framework import variable_pb2  # pylint: disable=g-direct-tensorflow-import

from estimator_app.training import early_stopping
from input_fns import errors

LATEST = "latest"
BEST = "best"
BEST_DIR = "best"  # model_dir/best: the best N checkpoints kept by retention.py
GLOBAL_STEP = "global_step"
_STEP_SUFFIX = re.compile(r"-(\d+)$")
_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")

# What a saved tensor is, in the order inspect_checkpoint shows them.
TRAINABLE = "trainable"  # the weights gradients train
NON_TRAINABLE = "non-trainable"  # model state updated otherwise: batch-norm moving statistics
OPTIMIZER = "optimizer"  # slots (Adam m and v, momentum, accumulators), beta powers, loss scale
BOOKKEEPING = "bookkeeping"  # global_step, the object graph, save counters
GROUPS = (TRAINABLE, NON_TRAINABLE, OPTIMIZER, BOOKKEEPING)
_BOOKKEEPING = re.compile(r"^(global_step|_CHECKPOINTABLE_OBJECT_GRAPH|save_counter(/.*)?)$")
# tf.compat.v1 optimizers name a slot "<variable>/<Optimizer>[_n]" and their own variables as
# below; object-based (Keras) checkpoints keep both under "optimizer/" or ".OPTIMIZER_SLOT".
_OPTIMIZER = re.compile(
    r"/(Adam|AdamW|Momentum|RMSProp|Adagrad|AdagradDA|Adadelta|Ftrl|ProximalAdagrad)(_\d+)?$|"
    r"(^|/)(beta1_power|beta2_power|current_loss_scale|good_steps)(_\d+)?$|"
    r"^optimizer/|/\.OPTIMIZER_SLOT/")
_MODEL_STATE = re.compile(r"/(moving_mean|moving_variance|ExponentialMovingAverage)(/.*)?$")


class CheckpointError(errors.UserInputError):
  """A path that does not exist, is not a checkpoint, or cannot be read as one."""


@dataclasses.dataclass(frozen=True)
class VariableInfo:
  """One variable: a tensor saved in a checkpoint, or a variable a model_fn creates.

  Attributes:
    name: its name (no ":0"), e.g. "dense/kernel".
    shape: its static shape; () for a scalar.
    dtype: dtype name, e.g. "float32"; None when not known.
    num_params: number of elements (checkpoint tensors; None for a model's variables).
    num_bytes: size of the saved values (elements x dtype size; actual lengths for strings);
      None for a model's variables.
  """
  name: str
  shape: Tuple[int, ...]
  dtype: Optional[str] = None
  num_params: Optional[int] = None
  num_bytes: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  """A checkpoint's contents.

  Attributes:
    prefix: the checkpoint prefix (path without .index/.data-*).
    global_step: the saved global_step variable, else the step in the prefix, else None.
    variables: every saved tensor (or those selected by a name filter), sorted by name.
    groups: variable name -> its group (one of GROUPS).
  """
  prefix: str
  global_step: Optional[int]
  variables: Tuple[VariableInfo, ...]
  groups: Mapping[str, str] = dataclasses.field(default_factory=dict)

  @property
  def total_params(self) -> int:
    return sum(v.num_params for v in self.variables)

  @property
  def total_bytes(self) -> int:
    return sum(v.num_bytes for v in self.variables)

  def by_group(self) -> List[Tuple[str, Tuple[VariableInfo, ...]]]:
    """(group, its variables) for each group that has any, in GROUPS order."""
    out = []
    for group in GROUPS:
      members = tuple(v for v in self.variables if self.groups.get(v.name, TRAINABLE) == group)
      if members:
        out.append((group, members))
    return out


@dataclasses.dataclass(frozen=True)
class CheckpointEntry:
  """One checkpoint in a directory.

  Attributes:
    prefix: its prefix.
    step: the global step it was saved at (from its name, else its global_step), or None.
    num_bytes: size on disk of its index and data files.
    is_latest: whether the directory's `checkpoint` state file names it as the latest.
  """
  prefix: str
  step: Optional[int]
  num_bytes: int
  is_latest: bool


@dataclasses.dataclass(frozen=True)
class BestEntry:
  """One checkpoint kept in model_dir/best by retention.py, with the evaluation that ranked it.

  Attributes:
    prefix: its prefix (under model_dir/best).
    step: the global step it was saved at, or None.
    metric: the eval metric the kept checkpoints are ranked by.
    value: this checkpoint's value of `metric`.
    higher_is_better: the ranking's direction.
  """
  prefix: str
  step: Optional[int]
  metric: str
  value: float
  higher_is_better: bool


def checkpoint_step(prefix: str) -> Optional[int]:
  """Returns the global step in a checkpoint prefix like `.../model.ckpt-400`, or None."""
  match = _STEP_SUFFIX.search(os.path.basename(prefix))
  return int(match.group(1)) if match else None


def _read_global_step(reader) -> Optional[int]:
  if reader.has_tensor(GLOBAL_STEP):
    value = np.asarray(reader.get_tensor(GLOBAL_STEP))
    if value.size == 1 and np.issubdtype(value.dtype, np.integer):
      return int(value.reshape(()))
  return None


def _load(prefix: str):
  try:
    return tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(f"checkpoint {prefix} cannot be read: {message}") from e


def _prefixes_in(directory: str) -> List[str]:
  pattern = os.path.join(directory, "*.index")
  return [p[:-len(".index")] for p in tf.io.gfile.glob(pattern)]


def _file_size(path: str) -> int:
  try:
    return tf.io.gfile.stat(path).length
  except tf.errors.NotFoundError:
    return 0


def list_checkpoints(directory: str) -> List[CheckpointEntry]:
  """Lists every checkpoint (every *.index) directly in `directory`, oldest step first.

  Args:
    directory: a model_dir or any directory holding checkpoints, local or gs://.

  Returns:
    The checkpoints, sorted by step (those without a step last), then prefix.

  Raises:
    CheckpointError: `directory` does not exist or is not a directory.
  """
  if not tf.io.gfile.isdir(directory):
    raise CheckpointError(f"checkpoint directory {directory} does not exist or is not a directory")
  latest = tf.train.latest_checkpoint(directory)
  entries = []
  for prefix in _prefixes_in(directory):
    step = checkpoint_step(prefix)
    if step is None:  # a hand-named checkpoint: only its variables know the step
      try:
        step = _read_global_step(_load(prefix))
      except CheckpointError:
        step = None
    size = sum(_file_size(p) for p in tf.io.gfile.glob(prefix + ".data-*")) + _file_size(
        prefix + ".index")
    entries.append(CheckpointEntry(prefix, step, size, latest is not None and
                                   os.path.normpath(latest) == os.path.normpath(prefix)))
  return sorted(entries, key=lambda e: (e.step is None, e.step or 0, e.prefix))


def listing_if_directory(path: str) -> Optional[List[CheckpointEntry]]:
  """`list_checkpoints(path)` when `path` is a directory, else None (a prefix or a file)."""
  return list_checkpoints(path) if tf.io.gfile.isdir(path) else None


def checkpoint_prefix(path: str, candidates: Sequence[str] = ()) -> str:
  """Turns a path a user typed into a checkpoint prefix.

  Args:
    path: a directory (its latest checkpoint: per its `checkpoint` state file, else the one
      with the highest step; a SavedModel directory: its variables), a checkpoint prefix, or
      one of a checkpoint's files
      (PREFIX.index, PREFIX.data-00000-of-00001, PREFIX.meta).
    candidates: what else the user may have meant (e.g. "latest", a model_dir's checkpoints);
      a path that does not exist gets the nearest of these and of the checkpoints beside it
      suggested.

  Returns:
    The checkpoint prefix.

  Raises:
    CheckpointError: the path does not exist, is a directory without checkpoints, or is not
      a checkpoint.
  """
  path = path.rstrip("/") or path
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest and tf.io.gfile.exists(latest + ".index"):
      return latest
    entries = list_checkpoints(path)
    saved_model_vars = os.path.join(path, "variables", "variables")
    if not entries and tf.io.gfile.exists(saved_model_vars + ".index"):
      return saved_model_vars  # a SavedModel directory: its variables are a checkpoint
    if not entries:
      raise CheckpointError(f"checkpoint directory {path} holds no checkpoints "
                            "(no PREFIX.index files, no SavedModel variables)")
    stepped = [e for e in entries if e.step is not None]
    return (stepped or entries)[-1].prefix
  if tf.io.gfile.exists(path + ".index"):
    return path
  stripped = _FILE_SUFFIX.sub("", path)
  if stripped != path and tf.io.gfile.exists(stripped + ".index"):
    return stripped
  if tf.io.gfile.exists(path):
    raise CheckpointError(f"{path} is not a checkpoint: expected a directory holding "
                          "checkpoints or a checkpoint prefix PREFIX (with PREFIX.index)")
  raise CheckpointError(f"checkpoint {path} does not exist (expected a directory holding "
                        "checkpoints or a checkpoint prefix PREFIX, with PREFIX.index)"
                        f"{_nearest_checkpoints(path, candidates)}")


def _nearest_checkpoints(path: str, candidates: Sequence[str]) -> str:
  """"; did you mean ...?" naming the candidates and the checkpoints beside `path` (compared by
  basename, so "runs/x/model.ckpt-450" finds "runs/x/model.ckpt-400")."""
  parent = os.path.dirname(path)
  beside = _prefixes_in(parent) if parent and tf.io.gfile.isdir(parent) else []
  return errors.did_you_mean(os.path.basename(path), list(candidates) + sorted(beside),
                             key=os.path.basename)


def best_checkpoint(best_dir: str) -> Optional[str]:
  """Returns the prefix of the best kept checkpoint under `best_dir`, or None."""
  return tf.train.latest_checkpoint(best_dir)


def resolve(model_dir: str, which: str, metric: str = "accuracy", higher_is_better: bool = True,
            eval_dir: str = "eval") -> str:
  """Turns what a user asked for ("latest", "best" or a path) into a checkpoint prefix.

  "best" is the best checkpoint kept in model_dir/best (by the run's best_metric). A run that
  kept none (keep_best=0) falls back to the checkpoint still in model_dir whose evaluation
  (model_dir/<eval_dir> summaries) scored best on `metric`. Anything else is a path (see
  `checkpoint_prefix`).

  Args:
    model_dir: the run's model_dir.
    which: LATEST, BEST, or a path.
    metric: the eval metric that ranks checkpoints when model_dir/best holds none.
    higher_is_better: its direction (ties go to the later checkpoint).
    eval_dir: the evaluation's summary directory under model_dir.

  Returns:
    The checkpoint prefix.

  Raises:
    errors.UserInputError: no checkpoint, no evaluation of a kept checkpoint, or a bad path
      (CheckpointError; one that does not exist gets the nearest of "latest", "best" and the
      checkpoints in model_dir suggested).
  """
  if which == LATEST:
    prefix = tf.train.latest_checkpoint(model_dir) if model_dir else None
    if not prefix:
      raise errors.UserInputError(f"--model_dir {model_dir!r} holds no checkpoint")
    return prefix
  if which != BEST:
    in_model_dir = _prefixes_in(model_dir) if model_dir and tf.io.gfile.isdir(model_dir) else []
    return checkpoint_prefix(which, candidates=[LATEST, BEST] + sorted(in_model_dir))
  kept_best = best_checkpoint(os.path.join(model_dir, BEST_DIR))
  if kept_best:
    return kept_best
  state = tf.train.get_checkpoint_state(model_dir) if model_dir else None
  if not state:
    raise errors.UserInputError(f"--model_dir {model_dir!r} holds no checkpoint")
  by_step = {checkpoint_step(p): p for p in state.all_model_checkpoint_paths}
  scores = {step: values[metric] for step, values in
            early_stopping.read_eval_metrics(os.path.join(model_dir, eval_dir)).items()
            if metric in values and step in by_step}
  if not scores:
    raise errors.UserInputError(
        f"no evaluation of {metric!r} in {os.path.join(model_dir, eval_dir)} matches a kept "
        f"checkpoint (steps {sorted(by_step)}), and {model_dir}/{BEST_DIR} holds none")
  pick = max if higher_is_better else min
  return by_step[pick(scores, key=lambda s: (scores[s], s if higher_is_better else -s))]


def _trainable_names(prefix: str) -> Optional[FrozenSet[str]]:
  """The trainable_variables collection of the checkpoint's .meta graph; None without one."""
  path = prefix + ".meta"
  try:
    if not tf.io.gfile.exists(path):
      return None
    meta = tf.compat.v1.MetaGraphDef()
    with tf.io.gfile.GFile(path, "rb") as f:
      meta.ParseFromString(f.read())
  except (tf.errors.OpError, message.DecodeError):
    return None  # an unreadable .meta only costs the grouping its best source
  if "trainable_variables" not in meta.collection_def:
    return None
  names = set()
  for serialized in meta.collection_def["trainable_variables"].bytes_list.value:
    variable = variable_pb2.VariableDef.FromString(serialized)
    # A partitioned variable's parts are saved under its full name.
    full = variable.save_slice_info_def.full_name
    names.add(full or variable.variable_name.rsplit(":", 1)[0])
  return frozenset(names)


def group_variables(names: Iterable[str],
                    trainable: Optional[FrozenSet[str]] = None) -> Dict[str, str]:
  """Puts each saved tensor name in one of GROUPS.

  Args:
    names: every tensor name in a checkpoint (slots are found next to their variable).
    trainable: the graph's trainable variables, when known (from the .meta file); without them
      a name that is no slot, optimizer or bookkeeping variable and no moving statistic counts
      as trainable.

  Returns:
    name -> group.
  """
  names = set(names)
  out = {}
  for name in names:
    parent = name.rpartition("/")[0]
    if trainable is not None and name in trainable:
      out[name] = TRAINABLE
    elif _BOOKKEEPING.match(name):
      out[name] = BOOKKEEPING
    elif _MODEL_STATE.search(name):
      out[name] = NON_TRAINABLE
    elif _OPTIMIZER.search(name) or (trainable is not None and parent in trainable):
      out[name] = OPTIMIZER
    else:
      out[name] = TRAINABLE if trainable is None else NON_TRAINABLE
  return out


def inspect(path: str, name_regex: Optional[str] = None) -> CheckpointInfo:
  """Reads the variables of a checkpoint.

  Args:
    path: see `checkpoint_prefix`.
    name_regex: keep only variables whose name matches this regex (re.search).

  Returns:
    The checkpoint's variables with shapes, dtypes and sizes, and its global step.

  Raises:
    CheckpointError: see `checkpoint_prefix`; also an unreadable checkpoint or an invalid regex.
  """
  try:
    pattern = re.compile(name_regex) if name_regex else None
  except re.error as e:
    raise CheckpointError(f"variable filter {name_regex!r} is not a valid regex: {e}") from e
  prefix = checkpoint_prefix(path)
  reader = _load(prefix)
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  variables = []
  for name in sorted(shapes):
    if pattern and not pattern.search(name):
      continue
    shape = tuple(int(d) for d in shapes[name])
    dtype = tf.as_dtype(dtypes[name])
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == tf.string:
      values = np.asarray(reader.get_tensor(name)).reshape(-1)
      size = sum(len(v) for v in values)
    else:
      size = count * dtype.size
    variables.append(VariableInfo(name, shape, dtype.name, count, size))
  step = _read_global_step(reader)
  groups = group_variables(shapes, _trainable_names(prefix))
  return CheckpointInfo(prefix, step if step is not None else checkpoint_step(prefix),
                        tuple(variables), {v.name: groups[v.name] for v in variables})


def human_bytes(n: int) -> str:
  """1536 -> '1.5 KiB'."""
  size = float(n)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if size < 1024 or unit == "TiB":
      return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1024
  return f"{n} B"


def _totals(variables: Sequence[VariableInfo]) -> str:
  """"3 variables, 11 params, 48 B"."""
  plural = "" if len(variables) == 1 else "s"
  return (f"{len(variables)} variable{plural}, {sum(v.num_params for v in variables):,} params, "
          f"{human_bytes(sum(v.num_bytes for v in variables))}")


def format_table(info: CheckpointInfo,
                 entries: Optional[Sequence[CheckpointEntry]] = None,
                 best: Optional[Sequence[BestEntry]] = None) -> str:
  """A printable table of the variables by group, totals per group, and (optionally) the
  directory's checkpoints and the run's best kept ones."""
  header = ("variable", "shape", "dtype", "params", "bytes")
  groups = info.by_group()
  body = {v.name: (v.name, "[" + ", ".join(str(d) for d in v.shape) + "]", v.dtype,
                   f"{v.num_params:,}", human_bytes(v.num_bytes)) for v in info.variables}
  widths = [max(len(r[i]) for r in [header, *body.values()]) for i in range(len(header))]

  def line(r):
    return "  " + "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                             r[2].ljust(widths[2]), r[3].rjust(widths[3]),
                             r[4].rjust(widths[4])]).rstrip()

  out = [f"checkpoint:  {info.prefix}",
         f"global step: {info.global_step if info.global_step is not None else 'unknown'}",
         "", line(header), line(tuple("-" * w for w in widths))]
  for group, members in groups:
    out.append(f"{group}:")
    out += [line(body[v.name]) for v in members]
  out.append(f"total: {_totals(info.variables)}")
  label_width = max((len(group) for group, _ in groups), default=0) + 1
  out += [f"  {group + ':':<{label_width}} {_totals(members)}" for group, members in groups]
  if entries:
    out += ["", f"checkpoints in {os.path.dirname(entries[0].prefix)} ({len(entries)}):"]
    for e in entries:
      step = str(e.step) if e.step is not None else "?"
      mark = "  (latest)" if e.is_latest else ""
      out.append(f"  step {step:>9}  {human_bytes(e.num_bytes):>10}  "
                 f"{os.path.basename(e.prefix)}{mark}")
  if best:
    where = os.path.dirname(os.path.dirname(best[0].prefix))  # best/<dir>/<prefix>
    direction = "higher" if best[0].higher_is_better else "lower"
    out += ["", f"best checkpoints in {where} by {best[0].metric} ({direction} is better), "
                f"best first ({len(best)}):"]
    for e in best:
      step = str(e.step) if e.step is not None else "?"
      out.append(f"  step {step:>9}  {e.metric} {e.value:.6g}  "
                 f"{os.path.relpath(e.prefix, where)}")
  return "\n".join(out)


def to_dict(info: CheckpointInfo,
            entries: Optional[Sequence[CheckpointEntry]] = None,
            best: Optional[Sequence[BestEntry]] = None) -> Dict[str, Any]:
  """The same as format_table, as a JSON-ready dict."""
  out = {
      "prefix": info.prefix,
      "global_step": info.global_step,
      "num_variables": len(info.variables),
      "total_params": info.total_params,
      "total_bytes": info.total_bytes,
      "variables": [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype,
                     "params": v.num_params, "bytes": v.num_bytes} for v in info.variables],
      "groups": {group: {"num_variables": len(members),
                         "total_params": sum(v.num_params for v in members),
                         "total_bytes": sum(v.num_bytes for v in members),
                         "variables": [v.name for v in members]}
                 for group, members in info.by_group()},
  }
  if entries is not None:
    out["checkpoints"] = [{"prefix": e.prefix, "step": e.step, "bytes": e.num_bytes,
                           "latest": e.is_latest} for e in entries]
  if best is not None:
    out["best"] = [{"prefix": e.prefix, "step": e.step, "metric": e.metric, "value": e.value,
                    "higher_is_better": e.higher_is_better} for e in best]
  return out
