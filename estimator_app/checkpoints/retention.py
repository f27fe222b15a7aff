"""Checkpoint retention: the best N checkpoints by an eval metric, kept apart from the latest K.

The latest K are the Estimator's own (`RunConfig.keep_checkpoint_max`): its Saver deletes the
oldest files in `model_dir` as new ones are written. The best N live in `model_dir/best/`,
which that Saver never looks at:

    model_dir/best/
      checkpoint                 # state file: latest_checkpoint(best/) is the best one
      best_index.json            # metric, direction, and every kept checkpoint's eval metrics
      ckpt-400/                  # one directory per kept checkpoint, itself restorable:
        checkpoint               #   latest_checkpoint(best/ckpt-400) works
        model.ckpt-400.index
        model.ckpt-400.data-00000-of-00001
        model.ckpt-400.meta

`BestCheckpointExporter` maintains it: `train_and_evaluate` calls every EvalSpec exporter after
each evaluation (on the evaluator task in distributed runs), with the evaluated checkpoint.
Each copy is written into a temporary directory and renamed into place, so a crash leaves
either the whole copy or none; the index and state file are replaced atomically after it.

Also here: `discard_checkpoints_from`, which the NaN guard uses to make sure the newest
checkpoint that remains is one whose weights still gave a finite loss; and
`evaluate_new_checkpoints`, a separate evaluator's loop, which survives the latest-K policy
deleting the checkpoint it is about to read.
"""

import json
import math
import os
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.python.training import checkpoint_state_pb2  # pylint: disable=g-direct-tensorflow-import

from estimator_app.checkpoints import info as checkpoint_info
from input_fns import errors
from input_fns import files as files_lib

INDEX_FILENAME = "best_index.json"
STATE_FILENAME = "checkpoint"
QUARANTINE_DIR = "nonfinite"
_TMP_PREFIX = ".tmp-"


def checkpoint_files(prefix: str) -> List[str]:
  """Returns the files that make up the checkpoint `prefix`: .index, .data-*, and .meta if any."""
  files = tf.io.gfile.glob(prefix + ".data-*")
  for suffix in (".index", ".meta"):
    if tf.io.gfile.exists(prefix + suffix):
      files.append(prefix + suffix)
  return sorted(files)


def write_checkpoint_state(directory: str, latest: str, all_paths: Sequence[str]) -> None:
  """Atomically writes a `checkpoint` state file with paths relative to `directory`.

  Relative paths keep the directory movable and work on gs:// (whose paths
  `tf.compat.v1.train.update_checkpoint_state` would mangle with os.path.relpath).

  Args:
    directory: where the state file goes.
    latest: what `tf.train.latest_checkpoint(directory)` will return (relative).
    all_paths: every kept checkpoint, oldest (or worst) first, `latest` last (relative).
  """
  state = checkpoint_state_pb2.CheckpointState(
      model_checkpoint_path=latest, all_model_checkpoint_paths=list(all_paths))
  files_lib.write_atomically(os.path.join(directory, STATE_FILENAME),
                             text_format.MessageToString(state))


