"""TensorBoard summaries of training, and the variable report logged when a graph is built.

Summaries are summary ops in the SUMMARIES collection; the Estimator merges them and writes
them every `save_summary_steps`. The ops are made with their exact tags: tf.compat.v1.summary.*
derive the tag from a unique name scope, so a tag whose name is already used in the graph
silently becomes "<tag>_1". (For the same reason model_fns must not create an op or scope
named "loss", or the Estimator's own loss summary is renamed.) Tags (training event files):

  loss                  written by the Estimator itself (the training objective)
  losses/cross_entropy  the (label-smoothed) cross-entropy part of the loss
  losses/regularization the L1/L2 part of the loss
  learning_rate         the scheduled learning rate
  accuracy              accuracy of the training batch
  gradient_global_norm  global norm of the gradients before clipping
  loss_scale            the dynamic loss scale (float16 mixed precision only)
  input_images          a few input images (image datasets, when asked)
  weights/<variable>    a histogram per trainable variable (when asked)
"""

from typing import List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from input_fns import feature_spec as fs

INPUT_IMAGES = "input_images"


def _collect(summary: tf.Tensor) -> None:
  # Under a distribution strategy the model_fn runs once per replica; exact tags would repeat
  # (MergeSummary fails on duplicate tags), so only the first replica's summaries are kept.
  ctx = tf.distribute.get_replica_context()
  replica = None if ctx is None else tf.get_static_value(ctx.replica_id_in_sync_group)
  if replica:
    return
  tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.SUMMARIES, summary)


def scalars(values: Mapping[str, tf.Tensor]) -> None:
  """One scalar summary per (tag, scalar tensor)."""
  for tag, value in values.items():
    _collect(tf.raw_ops.ScalarSummary(tags=tag, values=tf.cast(value, tf.float32)))


def input_images(features: Mapping[str, tf.Tensor], spec: fs.FeatureSpec, max_images: int) -> None:
  """An image summary of the first `max_images` model inputs, if the dataset holds images.

  Inputs are shown as the model sees them (after preprocessing), each rescaled to its own
  min..max so that standardized or [-1, 1] inputs are visible too. Channel counts other than
  1, 3 or 4 show the first channel.
  """
  if spec.kind != fs.IMAGE or max_images <= 0:
    return
  x = tf.cast(features[spec.input_key], tf.float32)
  if x.shape.rank == 3:  # [B, H, W] grey images
    x = x[..., tf.newaxis]
  if x.shape.rank != 4:
    return
  if x.shape[-1] not in (1, 3, 4):
    x = x[..., :1]
  x = x[:max_images]
  lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
  hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
  x = tf.math.divide_no_nan(x - lo, hi - lo)
  _collect(tf.raw_ops.ImageSummary(tag=INPUT_IMAGES, tensor=x, max_images=max_images))


def weight_histograms(variables: Sequence[tf.Variable]) -> None:
  """A histogram summary `weights/<variable name>` per variable."""
  for v in variables:
    _collect(tf.raw_ops.HistogramSummary(tag=f"weights/{v.op.name}", values=tf.identity(v)))


def variable_table(variables: Sequence[tf.Variable]) -> Tuple[List[str], int, int]:
  """The variable report: one line per variable (name, shape, dtype, parameters, trainable).

  Args:
    variables: the model's variables (fully defined shapes).

  Returns:
    (lines, trainable parameter count, non-trainable parameter count).
  """
  trainable_names = {v.op.name for v in tf.compat.v1.trainable_variables()}
  rows = []
  trainable = frozen = 0
  for v in sorted(variables, key=lambda v: v.op.name):
    shape = v.shape.as_list()
    count = int(np.prod(shape)) if v.shape.is_fully_defined() else 0
    is_trainable = v.op.name in trainable_names
    if is_trainable:
      trainable += count
    else:
      frozen += count
    rows.append((v.op.name, str(shape), v.dtype.base_dtype.name, f"{count:,}",
                 "" if is_trainable else "non-trainable"))
  width = [max([len(r[i]) for r in rows] + [1]) for i in range(4)]
  lines = [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]:>{width[3]}}  {r[4]}"
           .rstrip() for r in rows]
  return lines, trainable, frozen


_TABLE_ROWS = 16  # a longer variable table is logged at debug level (-v 1) only


def log_variables(model_name: str, variables: Sequence[tf.Variable]) -> Tuple[int, int]:
  """Logs the variable report (absl INFO; the table itself at DEBUG when it is longer than
  _TABLE_ROWS rows) and returns (trainable, non-trainable) counts."""
  lines, trainable, frozen = variable_table(variables)
  head = (f"model {model_name}: {len(lines)} variables, {trainable:,} trainable parameters, "
          f"{frozen:,} non-trainable")
  table = "\n  " + "\n  ".join(lines)
  if len(lines) <= _TABLE_ROWS:
    logging.info("%s%s", head, table)
  else:
    logging.info("%s (per-variable table: -v 1)", head)
    logging.debug("%s%s", head, table)
  return trainable, frozen
