"""Scalar curves of finished (or running) runs, read straight from their TensorBoard event files.

A run directory (an Estimator `model_dir`) holds event files in several places; each place is
one *source* of curves:

  model_dir/                 -> "train"       training summaries (loss, global_step/sec, ...)
  model_dir/eval/            -> "eval"        the full evaluation on every checkpoint
  model_dir/eval_<name>/     -> "eval_<name>" named eval sets, quick evals, final evaluations

Both summary styles are read: TF1 summaries (what Estimator writes) keep a scalar in
`simple_value`; TF2 summaries (`tf.summary.scalar`) keep it in a one-element `tensor`. String and
multi-element tensors (text such as `checkpoint_path`, histograms, images) are not scalars and
are skipped.

When a run was resumed, its directory holds several event files whose steps overlap. As
TensorBoard does, a restart (the SessionLog START event training writes at its first step)
drops every point logged at that step or later by the earlier attempt; and a point whose
step is not after the last one read for its tag replaces its tag's points from that step on.
So each curve shows the attempt that actually continued.
"""

import collections
import csv
import dataclasses
import fnmatch
import io
import os
import posixpath
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from input_fns import errors

TRAIN = "train"
EVENT_FILE_MARKER = "tfevents"
DEFAULT_TAGS = ("loss", "accuracy")
CSV_COLUMNS = ("run", "source", "tag", "step", "value", "wall_time")


class ReportError(errors.UserInputError):
  """A run directory has no readable event files, or a requested tag is in none of the runs."""


@dataclasses.dataclass(frozen=True)
class Series:
  """One scalar curve: a tag from one source of one run, sorted by step.

  Attributes:
    source: "train" for model_dir itself, else the sub-directory path ("eval", "eval_quick").
    tag: the summary tag, e.g. "loss", "accuracy", "global_step/sec".
    steps: global steps, strictly increasing.
    values: the scalar at each step.
    wall_times: seconds since the epoch at which each value was written.
  """
  source: str
  tag: str
  steps: Tuple[int, ...]
  values: Tuple[float, ...]
  wall_times: Tuple[float, ...]

  def last(self) -> Tuple[int, float]:
    """Returns (step, value) of the latest point."""
    return self.steps[-1], self.values[-1]

  def at(self, step: int) -> float:
    """Returns the value at exactly `step`.

    Raises:
      KeyError: no point at that step.
    """
    try:
      return self.values[self.steps.index(step)]
    except ValueError:
      raise KeyError(f"{self.source}/{self.tag} has no point at step {step}") from None


@dataclasses.dataclass(frozen=True)
class RunScalars:
  """Every scalar curve of one run directory.

  Attributes:
    name: a short label for legends and CSV rows (the directory's base name by default).
    run_dir: the directory that was read.
    series: every (source, tag) curve, sorted by source ("train" first) then tag.
  """
  name: str
  run_dir: str
  series: Tuple[Series, ...]

  def sources(self) -> List[str]:
    return list(dict.fromkeys(s.source for s in self.series))

  def tags(self, source: Optional[str] = None) -> List[str]:
    """Tags present in `source`, or in any source when None, sorted."""
    return sorted({s.tag for s in self.series if source is None or s.source == source})

  def get(self, tag: str, source: str = TRAIN) -> Optional[Series]:
    for s in self.series:
      if s.source == source and s.tag == tag:
        return s
    return None

  def select(self, patterns: Sequence[str]) -> List[Series]:
    """The curves whose tag matches any of `patterns` (see `tag_matches`), in series order."""
    return [s for s in self.series if tag_matches(s.tag, patterns)]


