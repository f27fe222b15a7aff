"""A seconds-fast Estimator for the training-app tests: 4 features, 3 classes, a tiny MLP.

Variables are made with tf.compat.v1.get_variable under fixed names (hidden/kernel [4, 8],
hidden/bias [8], logits/kernel [8, 3], logits/bias [3]) so tests can name them. The learning
rate is a piecewise schedule (params "learning_rate", optional "blowup_step" from which it is
1e30, to make the loss diverge at a known step) and is summarised as "learning_rate".
"""

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

NUM_FEATURES = 4
NUM_CLASSES = 3
HIDDEN = 8
VARIABLES = {"hidden/kernel": (NUM_FEATURES, HIDDEN), "hidden/bias": (HIDDEN,),
             "logits/kernel": (HIDDEN, NUM_CLASSES), "logits/bias": (NUM_CLASSES,)}


def data(n: int = 64, seed: int = 0):
  """Returns (x float32 [n, 4], y int64 [n]); y is the argmax of the first three features."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)
  return x, np.argmax(x[:, :NUM_CLASSES], axis=1).astype(np.int64)


def input_fn(n: int = 64, batch_size: int = 16, training: bool = True,
             seed: int = 0) -> Callable[[], tf.data.Dataset]:
  x, y = data(n, seed)

  def fn():
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, y))
    if training:
      ds = ds.shuffle(n, seed=seed).repeat()
    return ds.batch(batch_size)

  return fn


def model_fn(features, labels, mode, params):
  """An MLP whose learning rate comes from params (see the module docstring)."""
  x = features["x"]
  with tf.compat.v1.variable_scope("hidden"):
    w = tf.compat.v1.get_variable("kernel", VARIABLES["hidden/kernel"])
    b = tf.compat.v1.get_variable("bias", VARIABLES["hidden/bias"],
                                  initializer=tf.compat.v1.zeros_initializer())
    h = tf.nn.relu(tf.matmul(x, w) + b)
  with tf.compat.v1.variable_scope("logits"):
    w = tf.compat.v1.get_variable("kernel", VARIABLES["logits/kernel"])
    b = tf.compat.v1.get_variable("bias", VARIABLES["logits/bias"],
                                  initializer=tf.compat.v1.zeros_initializer())
    logits = tf.matmul(h, w) + b
  class_ids = tf.argmax(logits, axis=-1)
  if mode == tf.estimator.ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={"class_ids": class_ids,
                                                         "logits": logits})
  loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
  if mode == tf.estimator.ModeKeys.EVAL:
    return tf.estimator.EstimatorSpec(
        mode, loss=loss,
        eval_metric_ops={"accuracy": tf.compat.v1.metrics.accuracy(labels, class_ids)})
  global_step = tf.compat.v1.train.get_or_create_global_step()
  base = float(params.get("learning_rate", 0.1))
  blowup: Optional[int] = params.get("blowup_step")
  if blowup is None:
    lr = tf.constant(base)
  else:
    lr = tf.compat.v1.train.piecewise_constant(global_step, [blowup], [base, 1e30])
  if params.get("summarize_lr", True):
    tf.compat.v1.summary.scalar("learning_rate", lr)
  train_op = tf.compat.v1.train.GradientDescentOptimizer(lr).minimize(
      loss, global_step=global_step)
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def estimator(model_dir: str, save_checkpoints_steps: int = 5, keep_checkpoint_max: int = 5,
              warm_start_from=None, **params) -> tf.estimator.Estimator:
  config = tf.estimator.RunConfig(
      model_dir=model_dir, tf_random_seed=1, save_checkpoints_steps=save_checkpoints_steps,
      keep_checkpoint_max=keep_checkpoint_max, save_summary_steps=5, log_step_count_steps=None)
  return tf.estimator.Estimator(model_fn, config=config, params=params,
                                warm_start_from=warm_start_from)
