"""Input pipeline throughput: the TFRecord input_fn vs in-memory tensors vs what models consume.

  ./bazelw run //scripts:benchmark -- --suite=input
  ./bazelw run //scripts:benchmark -- --suite=input --repetitions=3 --scale=0.1   # smoke run

Data: MNIST-sized synthetic examples (28x28x1 uint8 pixels, 10 classes; 60,000 x scale),
written once under work_dir with the real writer (8 shards). Batch 100, preprocessing "scale",
training mode (endless, shuffled with a 10,000-example window), all measured in one process
and alternated (harness.alternate):

  input/tfrecord_input_fn          input_fn_lib.make_input_fn over the shards (what training uses)
  input/tfrecord_input_fn_cached   the same with cache=True, after the first epoch
  input/in_memory_tensors          the same arrays through from_tensor_slices -> shuffle ->
                                   repeat -> batch -> the same preprocessing -> prefetch
  <model>/train_steps              what a model consumes: examples/s of its training steps
                                   (registry + build_model_fn, a bare tf.compat.v1 Session
                                   running train_op on pre-batched in-memory input; no hooks,
                                   so this is the most a model can ask for)
  <model>/estimator_train          the same model under Estimator.train (hooks, checkpoint at
                                   the end excluded): what it consumes in a real run

Input figures drain batches inside the tf.data runtime (a tf.function loop over the
iterator), so they measure the pipeline, not Python. Ratios: the TFRecord path over
in-memory tensors, and over the fastest model's consumption (the issue's goal: >= 10x).
"""

import os
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import options as options_lib
from estimator_app.training import input_diagnosis
from input_fns import feature_spec as fs
from input_fns import fixed_frames
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns import writer
from model_fns import model_fn as model_fn_lib
from model_fns import registry

SUITE = "input"
BATCH = 100
CHAIN = ("scale",)
SHUFFLE = 10000
SPEC = fs.image_spec(28, 28, 1, [str(i) for i in range(10)])
# Models whose consumption is measured; the fastest of them sets the goal.
MODELS = ("linear", "dnn")


def synthetic(n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """n MNIST-sized examples: uint8 [n, 28, 28, 1] pixels and int64 [n] labels."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int64))


def write_data(work_dir: str, images: np.ndarray, labels: np.ndarray) -> manifest_lib.Manifest:
  """The synthetic set as TFRecords under work_dir (reused when already there)."""
  data_dir = os.path.join(work_dir, "input", f"mnist_like_{len(labels)}")
  if tf.io.gfile.exists(os.path.join(data_dir, manifest_lib.FILENAME)):
    return manifest_lib.read(data_dir)
  examples = (("train", {"image": x}, int(y)) for x, y in zip(images, labels))
  return writer.write_dataset(data_dir, SPEC, examples, num_shards=8,
                              source={"format": "synthetic", "n": len(labels)})


def _input_rate(ds: tf.data.Dataset, batches: int) -> Callable[[], float]:
  """A measurement: examples/s of draining `batches` more batches from one long-lived iterator."""
  iterator = iter(ds)

  def measure():
    start = time.perf_counter()
    n = int(input_diagnosis.drain(iterator, tf.constant(batches)))
    return n / (time.perf_counter() - start)

  return measure


def in_memory(images: np.ndarray, labels: np.ndarray, seed: int) -> tf.data.Dataset:
  """The reference pipeline over decoded arrays, with the same shuffle, batch and chain."""
  ds = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
  ds = ds.shuffle(SHUFFLE, seed=seed).repeat().batch(BATCH, drop_remainder=True)
  ds = ds.map(lambda f, y: (preprocessing.apply(CHAIN, f, SPEC, training=True), y),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def _model_fn(model: str):
  model_def = registry.get(model)
  return model_fn_lib.build_model_fn(model_def, model_def.hparams_cls(), SPEC,
                                     model_fn_lib.TrainConfig(summary_images=0))


def _prebatched(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
  """Preprocessed in-memory batches, one tf.data element per batch (input costs ~nothing)."""
  n = len(labels) // BATCH * BATCH
  x = (images[:n].astype(np.float32) / 255.0).reshape(-1, BATCH, 28, 28, 1)
  y = labels[:n].reshape(-1, BATCH)
  return tf.data.Dataset.from_tensor_slices(({"image": x}, y)).repeat().prefetch(4)


def train_step_rate(model: str, images: np.ndarray, labels: np.ndarray,
                    steps: int) -> Callable[[], float]:
  """A measurement: examples/s of `steps` training steps in a bare session (graph built once)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.random.set_random_seed(0)
    features, y = tf.compat.v1.data.make_one_shot_iterator(_prebatched(images, labels)).get_next()
    spec = _model_fn(model)(features, y, tf.estimator.ModeKeys.TRAIN)
    init = [tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()]
  sess = tf.compat.v1.Session(graph=graph)
  sess.run(init)

  def measure():
    start = time.perf_counter()
    for _ in range(steps):
      sess.run(spec.train_op)
    return steps * BATCH / (time.perf_counter() - start)

  return measure


def estimator_rate(model: str, images: np.ndarray, labels: np.ndarray, steps: int,
                   work_dir: str) -> Callable[[], float]:
  """A measurement: examples/s of Estimator.train steps on in-memory input."""
  model_fn = _model_fn(model)

  def measure():
    model_dir = tempfile.mkdtemp(prefix=f"{model}-", dir=work_dir)
    config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=0,
                                    save_checkpoints_steps=None, save_checkpoints_secs=None,
                                    save_summary_steps=10**9, log_step_count_steps=10**9)
    timer = harness.StepTimer(skip=20)
    tf.estimator.Estimator(model_fn, config=config).train(
        lambda: _prebatched(images, labels), steps=steps + timer.skip, hooks=[timer])
    tf.io.gfile.rmtree(model_dir)
    return (timer.steps - timer.skip) * BATCH / timer.seconds

  return measure


