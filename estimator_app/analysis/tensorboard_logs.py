"""What a run writes for TensorBoard beyond the Estimator's own summaries.

  ConfusionMatrixImage  an EvalSpec exporter: after every full evaluation, the eval result's
                        confusion matrix drawn as a PNG (plots.confusion_matrix_png) and
                        written as the image summary IMAGE_TAG of the eval run, at its step
  flatten_hparams       an ExperimentConfig.to_json_dict() as flat name -> str/int/float/bool
  write_hparams         a run's hyperparameters for the HParams tab, with the eval metrics
                        to show beside them

Both write through `tf.compat.v1.summary.FileWriterCache`, the writer the Estimator itself uses
for the same directory, so no directory gets a second event file: TensorBoard follows only the
newest event file of a run (unless started with --reload_multifile), and a second file named
after the live one would freeze that run's curves. In a cluster `distribution.own_event_files`
puts its per-task writers in the same cache, so they are shared too.

The image has its own tag, not "confusion_matrix": the Estimator already writes the matrix
itself under that tag, as a bare tensor summary (hence its log line "Summary for np.ndarray is
not visible in Tensorboard"), and TensorBoard takes a tag's kind from its first value, so an
image under that tag never reaches the Images tab.

HParams: the plugin treats every run holding a session-start record as one session and reads a
metric (group G, tag T) of session S from run S/G, tag T: the latest scalar there. So the record
goes in model_dir itself and the metrics name group "eval" (the full evaluation's run,
model_dir/eval); whether TensorBoard's --logdir is the model_dir (session ".") or a parent of
several (session "<name>") does not matter. The experiment record (which hparams and metrics are
the table's columns) is written into every run, and TensorBoard uses the first one it finds:
runs over one logdir should share their hparam names, which the runs of one model do (see
`flatten_hparams`); a run of another model still shows its values in its session group, but its
model-specific columns are those of the first run. TensorBoard also keeps the first session
record of a run, so a resumed run shows the hparams it first started with.
"""

import concurrent.futures
import os
import struct
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hparams_summary

from estimator_app.analysis import plots
from model_fns import metrics as metrics_lib

EXPORTER_NAME = "confusion_matrix_image"
IMAGE_TAG = "confusion_matrix/image"
EVAL_GROUP = "eval"  # Estimator.eval_dir(): model_dir/eval, the EvalSpec's full evaluation

HParamValue = Union[str, int, float, bool]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> Summary.Image colorspace (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA); a
# palette image (3) decodes to RGB.
_PNG_COLORSPACES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _png_header(png: bytes) -> Tuple[int, int, int]:
  """(height, width, colorspace) from a PNG's IHDR chunk, which always comes first."""
  if png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR" or png[25] not in _PNG_COLORSPACES:
    raise ValueError("not a PNG image")
  width, height = struct.unpack(">II", png[16:24])
  return height, width, _PNG_COLORSPACES[png[25]]


def confusion_matrix_png(matrix, label_names: Sequence[str], step: int) -> bytes:
  """The PNG that ConfusionMatrixImage writes for `matrix` at `step`.

  Args:
    matrix: int [C, C] counts, rows = true class, columns = predicted class.
    label_names: the C class names, in label-id order.
    step: the global step of the evaluation, shown in the title.

  Returns:
    The encoded PNG.

  Raises:
    ValueError: as plots.confusion_matrix_png (not square, not C x C, negative counts).
  """
  # plots draws to a path (local or gs://); a scratch file keeps one drawing of the matrix.
  with tempfile.TemporaryDirectory() as scratch:
    path = plots.confusion_matrix_png(matrix, label_names,
                                      os.path.join(scratch, "confusion_matrix.png"),
                                      title=f"Confusion matrix at step {step}")
    with open(path, "rb") as f:
      return f.read()


