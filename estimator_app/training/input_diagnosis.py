"""Is a training run input-bound? Measures the input_fn alone vs what the model consumes.

Used by `./bazelw run //scripts:train -- --diagnose_input ...` before training:

  result = input_diagnosis.diagnose_input(train_input_fn, model_fn, seconds=5.0,
                                           log_dir=os.path.join(model_dir, "diagnose_input"))

1. Input alone: the training input_fn's dataset is drained for `seconds` inside the tf.data
   runtime (a tf.function loop over its iterator, so Python is not measured), under the
   TensorFlow profiler when log_dir is given: TensorBoard's Profile tab then shows the
   tf.data input-pipeline analysis (per-transformation time, the bottleneck) of that trace.
2. Consumption: the model_fn's TRAIN step in a bare session for `seconds`, fed one real batch
   repeated from memory (so input costs ~nothing): the most the model can ask for.
3. The same steps fed by the real input_fn: on a small machine the pipeline's CPU time comes
   out of the step's even when its rate is ample, so the fraction lost here is measured, not
   inferred (benchmarks on 2 cores: 25% for a small DNN at 3.4x rate headroom).
4. The verdict, logged plainly: input-bound when the input supplies less than HEADROOM times
   what the model consumes, or when training from the input_fn loses more than MAX_LOSS of
   the in-memory speed; then the log names the knobs to turn (--cache, lighter
   --preprocessing, a smaller --shuffle_buffer, local data, more shards). Scalars go to
   log_dir too.
"""

import dataclasses
import time
from typing import Callable, Optional

import tensorflow as tf

from absl import logging

# The input must deliver this many times what the model consumes to leave the model idle
# never: below it, jitter in reading and parsing shows up as training stalls.
HEADROOM = 1.25
# Training from the input_fn may lose at most this fraction of the in-memory step rate.
MAX_LOSS = 0.10


@tf.function
def drain(iterator, batches):
  """Pulls `batches` (features, labels) batches in one graph loop; returns examples seen."""
  n = tf.constant(0, tf.int64)
  for _ in tf.range(batches):
    _, labels = next(iterator)
    n += tf.size(labels, out_type=tf.int64)  # labels [B], or [K, B] stacked for steps_per_run
  return n


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  """Attributes:
    input_examples_per_sec: the input_fn alone.
    model_examples_per_sec: training steps fed from memory.
    headroom: input / model.
    trained_examples_per_sec: training steps fed by the input_fn itself.
    loss: 1 - trained / model: the fraction of training speed the input path costs.
    input_bound: headroom < HEADROOM or loss > MAX_LOSS.
    advice: the plain-language verdict that was logged.
  """
  input_examples_per_sec: float
  model_examples_per_sec: float
  headroom: float
  trained_examples_per_sec: float
  loss: float
  input_bound: bool
  advice: str


def input_rate(input_fn: Callable[[], tf.data.Dataset], seconds: float,
               log_dir: Optional[str] = None) -> float:
  """Examples/s of the input_fn's dataset drained for about `seconds` (after a warm-up).

  With log_dir, the timed part runs under the TensorFlow profiler writing to log_dir.
  """
  iterator = iter(input_fn())
  drain(iterator, tf.constant(5))  # trace the loop, open files, fill the shuffle buffer
  chunk, examples, start = 10, 0, time.perf_counter()
  if log_dir:
    tf.profiler.experimental.start(log_dir)
  try:
    while time.perf_counter() - start < seconds:
      examples += int(drain(iterator, tf.constant(chunk)))
      chunk = min(chunk * 2, 1000)
  finally:
    if log_dir:
      tf.profiler.experimental.stop()
  return examples / (time.perf_counter() - start)


