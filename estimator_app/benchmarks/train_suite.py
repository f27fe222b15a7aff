"""Training throughput: this project's Estimator path vs Keras fit vs the classic TF1 loop.

  ./bazelw run //scripts:benchmark -- --suite=train
  ./bazelw run //scripts:benchmark -- --suite=train --repetitions=3 --scale=0.1   # smoke run

Data: MNIST-sized synthetic examples (28x28x1 uint8, 10 classes; 60,000 x scale), written once
as TFRecords under work_dir (input_suite.write_data). Batch 100, Adam (learning rate 1e-3,
constant), models `dnn` and `lenet5` with their registered default hparams. Every variant of a
model runs the same number of steps per repetition, the variants are alternated
(harness.alternate, one warm-up call each) and only steady-state steps are timed. For the
Estimator variants the untimed warm-up lasts past the first periodic summary (step 100 at
scale 1): the first session.run that fetches a new set of tensors (the train op plus the
summary op) makes the session optimize the graph and build an executor for that set, a
one-time cost that grows with steps_per_run (measured 2026-12-02 at K=20: ~3.6 s for lenet5,
~0.7 s of it with Grappler off; ~1.7 s for dnn) and that would otherwise land in the timed
window:

  pipeline/tfrecord_input_fn      the TFRecord input_fn alone, drained in a graph loop
  pipeline/in_memory_tensors      the same batches from in-memory tensors
  <model>/estimator_tfrecord      tf.estimator.Estimator over the project's model_fn builder,
                                  TFRecord input_fn (input_fn_lib.make_input_fn), --steps_per_run
                                  (default 20) training steps per session.run: the real path
                                  as a user tuned for throughput runs it
  <model>/estimator_in_memory     the same Estimator on pre-batched, preprocessed in-memory
                                  tensors (input costs ~nothing): input_overhead's reference
  <model>/estimator_1step         estimator_tfrecord with one step per session.run (the
                                  default): what the per-step hooks and session.run cost
  <model>/keras_fit               an equivalent tf.keras Sequential, compile(adam) + fit on the
                                  same in-memory batches (eager TF2, tf.function train step)
  <model>/feed_dict               the classic TF1 loop: the same model_fn graph on placeholders,
                                  tf.compat.v1.Session.run(train_op, feed_dict=numpy batch)

Ratios (per model, ours = estimator_tfrecord): input_overhead = 1 - tfrecord / in_memory,
vs_keras_fit and vs_feed_dict = ours / theirs (throughput).
"""

import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import input_suite
from estimator_app.benchmarks import options as options_lib
from estimator_app.training import hooks as hooks_lib
from input_fns import input_fn as input_fn_lib
from model_fns import model_fn as model_fn_lib
from model_fns import registry

SUITE = "train"
BATCH = input_suite.BATCH
MODELS = ("dnn", "lenet5")
# Steps per measurement at scale 1: enough for >= ~1 s of steady state on 2 cores.
STEPS = {"dnn": 1500, "lenet5": 200}
# Steps excluded at the start of every measurement (graph warm-up, first allocations).
SKIP = 20
# Training summaries every this many steps at scale 1, as a run's defaults write them.
SUMMARY_STEPS = 100
LEARNING_RATE = 1e-3


def train_config(steps_per_run: int = 1) -> model_fn_lib.TrainConfig:
  """Plain Adam at a constant rate, no label smoothing or image summaries: what Keras runs."""
  return model_fn_lib.TrainConfig(optimizer="adam", learning_rate=LEARNING_RATE,
                                  lr_schedule="constant", label_smoothing=0.0, summary_images=0,
                                  steps_per_run=steps_per_run)


def project_model_fn(model: str, steps_per_run: int = 1):
  model_def = registry.get(model)
  return model_fn_lib.build_model_fn(model_def, model_def.hparams_cls(), input_suite.SPEC,
                                     train_config(steps_per_run))