def copy_checkpoint(prefix: str, dest_dir: str) -> str:
  """Copies checkpoint `prefix` into the new directory `dest_dir`, atomically.

  The files keep their names; `dest_dir` gets its own `checkpoint` state file, so
  `tf.train.latest_checkpoint(dest_dir)` and `tf.compat.v1.train.Saver.restore` work on it.

  Args:
    prefix: a checkpoint prefix (`.../model.ckpt-400`).
    dest_dir: a directory that must not exist yet.

  Returns:
    The prefix of the copy.

  Raises:
    tf.errors.NotFoundError: the checkpoint has no .index/.data files (e.g. deleted meanwhile).
  """
  files = checkpoint_files(prefix)
  if not any(f.endswith(".index") for f in files):
    raise tf.errors.NotFoundError(None, None, f"no checkpoint files at {prefix}")
  parent = os.path.dirname(dest_dir.rstrip("/"))
  tf.io.gfile.makedirs(parent)
  tmp = os.path.join(parent, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
  tf.io.gfile.makedirs(tmp)
  try:
    for f in files:
      tf.io.gfile.copy(f, os.path.join(tmp, os.path.basename(f)), overwrite=True)
    name = os.path.basename(prefix)
    write_checkpoint_state(tmp, name, [name])
    tf.io.gfile.rename(tmp, dest_dir)
  except Exception:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
    raise
  return os.path.join(dest_dir, os.path.basename(prefix))


def _finite(value: Any) -> bool:
  try:
    return math.isfinite(float(value))
  except (TypeError, ValueError):
    return False


def scalars(eval_result: Mapping[str, Any]) -> Dict[str, float]:
  """The JSON-able scalar metrics of an eval result (numpy scalars -> float; others dropped)."""
  out = {}
  for k, v in eval_result.items():
    try:
      out[k] = float(v)
    except (TypeError, ValueError):
      continue
  return out


def read_best_index(best_dir: str) -> Dict[str, Any]:
  """Returns `best_dir/best_index.json` (empty "checkpoints" list if there is none yet).

  Entries are best first: {"dir", "checkpoint" (prefix relative to best_dir),
  "global_step", "value", "metrics", "source", "time"}.
  """
  path = os.path.join(best_dir, INDEX_FILENAME)
  if not tf.io.gfile.exists(path):
    return {"checkpoints": []}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def kept_best(directory: str) -> List[checkpoint_info.BestEntry]:
  """The best checkpoints kept for a run, best first, from their index.

  Args:
    directory: a model_dir (its best/ is read) or a best dir itself.

  Returns:
    One entry per kept checkpoint; none when there is no index (keep_best=0, or not a run).
  """
  best_dir = directory
  if not tf.io.gfile.exists(os.path.join(directory, INDEX_FILENAME)):
    best_dir = os.path.join(directory, checkpoint_info.BEST_DIR)
  index = read_best_index(best_dir)
  return [checkpoint_info.BestEntry(
      prefix=os.path.join(best_dir, e["checkpoint"]), step=e.get("global_step"),
      metric=index.get("metric", ""), value=float(e["value"]),
      higher_is_better=bool(index.get("higher_is_better", True)))
          for e in index["checkpoints"]]


class BestCheckpointExporter(tf.estimator.Exporter):
  """Keeps the best `keep` checkpoints by `metric` in `model_dir/best/` (an EvalSpec exporter).

  Use: `tf.estimator.EvalSpec(..., exporters=[BestCheckpointExporter("accuracy", True, 3)])`.
  Checkpoints whose metric or eval loss is NaN/Inf are never kept.
  """

  def __init__(self, metric: str, higher_is_better: bool, keep: int = 3,
               name: str = "best_checkpoints", best_dir: Optional[str] = None):
    """Creates the exporter.

    Args:
      metric: an eval metric key, e.g. "accuracy" or "loss".
      higher_is_better: True for accuracy-like metrics, False for loss-like ones.
      keep: how many checkpoints to keep (N >= 1).
      name: the exporter's name (EvalSpec requires unique names).
      best_dir: where to keep them; default `<estimator.model_dir>/best`.

    Raises:
      errors.UserInputError: keep < 1 or an empty metric.
    """
    if keep < 1:
      raise errors.UserInputError(f"best-checkpoint retention needs keep >= 1, got {keep}")
    if not metric:
      raise errors.UserInputError("best-checkpoint retention needs a metric name")
    self._metric = metric
    self._higher = higher_is_better
    self._keep = keep
    self._name = name
    self._best_dir = best_dir

  @property
  def name(self) -> str:
    return self._name

  def best_dir(self, estimator: tf.estimator.Estimator) -> str:
    return self._best_dir or os.path.join(estimator.model_dir, checkpoint_info.BEST_DIR)

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    """Copies `checkpoint_path` into the best dir if it ranks among the best N.

    Args:
      estimator: the Estimator being evaluated (gives the default best dir).
      export_path: unused; the best dir is fixed so tools can find it.
      checkpoint_path: the evaluated checkpoint's prefix.
      eval_result: the evaluation's metrics.
      is_the_final_export: unused.

    Returns:
      The prefix of the kept copy, or None when it did not rank (or could not be copied).

    Raises:
      errors.MetricNotFoundError: `metric` is not in `eval_result`.
    """
    del export_path, is_the_final_export
    if self._metric not in eval_result:
      raise errors.MetricNotFoundError(
          f"best-checkpoint metric {self._metric!r} is not among the evaluation's metrics "
          f"({', '.join(sorted(eval_result))})")
    value = eval_result[self._metric]
    if not _finite(value) or not _finite(eval_result.get("loss", 0.0)):
      logging.warning("not keeping %s as a best checkpoint: %s=%s, loss=%s",
                      checkpoint_path, self._metric, value, eval_result.get("loss"))
      return None
    return self.offer(self.best_dir(estimator), checkpoint_path, scalars(eval_result))

  def offer(self, best_dir: str, checkpoint_path: str, metrics: Mapping[str, float]) -> Optional[str]:
    """Ranks `checkpoint_path` by `metrics[metric]`; copies it in and prunes to N if it ranks."""
    tf.io.gfile.makedirs(best_dir)
    index = read_best_index(best_dir)
    if index.get("metric", self._metric) != self._metric or index.get(
        "higher_is_better", self._higher) != self._higher:
      # A changed ranking rule makes the old ranks meaningless; start the list afresh.
      logging.warning("best-checkpoint rule changed from %s (higher_is_better=%s) to %s (%s); "
                      "re-ranking from scratch in %s", index.get("metric"),
                      index.get("higher_is_better"), self._metric, self._higher, best_dir)
      index = {"checkpoints": []}
    step = checkpoint_info.checkpoint_step(checkpoint_path)
    dirname = f"ckpt-{step}" if step is not None else os.path.basename(checkpoint_path)
    value = float(metrics[self._metric])
    entries = [e for e in index["checkpoints"] if e["dir"] != dirname]
    candidate = {
        "dir": dirname,
        "checkpoint": f"{dirname}/{os.path.basename(checkpoint_path)}",
        "global_step": step,
        "value": value,
        "metrics": dict(metrics),
        "source": checkpoint_path,
        "time": time.time(),
    }
    ranked = self._rank(entries + [candidate])[:self._keep]
    copied = None
    if candidate in ranked:
      target = os.path.join(best_dir, dirname)
      try:
        if tf.io.gfile.exists(os.path.join(target, STATE_FILENAME)):
          # The same step evaluated again (e.g. the final evaluation): same weights, new metrics.
          copied = os.path.join(target, os.path.basename(checkpoint_path))
        else:
          if tf.io.gfile.exists(target):  # an incomplete copy from an interrupted export
            tf.io.gfile.rmtree(target)
          copied = copy_checkpoint(checkpoint_path, target)
      except tf.errors.NotFoundError as e:
        # The chief's latest-K policy can delete a checkpoint before a slow evaluator copies it.
        logging.warning("could not keep %s as a best checkpoint: %s", checkpoint_path, e)
        ranked = [e for e in ranked if e is not candidate]
    index = {"metric": self._metric, "higher_is_better": self._higher, "keep": self._keep,
             "checkpoints": ranked}
    files_lib.write_atomically(os.path.join(best_dir, INDEX_FILENAME), json.dumps(index, indent=2))
    if ranked:
      write_checkpoint_state(best_dir, ranked[0]["checkpoint"],
                             [e["checkpoint"] for e in reversed(ranked)])
    self._prune(best_dir, {e["dir"] for e in ranked})
    if copied:
      logging.debug("kept %s as a best checkpoint (%s=%s, rank %d of %d) in %s", checkpoint_path,
                    self._metric, value, ranked.index(candidate) + 1, len(ranked), best_dir)
    return copied

  def _rank(self, entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    # Ties go to the earlier checkpoint: a later one must be strictly better to displace it.
    sign = -1.0 if self._higher else 1.0
    return sorted(entries, key=lambda e: (sign * e["value"], e["global_step"] or 0))

  @staticmethod
  def _prune(best_dir: str, keep_dirs: set) -> None:
    """Removes copies that fell out of the top N, and leftovers of interrupted copies."""
    for name in tf.io.gfile.listdir(best_dir):
      name = name.rstrip("/")
      path = os.path.join(best_dir, name)
      if name in keep_dirs or not tf.io.gfile.isdir(path):
        continue
      if name.startswith("ckpt-") or name.startswith(_TMP_PREFIX):
        tf.io.gfile.rmtree(path)


def discard_checkpoints_from(model_dir: str, first_bad_step: int) -> Tuple[Optional[str], List[str]]:
  """Retires every checkpoint of `model_dir` at global step >= `first_bad_step`.

  Their files move to `model_dir/nonfinite/` (kept for inspection, out of the restore path)
  and the `checkpoint` state file is rewritten so the newest remaining one is the latest.
  With none remaining the state file is removed, so a rerun starts from scratch.

  Args:
    model_dir: the Estimator's model_dir.
    first_bad_step: the first global step whose weights are not trusted.

  Returns:
    (the prefix of the latest remaining checkpoint or None, the retired prefixes).
  """
  state = tf.train.get_checkpoint_state(model_dir)
  if state is None:
    return None, []
  paths = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  good, bad = [], []
  for p in paths:
    step = checkpoint_info.checkpoint_step(p)
    (bad if step is not None and step >= first_bad_step else good).append(p)
  if not bad:
    return state.model_checkpoint_path, []
  quarantine = os.path.join(model_dir, QUARANTINE_DIR)
  tf.io.gfile.makedirs(quarantine)
  for p in bad:
    for f in checkpoint_files(p):
      tf.io.gfile.rename(f, os.path.join(quarantine, os.path.basename(f)), overwrite=True)
  good.sort(key=lambda p: checkpoint_info.checkpoint_step(p) or -1)
  if good:
    rel = [os.path.basename(p) if os.path.dirname(p) == model_dir.rstrip("/") else p
           for p in good]
    write_checkpoint_state(model_dir, rel[-1], rel)
    return good[-1], bad
  tf.io.gfile.remove(os.path.join(model_dir, STATE_FILENAME))
  return None, bad


def _exists(prefix: str) -> bool:
  # The Saver deletes a checkpoint's .index before its .data files: no .index, no checkpoint.
  return tf.io.gfile.exists(prefix + ".index")


def evaluate_new_checkpoints(estimator: tf.estimator.Estimator, eval_spec: tf.estimator.EvalSpec,
                             max_steps: int, sleep: Callable[[float], None] = time.sleep
                             ) -> Dict[str, Any]:
  """A separate evaluator task's whole life: evaluates each new checkpoint until one at max_steps.

  What `tf.estimator.train_and_evaluate` runs on an evaluator task, with the same EvalSpec
  fields (input_fn, steps, name, hooks; exporters with export_path `model_dir/export/<name>` and
  `is_the_final_export` for the evaluation at max_steps; start_delay_secs; throttle_secs as the
  poll interval), except for one race. The chief's Saver deletes its oldest checkpoint whenever
  it writes one past `keep_checkpoint_max`; an evaluator that picked a checkpoint and then took
  longer to build its graph than the chief took to write that many more (a loaded machine,
  frequent checkpoints) fails to restore it ("ValueError: The passed save_path is not a valid
  checkpoint", or NotFoundError when the files go mid-read), and train_and_evaluate lets that
  end the process with a non-zero exit (upstream: tensorflow/tensorflow#39033). Here that
  checkpoint is skipped with a warning and the loop goes straight on to the newest one; newer
  checkpoints keep coming until the chief's final one, which retention never deletes. A failure
  while the checkpoint is still there is a real one and is raised.

  Args:
    estimator: the evaluator's Estimator (its model_dir is the chief's).
    eval_spec: what to evaluate and how often to look (see above).
    max_steps: the training's last global step (TrainSpec.max_steps).
    sleep: how to wait between polls (tests pass a fake).

  Returns:
    The metrics of the last evaluation, the one at or past max_steps.

  Raises:
    ValueError: max_steps < 1.
    Whatever the evaluation or an exporter raises while its checkpoint is still there.
  """
  if max_steps < 1:
    raise ValueError(f"max_steps must be >= 1 to know when training ends, got {max_steps}")
  if eval_spec.start_delay_secs:
    sleep(eval_spec.start_delay_secs)
  export_base = os.path.join(estimator.model_dir, "export")
  previous = None
  waiting_logged = False
  while True:
    start = time.monotonic()
    latest = tf.train.latest_checkpoint(estimator.model_dir)
    if latest and latest != previous:
      previous = latest
      try:
        result = estimator.evaluate(eval_spec.input_fn, steps=eval_spec.steps,
                                    name=eval_spec.name, checkpoint_path=latest,
                                    hooks=eval_spec.hooks)
        final = int(result[tf.compat.v1.GraphKeys.GLOBAL_STEP]) >= max_steps
        for exporter in eval_spec.exporters:
          exporter.export(estimator, os.path.join(export_base, exporter.name), latest, result,
                          is_the_final_export=final)
      except (ValueError, tf.errors.OpError) as e:
        if _exists(latest):
          raise
        logging.warning("%s was deleted by the chief's checkpoint retention (keep_checkpoint_max) "
                        "before it could be evaluated; going on with the newest checkpoint (%s: "
                        "%s)", latest, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        continue  # a newer checkpoint exists (one replaced this), no need to wait
      waiting_logged = False
      if final:
        logging.info("evaluated %s at global step %d >= max_steps %d: evaluation done", latest,
                     int(result[tf.compat.v1.GraphKeys.GLOBAL_STEP]), max_steps)
        return result
    elif not waiting_logged:
      logging.info("waiting for a new checkpoint in %s (polling every %s s)", estimator.model_dir,
                   eval_spec.throttle_secs)
      waiting_logged = True
    sleep(max(0.0, eval_spec.throttle_secs - (time.monotonic() - start)))