def model_rate(input_fn: Callable[[], tf.data.Dataset], model_fn, seconds: float,
               from_memory: bool = True) -> float:
  """Examples/s of the model_fn's training step on one real batch repeated from memory
  (from_memory) or on the input_fn's batches."""
  graph = tf.Graph()
  with graph.as_default():
    ds = input_fn().take(1).cache().repeat() if from_memory else input_fn()
    features, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
    spec = model_fn(features, labels, tf.estimator.ModeKeys.TRAIN)
    batch = tf.size(labels)  # examples: labels are [B], or [K, B] with steps_per_run K
    init = [tf.compat.v1.global_variables_initializer(),
            tf.compat.v1.local_variables_initializer(), tf.compat.v1.tables_initializer()]
  with tf.compat.v1.Session(graph=graph) as sess:
    sess.run(init)
    for _ in range(3):  # warm-up
      sess.run(spec.train_op)
    examples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      examples += sess.run([spec.train_op, batch])[1]
    return examples / (time.perf_counter() - start)


def advise(input_eps: float, model_eps: float, trained_eps: Optional[float] = None) -> str:
  """The verdict in plain words, with the knobs to turn when input-bound."""
  headroom = input_eps / model_eps
  head = (f"input pipeline alone: {input_eps:,.0f} examples/s; the model consumes "
          f"{model_eps:,.0f} examples/s from memory; headroom {headroom:.2f}x (want >= "
          f"{HEADROOM:g}x).")
  loss = 0.0
  if trained_eps is not None:
    loss = 1.0 - trained_eps / model_eps
    head += (f" Training from the input_fn: {trained_eps:,.0f} examples/s, losing {loss:.0%} of "
             f"the in-memory speed (want <= {MAX_LOSS:.0%}).")
  if headroom >= HEADROOM and loss <= MAX_LOSS:
    return head + " NOT input-bound: the model's compute sets the speed; input knobs won't help."
  return head + (
      " INPUT-BOUND: training waits for data. Knobs, in order of usual effect: "
      "--cache (keep parsed examples in memory after the first epoch, if the split fits); "
      "a lighter --preprocessing chain (augmentations run per example on the CPU); "
      "a smaller --shuffle_buffer; copy gs:// data to local disk; "
      "more shards (make_tfrecords --num_shards) so more files are read in parallel. "
      "The profile in the TensorBoard 'Profile' tab (input pipeline analyzer) names the "
      "slowest tf.data transformation.")


def diagnose_input(input_fn: Callable[[], tf.data.Dataset], model_fn, seconds: float = 5.0,
                   log_dir: Optional[str] = None) -> Diagnosis:
  """Measures input_fn alone and model_fn's consumption, logs the verdict and returns it.

  Args:
    input_fn: the training input_fn (no arguments; returns (features, labels) batches).
    model_fn: the Estimator model_fn(features, labels, mode) of the run.
    seconds: how long each of the two measurements runs.
    log_dir: if set, the input measurement's profile and the three scalars are written here
      for TensorBoard (`tensorboard --logdir <log_dir>`).

  Returns:
    The Diagnosis (also logged at INFO).
  """
  input_eps = input_rate(input_fn, seconds, log_dir)
  model_eps = model_rate(input_fn, model_fn, seconds)
  trained_eps = model_rate(input_fn, model_fn, seconds, from_memory=False)
  headroom = input_eps / model_eps
  loss = 1.0 - trained_eps / model_eps
  advice = advise(input_eps, model_eps, trained_eps)
  logging.info("diagnose_input: %s", advice)
  if log_dir:
    with tf.summary.create_file_writer(log_dir).as_default():
      tf.summary.scalar("diagnose_input/input_examples_per_sec", input_eps, step=0)
      tf.summary.scalar("diagnose_input/model_examples_per_sec", model_eps, step=0)
      tf.summary.scalar("diagnose_input/headroom", headroom, step=0)
      tf.summary.scalar("diagnose_input/trained_examples_per_sec", trained_eps, step=0)
      tf.summary.scalar("diagnose_input/loss", loss, step=0)
  return Diagnosis(input_eps, model_eps, headroom, trained_eps, loss,
                   headroom < HEADROOM or loss > MAX_LOSS, advice)