def keras_model(model: str) -> tf.keras.Model:
  """A tf.keras Sequential with the same architecture as the registered default hparams."""
  L = tf.keras.layers
  hp = registry.get(model).hparams_cls()
  if model == "dnn":
    layers = [L.Flatten(input_shape=(28, 28, 1))]
    layers += [L.Dense(u, activation=hp.activation) for u in hp.hidden_units]
  elif model == "lenet5":
    pool = L.MaxPool2D if hp.pooling == "max" else L.AveragePooling2D
    layers = [L.InputLayer(input_shape=(28, 28, 1))]
    if hp.resize_to:
      layers.append(L.Resizing(hp.resize_to, hp.resize_to, interpolation="bilinear"))
    for f in hp.filters:
      layers += [L.Conv2D(f, hp.kernel_size, padding=hp.padding, activation=hp.activation),
                 pool(2, 2)]
    layers.append(L.Flatten())
    for u in hp.dense_units:
      layers.append(L.Dense(u, activation=hp.activation))
      if hp.dropout:
        layers.append(L.Dropout(hp.dropout))
  else:
    raise ValueError(f"no Keras equivalent of {model!r}")
  layers.append(L.Dense(10))
  return tf.keras.Sequential(layers)


def estimator_rate(model: str, input_fn: Callable[[], tf.data.Dataset], steps: int,
                   work_dir: str, steps_per_run: int = 1,
                   summary_steps: int = SUMMARY_STEPS) -> Callable[[], float]:
  """A measurement: examples/s of Estimator.train steps (fresh model_dir, no mid-run saves,
  training summaries every `summary_steps` steps). The runs up to and including the first
  periodic summary are warm-up (see the module docstring); `steps` steps are timed after it."""
  model_fn = project_model_fn(model, steps_per_run)
  runs = max(steps // steps_per_run, 2)
  skip = max(SKIP, summary_steps) // steps_per_run + 2

  stacked_input_fn = model_fn_lib.stacked_input_fn(lambda input_context=None: input_fn(),
                                                   steps_per_run)

  def measure():
    model_dir = tempfile.mkdtemp(prefix=f"{model}-", dir=work_dir)
    multi = steps_per_run > 1
    config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=0,
                                    save_checkpoints_steps=None, save_checkpoints_secs=None,
                                    save_summary_steps=0 if multi else summary_steps,
                                    log_step_count_steps=10**9)
    timer = harness.StepTimer(skip=skip)
    hooks = [timer]
    if multi:  # what the training app adds for --steps_per_run (runner.train_hooks)
      hooks.append(hooks_lib.MultiStepSummarySaverHook(steps_per_run, summary_steps,
                                                        model_dir))
    tf.estimator.Estimator(model_fn, config=config).train(
        stacked_input_fn, max_steps=(runs + skip) * steps_per_run, hooks=hooks)
    tf.io.gfile.rmtree(model_dir)
    return (timer.steps - timer.skip) * steps_per_run * BATCH / timer.seconds

  return measure