def run(opts: options_lib.BenchmarkOptions) -> Tuple[List[harness.Figure], Dict[str, object]]:
  """Measures every variant `opts.repetitions` times, alternated.

  Returns:
    (figures, ratios): examples/s per variant; ratios of the TFRecord input_fn over in-memory
    tensors and over the fastest model's consumption (bare session and Estimator).
  """
  n = max(int(60000 * opts.scale), 2000)
  batches = max(int(3000 * opts.scale), 100)
  steps = max(int(1000 * opts.scale), 100)
  images, labels = synthetic(n)
  m = write_data(opts.work_dir, images, labels)
  seed = 0
  tfrecord = input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(
      batch_size=BATCH, preprocessing=CHAIN, shuffle_buffer=SHUFFLE, seed=seed), training=True)
  cached = input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(
      batch_size=BATCH, preprocessing=CHAIN, shuffle_buffer=SHUFFLE, seed=seed, cache=True),
                                 training=True)
  variants = {
      "input/tfrecord_input_fn": _input_rate(tfrecord(), batches),
      "input/tfrecord_input_fn_cached": _input_rate(cached(), batches),
      "input/in_memory_tensors": _input_rate(in_memory(images, labels, seed), batches),
  }
  # One untimed epoch fills the cache, so the cached figure is what later epochs get.
  input_diagnosis.drain(iter(cached()), tf.constant(n // BATCH + 1))
  for model in MODELS:
    variants[f"{model}/train_steps"] = train_step_rate(model, images, labels, steps)
    variants[f"{model}/estimator_train"] = estimator_rate(model, images, labels, steps,
                                                          opts.work_dir)
  samples = harness.alternate(variants, repetitions=opts.repetitions)
  figures = [harness.figure(SUITE, name, "examples/s", s) for name, s in samples.items()]
  med = {f.name: f.median for f in figures}
  fastest = max(MODELS, key=lambda mdl: med[f"{mdl}/train_steps"])
  fastest_est = max(MODELS, key=lambda mdl: med[f"{mdl}/estimator_train"])
  ratios = {
      "tfrecord_input_fn / in_memory_tensors":
          med["input/tfrecord_input_fn"] / med["input/in_memory_tensors"],
      "tfrecord_input_fn / dnn train_steps":
          med["input/tfrecord_input_fn"] / med["dnn/train_steps"],
      f"tfrecord_input_fn / fastest model train_steps ({fastest}; goal >= 10)":
          med["input/tfrecord_input_fn"] / med[f"{fastest}/train_steps"],
      f"tfrecord_input_fn / fastest model estimator_train ({fastest_est})":
          med["input/tfrecord_input_fn"] / med[f"{fastest_est}/estimator_train"],
      f"tfrecord_input_fn_cached / fastest model train_steps ({fastest})":
          med["input/tfrecord_input_fn_cached"] / med[f"{fastest}/train_steps"],
      "examples": n,
      "batch_size": BATCH,
      "fixed_record_bytes": fixed_frames.record_bytes(m, "train"),
  }
  return figures, ratios
