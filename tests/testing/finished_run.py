"""Test fixtures: a real (tiny) finished Estimator run, and event files with known values.

The run uses its own two-feature linear model_fn on data made here, so the reporting and
inspection tests depend only on what Estimator writes, not on the project's models.
"""

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

TRAIN_STEPS = 40
CHECKPOINT_STEPS = 20
SUMMARY_STEPS = 5


def _input_fn(training: bool, seed: int):
  rng = np.random.RandomState(seed)
  x = rng.randn(160, 4).astype(np.float32)
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, y))
    if training:
      ds = ds.shuffle(160, seed=seed).repeat()
    return ds.batch(16)

  return input_fn


def _model_fn(features, labels, mode):
  with tf.compat.v1.variable_scope("dense"):
    kernel = tf.compat.v1.get_variable("kernel", [4, 2])
    bias = tf.compat.v1.get_variable("bias", [2], initializer=tf.compat.v1.zeros_initializer())
  logits = tf.matmul(features["x"], kernel) + bias
  loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
  if mode == tf.estimator.ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.3).minimize(
        loss, global_step=tf.compat.v1.train.get_or_create_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
  accuracy = tf.compat.v1.metrics.accuracy(labels, tf.argmax(logits, axis=-1))
  return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops={"accuracy": accuracy})


def train_run(model_dir: str, train_steps: int = TRAIN_STEPS,
              final_eval_name: str = "final") -> Dict[str, float]:
  """Trains with train_and_evaluate (eval on every checkpoint), then a named final evaluation.

  Writes training summaries to model_dir, evaluations to model_dir/eval and
  model_dir/eval_<final_eval_name>, and checkpoints every CHECKPOINT_STEPS steps.

  Returns:
    The metrics of the final evaluation (accuracy, loss, global_step).
  """
  config = tf.estimator.RunConfig(
      model_dir=model_dir, tf_random_seed=1, save_summary_steps=SUMMARY_STEPS,
      save_checkpoints_steps=CHECKPOINT_STEPS, log_step_count_steps=10, keep_checkpoint_max=10)
  estimator = tf.estimator.Estimator(_model_fn, config=config)
  tf.estimator.train_and_evaluate(
      estimator, tf.estimator.TrainSpec(_input_fn(True, 0), max_steps=train_steps),
      tf.estimator.EvalSpec(_input_fn(False, 1), steps=None, throttle_secs=0,
                            start_delay_secs=0))
  metrics = estimator.evaluate(_input_fn(False, 1), name=final_eval_name)
  return {k: float(v) for k, v in metrics.items()}


def write_tf1_scalars(directory: str, points: Dict[str, Sequence[Tuple[int, float]]],
                      suffix: str = "", start_step: Optional[int] = None) -> None:
  """Writes TF1-style summaries (simple_value), as Estimator does, one event per point.

  Args:
    directory: where the event file goes.
    points: tag -> [(step, value)].
    suffix: event file name suffix (files are read in name order).
    start_step: first write a SessionLog START at this step, as training does when it
      (re)starts.
  """
  with tf.Graph().as_default():  # the TF1 writer refuses to run eagerly
    writer = tf.compat.v1.summary.FileWriter(directory, filename_suffix=suffix)
    if start_step is not None:
      writer.add_session_log(tf.compat.v1.SessionLog(status=tf.compat.v1.SessionLog.START),
                             start_step)
    for tag, pts in points.items():
      for step, value in pts:
        summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
            tag=tag, simple_value=value)])
        writer.add_summary(summary, step)
    writer.close()


def write_tf2_scalars(directory: str, points: Dict[str, Sequence[Tuple[int, float]]],
                      suffix: str = "") -> None:
  """Writes TF2-style summaries (tf.summary.scalar: values in tensor protos)."""
  writer = tf.summary.create_file_writer(directory, filename_suffix=suffix)
  with writer.as_default():
    for tag, pts in points.items():
      for step, value in pts:
        tf.summary.scalar(tag, value, step=step)
  writer.close()


def write_non_scalars(directory: str, step: int = 1) -> None:
  """Writes summaries that are not scalars: text, histogram, image, a string tensor."""
  writer = tf.summary.create_file_writer(directory, filename_suffix=".other")
  with writer.as_default():
    tf.summary.text("notes", "not a number", step=step)
    tf.summary.histogram("weights", tf.constant([1.0, 2.0, 3.0]), step=step)
    tf.summary.image("picture", tf.zeros([1, 4, 4, 1]), step=step)
  writer.close()


def float32(value: float) -> float:
  """What a float becomes after a round trip through a float32 summary."""
  return float(np.float32(value))


def event_files(directory: str):
  return [n for n in os.listdir(directory) if "tfevents" in n]