def _float_batches(images: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """[num_batches, BATCH, 28, 28, 1] float32 in [0, 1] and [num_batches, BATCH] labels."""
  n = len(labels) // BATCH * BATCH
  return ((images[:n].astype(np.float32) / 255.0).reshape(-1, BATCH, 28, 28, 1),
          labels[:n].reshape(-1, BATCH))


class _KerasTimer(tf.keras.callbacks.Callback):
  def __init__(self, skip: int):
    super().__init__()
    self.skip, self.steps, self.start, self.seconds = skip, 0, None, None

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1
    if self.steps == self.skip:
      self.start = time.perf_counter()

  def on_train_end(self, logs=None):
    self.seconds = time.perf_counter() - self.start


def keras_rate(model: str, images: np.ndarray, labels: np.ndarray,
               steps: int) -> Callable[[], float]:
  """A measurement: examples/s of model.fit steps (tracing excluded by skipping steps).

  The model is built and compiled inside each measurement: Keras invalidates eager-built
  layers once layers are made in a tf.compat.v1 graph (which every Estimator variant does),
  so a model kept across alternated variants would fail.
  """
  x, y = _float_batches(images, labels)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().prefetch(4)

  def measure():
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    net = keras_model(model)
    net.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    timer = _KerasTimer(SKIP)
    net.fit(ds, steps_per_epoch=steps + SKIP, epochs=1, verbose=0, callbacks=[timer])
    return (timer.steps - timer.skip) * BATCH / timer.seconds

  return measure


def feed_dict_rate(model: str, images: np.ndarray, labels: np.ndarray,
                   steps: int) -> Callable[[], float]:
  """A measurement: examples/s of the classic placeholder + feed_dict + Session.run loop."""
  x, y = _float_batches(images, labels)
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.random.set_random_seed(0)
    images_ph = tf.compat.v1.placeholder(tf.float32, [BATCH, 28, 28, 1], name="images")
    labels_ph = tf.compat.v1.placeholder(tf.int64, [BATCH], name="labels")
    spec = project_model_fn(model)({"image": images_ph}, labels_ph, tf.estimator.ModeKeys.TRAIN)
    init = [tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()]
  sess = tf.compat.v1.Session(graph=graph)
  sess.run(init)
  position = [0]

  def measure():
    start = None
    for i in range(steps + SKIP):
      if i == SKIP:
        start = time.perf_counter()
      b = position[0] % len(x)
      position[0] += 1
      sess.run(spec.train_op, feed_dict={images_ph: x[b], labels_ph: y[b]})
    return steps * BATCH / (time.perf_counter() - start)

  return measure


def run(opts: options_lib.BenchmarkOptions) -> Tuple[List[harness.Figure], Dict[str, object]]:
  """Measures every variant `opts.repetitions` times, alternated.

  Returns:
    (figures, ratios): examples/s per variant; ratios[model] = {input_overhead, vs_keras_fit,
    vs_feed_dict} (floats), plus context.
  """
  n = max(int(60000 * opts.scale), 2000)
  batches = max(int(2000 * opts.scale), 50)
  images, labels = input_suite.synthetic(n)
  m = input_suite.write_data(opts.work_dir, images, labels)
  tfrecord = input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(
      batch_size=BATCH, preprocessing=input_suite.CHAIN, shuffle_buffer=input_suite.SHUFFLE,
      seed=0), training=True)
  variants = {
      "pipeline/tfrecord_input_fn": input_suite._input_rate(tfrecord(), batches),
      "pipeline/in_memory_tensors": input_suite._input_rate(
          input_suite.in_memory(images, labels, 0), batches),
  }
  k = opts.steps_per_run
  summary_steps = max(int(SUMMARY_STEPS * opts.scale) // k, 1) * k
  for model in MODELS:
    steps = max(int(STEPS[model] * opts.scale), 20)
    variants[f"{model}/estimator_tfrecord"] = estimator_rate(
        model, tfrecord, steps, opts.work_dir, k, summary_steps)
    variants[f"{model}/estimator_in_memory"] = estimator_rate(
        model, lambda: input_suite._prebatched(images, labels), steps, opts.work_dir, k,
        summary_steps)
    variants[f"{model}/estimator_1step"] = estimator_rate(model, tfrecord, steps, opts.work_dir,
                                                          summary_steps=summary_steps)
    variants[f"{model}/keras_fit"] = keras_rate(model, images, labels, steps)
    variants[f"{model}/feed_dict"] = feed_dict_rate(model, images, labels, steps)
  samples = harness.alternate(variants, repetitions=opts.repetitions)
  figures = [harness.figure(SUITE, name, "examples/s", s) for name, s in samples.items()]
  med = {f.name: f.median for f in figures}
  ratios: Dict[str, object] = {
      "pipeline/tfrecord / in_memory": (med["pipeline/tfrecord_input_fn"] /
                                        med["pipeline/in_memory_tensors"]),
  }
  for model in MODELS:
    ours = med[f"{model}/estimator_tfrecord"]
    ratios[model] = {
        "input_overhead": 1.0 - ours / med[f"{model}/estimator_in_memory"],
        "vs_keras_fit": ours / med[f"{model}/keras_fit"],
        "vs_feed_dict": ours / med[f"{model}/feed_dict"],
        "steps_per_run_speedup": ours / med[f"{model}/estimator_1step"],
    }
  return figures, ratios