def tag_matches(tag: str, patterns: Sequence[str]) -> bool:
  """Whether `tag` is selected by `patterns`.

  A pattern is a tag name or an fnmatch glob ("*", "eval*", "metrics/*"). It matches the full
  tag, or its last path component, so "accuracy" also selects "metrics/accuracy".

  Args:
    tag: a summary tag.
    patterns: tag names or globs.

  Returns:
    True when any pattern matches.
  """
  base = tag.rsplit("/", 1)[-1]
  return any(fnmatch.fnmatchcase(tag, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def _join(directory: str, name: str) -> str:
  # os.path.join would be right locally but must not turn gs:// separators into backslashes.
  return posixpath.join(directory, name) if "://" in directory else os.path.join(directory, name)


def event_dirs(run_dir: str) -> Dict[str, str]:
  """Finds every directory under `run_dir` (itself included) holding event files.

  Args:
    run_dir: a run's model_dir, local or gs://.

  Returns:
    source name -> directory, "train" (run_dir itself) first, then sub-directories sorted.
  """
  found = {}
  for directory, _, files in tf.io.gfile.walk(run_dir):
    if any(EVENT_FILE_MARKER in f for f in files):
      rel = os.path.relpath(directory, run_dir) if "://" not in run_dir else (
          directory[len(run_dir):].strip("/") or ".")
      found[TRAIN if rel in (".", "") else rel.replace(os.sep, "/")] = directory
  return dict(sorted(found.items(), key=lambda kv: (kv[0] != TRAIN, kv[0])))


def _scalar_of(value, plugin_of: Dict[str, str]) -> Optional[float]:
  """The scalar a Summary.Value holds, or None if it holds something else."""
  kind = value.WhichOneof("value")
  if value.metadata.plugin_data.plugin_name:
    # TF2 writers attach the metadata to the first value of each tag only; remember it.
    plugin_of[value.tag] = value.metadata.plugin_data.plugin_name
  if kind == "simple_value":
    return float(value.simple_value)
  if kind != "tensor" or plugin_of.get(value.tag, "scalars") != "scalars":
    return None
  if value.tensor.dtype == tf.string.as_datatype_enum:
    return None
  array = tf.make_ndarray(value.tensor)
  if array.size != 1 or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
    return None
  return float(array.reshape(()))


def _event_files(directory: str) -> List[str]:
  names = [n for n in tf.io.gfile.listdir(directory)
           if EVENT_FILE_MARKER in n and not tf.io.gfile.isdir(_join(directory, n))]
  # Event file names start with the creation time in seconds, so name order is write order
  # (TensorBoard reads them in the same order).
  return [_join(directory, n) for n in sorted(names)]


def _events(path: str) -> Iterable:
  """Yields the events of one file; a torn last record (a run still writing) ends the file."""
  try:
    for event in tf.compat.v1.train.summary_iterator(path):
      yield event
  except tf.errors.DataLossError:
    return


def read_event_dir(directory: str, source: str = TRAIN) -> Dict[str, Series]:
  """Reads the scalar curves of every event file directly in `directory`.

  Args:
    directory: a directory holding events.out.tfevents.* files.
    source: the source name to label the curves with.

  Returns:
    tag -> Series, for every tag with at least one scalar point.
  """
  points = collections.defaultdict(list)  # tag -> [(step, value, wall_time)]
  plugin_of: Dict[str, str] = {}
  for path in _event_files(directory):
    for event in _events(path):
      if (event.HasField("session_log") and
          event.session_log.status == event.session_log.START):
        # Training (re)started at this step: what an earlier attempt logged from here on
        # belongs to a run that was rolled back to its checkpoint.
        for tag_points in points.values():
          tag_points[:] = [p for p in tag_points if p[0] < event.step]
        continue
      if not event.HasField("summary"):
        continue
      for value in event.summary.value:
        scalar = _scalar_of(value, plugin_of)
        if scalar is None:
          continue
        tag_points = points[value.tag]
        if tag_points and event.step <= tag_points[-1][0]:
          # A restart re-wrote steps already seen: the old attempt's tail is stale.
          tag_points[:] = [p for p in tag_points if p[0] < event.step]
        tag_points.append((int(event.step), scalar, float(event.wall_time)))
  return {
      tag: Series(source, tag, tuple(p[0] for p in pts), tuple(p[1] for p in pts),
                  tuple(p[2] for p in pts))
      for tag, pts in sorted(points.items()) if pts
  }


def read_run(run_dir: str, name: Optional[str] = None) -> RunScalars:
  """Reads every scalar curve of one run.

  Args:
    run_dir: a run's model_dir, local or gs://.
    name: label for the run; defaults to the directory's base name.

  Returns:
    The run's curves.

  Raises:
    ReportError: `run_dir` does not exist, holds no event files, or no scalar in them.
  """
  if not tf.io.gfile.isdir(run_dir):
    raise ReportError(f"run directory {run_dir} does not exist (expected a model_dir "
                      "holding TensorBoard event files)")
  dirs = event_dirs(run_dir)
  if not dirs:
    raise ReportError(f"run directory {run_dir} holds no TensorBoard event files "
                      f"(events.out.tfevents.*); is it a model_dir of a run that started?")
  series = []
  for source, directory in dirs.items():
    series.extend(read_event_dir(directory, source).values())
  if not series:
    raise ReportError(f"run directory {run_dir}: its event files hold no scalar summaries")
  label = name or os.path.basename(os.path.normpath(run_dir)) or run_dir
  return RunScalars(label, run_dir, tuple(series))


def run_names(run_dirs: Sequence[str]) -> List[str]:
  """Short unique labels for several runs: base names, lengthened with parents where equal.

  Args:
    run_dirs: run directories.

  Returns:
    One label per directory, e.g. ["lr0.1", "lr0.01"] or ["a/model", "b/model"].
  """
  parts = [os.path.normpath(d).strip("/").split("/") for d in run_dirs]
  depth = 1
  while True:
    labels = ["/".join(p[-depth:]) for p in parts]
    if len(set(labels)) == len(labels) or all(depth >= len(p) for p in parts):
      return labels
    depth += 1


def read_runs(run_dirs: Sequence[str]) -> List[RunScalars]:
  """Reads several runs, labelled with `run_names`.

  Raises:
    ReportError: see `read_run`; also for an empty list or a directory given twice.
  """
  if not run_dirs:
    raise ReportError("no run directories given")
  normalized = [os.path.normpath(d) for d in run_dirs]
  duplicates = sorted({d for d in normalized if normalized.count(d) > 1})
  if duplicates:
    raise ReportError(f"run directory given more than once: {', '.join(duplicates)}")
  return [read_run(d, n) for d, n in zip(run_dirs, run_names(run_dirs))]


def check_tags(runs: Sequence[RunScalars], patterns: Sequence[str]) -> None:
  """Makes sure every requested tag (or glob) selects at least one curve in some run.

  Raises:
    ReportError: a pattern matches nothing; the message lists the tags the runs have.
  """
  for pattern in patterns:
    if not any(tag_matches(s.tag, [pattern]) for r in runs for s in r.series):
      have = sorted({t for r in runs for t in r.tags()})
      raise ReportError(f"tag {pattern!r} is in none of the runs "
                        f"({', '.join(r.run_dir for r in runs)}); they have: {', '.join(have)}")


def rows(runs: Sequence[RunScalars], patterns: Sequence[str] = ("*",)) -> List[Tuple]:
  """The selected points as CSV rows (see CSV_COLUMNS), run by run, curve by curve."""
  out = []
  for run in runs:
    for s in run.select(patterns):
      out.extend((run.name, s.source, s.tag, step, value, wall)
                 for step, value, wall in zip(s.steps, s.values, s.wall_times))
  return out


def write_csv(runs: Sequence[RunScalars], path: str, patterns: Sequence[str] = ("*",)) -> int:
  """Writes the selected points as a long-format CSV (one row per point, columns CSV_COLUMNS).

  Args:
    runs: runs read by read_run(s).
    path: output file, local or gs://; parent directories are created.
    patterns: tags or globs to include.

  Returns:
    The number of data rows written.
  """
  table = rows(runs, patterns)
  text = io.StringIO()
  writer = csv.writer(text, lineterminator="\n")
  writer.writerow(CSV_COLUMNS)
  # repr keeps every digit of the float32 value, so the CSV compares exactly with TensorBoard.
  writer.writerows((r, src, tag, step, repr(value), f"{wall:.3f}")
                   for r, src, tag, step, value, wall in table)
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text.getvalue())
  return len(table)


def summary_lines(runs: Sequence[RunScalars], patterns: Sequence[str]) -> List[str]:
  """One line per selected curve: run, source, tag, points, last step and value, best value."""
  lines = []
  for run in runs:
    for s in run.select(patterns):
      step, value = s.last()
      lines.append(f"{run.name:<20} {s.source:<12} {s.tag:<20} {len(s.steps):>6} "
                   f"{step:>9} {value:>12.6g} {min(s.values):>12.6g} {max(s.values):>12.6g}")
  header = (f"{'run':<20} {'source':<12} {'tag':<20} {'points':>6} {'last step':>9} "
            f"{'last':>12} {'min':>12} {'max':>12}")
  return [header] + lines