def image_summary(tag: str, png: bytes) -> tf.compat.v1.Summary:
  """A TF1 image summary (what TensorBoard's Images tab reads) holding one encoded PNG.

  Raises:
    ValueError: `png` is not a PNG.
  """
  height, width, colorspace = _png_header(png)
  return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
      tag=tag, image=tf.compat.v1.Summary.Image(
          height=height, width=width, colorspace=colorspace, encoded_image_string=png))])


def _write(logdir: str, summaries: Sequence[tf.compat.v1.Summary], step: int) -> None:
  # A v1 FileWriter must be made in graph mode; the cached one writes whatever it is given.
  # Made here first (write_hparams before training), it also writes this empty graph, which
  # the Estimator's graph, written into the same file later, replaces in TensorBoard.
  with tf.Graph().as_default():
    writer = tf.compat.v1.summary.FileWriterCache.get(logdir)
  for summary in summaries:
    writer.add_summary(summary, step)
  writer.flush()


class ConfusionMatrixImage(tf.estimator.Exporter):
  """An EvalSpec exporter that puts each evaluation's confusion matrix in TensorBoard.

  train_and_evaluate calls its exporters after every full evaluation with that evaluation's
  results; this draws eval_result["confusion_matrix"] and writes it as the image IMAGE_TAG of
  the eval run (Estimator.eval_dir()) at eval_result["global_step"]. The drawing (~0.3 s of
  matplotlib) runs on a worker thread while training goes on; `wait()` blocks until every
  image asked for is written (the runner calls it before it reports the run). It exports
  nothing, so export_path is never created.
  """

  def __init__(self, label_names: Sequence[str], eval_name: Optional[str] = None):
    """Args:
      label_names: the C class names, in label-id order (the dataset spec's label_names).
      eval_name: the EvalSpec's name; None (the runner's) writes into model_dir/eval.

    Raises:
      ValueError: no label names.
    """
    if not label_names:
      raise ValueError("ConfusionMatrixImage needs the label names of the classes")
    self._label_names = tuple(str(n) for n in label_names)
    self._eval_name = eval_name
    self._drawer = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="confusion-matrix-image")
    self._pending: List[concurrent.futures.Future] = []

  @property
  def name(self) -> str:
    return EXPORTER_NAME

  def export(self, estimator: tf.estimator.Estimator, export_path: str, checkpoint_path: str,
             eval_result: Mapping[str, Any], is_the_final_export: bool) -> None:
    """Starts drawing eval_result's confusion matrix into the eval run; returns None.

    Raises:
      ValueError: eval_result has no confusion matrix or global step, or the matrix is not
        C x C for the C label names.
    """
    del export_path, checkpoint_path, is_the_final_export
    missing = [k for k in (metrics_lib.CONFUSION_MATRIX, tf.compat.v1.GraphKeys.GLOBAL_STEP)
               if k not in eval_result]
    if missing:
      raise ValueError(f"{EXPORTER_NAME}: the eval result has no {' or '.join(missing)} "
                       f"(it has {', '.join(sorted(eval_result))})")
    step = int(eval_result[tf.compat.v1.GraphKeys.GLOBAL_STEP])
    matrix = np.asarray(eval_result[metrics_lib.CONFUSION_MATRIX])
    classes = len(self._label_names)
    if matrix.shape != (classes, classes):
      raise ValueError(f"{EXPORTER_NAME}: confusion matrix is {matrix.shape}, expected "
                       f"{classes}x{classes} for the label names")
    eval_dir = estimator.eval_dir(self._eval_name)
    self._pending.append(self._drawer.submit(self._draw, matrix, step, eval_dir))
    return None

  def _draw(self, matrix: np.ndarray, step: int, eval_dir: str) -> None:
    png = confusion_matrix_png(matrix, self._label_names, step)
    _write(eval_dir, [image_summary(IMAGE_TAG, png)], step)

  def wait(self) -> None:
    """Blocks until every image asked for so far is written; raises a drawing's error."""
    pending, self._pending = self._pending, []
    for future in pending:
      future.result()


def _hparam_text(value: Any) -> str:
  """One element of a list value, as the --hparams text syntax writes it."""
  if isinstance(value, bool):
    return "true" if value else "false"
  return "none" if value is None else str(value)


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> Dict[str, HParamValue]:
  """A nested config dict as the flat str/int/float/bool values the HParams plugin takes.

  Nested keys are joined with "."; lists and tuples become their --hparams text ("[128,64]",
  "[]"), None becomes "none". E.g. {"model": "dnn", "hparams": {"hidden_units": [128, 64]},
  "run": {"train_steps": 2000}} -> {"model": "dnn", "hparams.hidden_units": "[128,64]",
  "run.train_steps": 2000}.

  Args:
    config: e.g. ExperimentConfig.to_json_dict(): str keys; values scalars, lists or dicts.
    prefix: prepended to every key (for the recursion).

  Returns:
    Flat name -> value.

  Raises:
    TypeError: a value of another type (or a list holding lists or dicts).
  """
  flat: Dict[str, HParamValue] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten_hparams(value, f"{name}."))
    elif isinstance(value, (bool, int, float, str)):
      flat[name] = value
    elif isinstance(value, np.generic):  # numpy scalars from computed configs
      flat[name] = value.item()
    elif value is None:
      flat[name] = "none"
    elif isinstance(value, (list, tuple)) and not any(
        isinstance(v, (list, tuple, Mapping)) for v in value):
      flat[name] = "[" + ",".join(_hparam_text(v) for v in value) + "]"
    else:
      raise TypeError(f"hparam {name}={value!r}: expected a str, int, float, bool, None, a "
                      f"flat list or a dict, got {type(value).__name__}")
  return flat


def _data_type(value: HParamValue) -> int:
  if isinstance(value, bool):
    return api_pb2.DATA_TYPE_BOOL
  if isinstance(value, (int, float)):
    return api_pb2.DATA_TYPE_FLOAT64
  return api_pb2.DATA_TYPE_STRING


def write_hparams(logdir: str, hparams: Mapping[str, HParamValue], metric_tags: Sequence[str],
                  group: str = EVAL_GROUP) -> None:
  """Writes a run's hyperparameters for TensorBoard's HParams tab, at step 0.

  Two records of the HParams plugin go into `logdir`'s event file (the Estimator's own, see the
  module docstring): the experiment (every hparam name with its type, and the metrics: each of
  `metric_tags` in run `group`) and the session start (this run's values). Call it once when
  the run starts, on the chief only (another task would open a second event file in logdir).
  Works with eager execution on or off.

  Args:
    logdir: the run's model_dir.
    hparams: name -> str, int, float or bool (e.g. flatten_hparams(cfg.to_json_dict())).
    metric_tags: scalar tags of the `group` run shown beside the hparams, e.g. ("accuracy",
      "average_loss"): the latest value of each, so after training the final evaluation's.
    group: the metrics' run, relative to logdir: "eval", the EvalSpec's full evaluation.

  Raises:
    ValueError: no hparams.
    TypeError: an hparam value of another type than str, int, float or bool.
  """
  if not hparams:
    raise ValueError(f"write_hparams({logdir!r}): no hparams given")
  bad = {k: v for k, v in hparams.items() if not isinstance(v, (bool, int, float, str))}
  if bad:
    raise TypeError(f"hparam values must be str, int, float or bool (see flatten_hparams); "
                    f"got {bad}")
  hparam_infos = []
  for name in sorted(hparams):
    # No domain: the one run writing this cannot know the others' values, and a discrete
    # domain would make the UI's filter hide every run whose value is not in it.
    info = api_pb2.HParamInfo(name=name, type=_data_type(hparams[name]))
    if info.type == api_pb2.DATA_TYPE_BOOL:
      info.domain_discrete.extend([False, True])
    hparam_infos.append(info)
  metric_infos = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag),
                                     display_name=f"{group}/{tag}") for tag in metric_tags]
  _write(logdir, [hparams_summary.experiment_pb(hparam_infos, metric_infos),
                  # group_name "": each run is its own session group (no averaging of repeats).
                  hparams_summary.session_start_pb(dict(hparams))], step=0)
