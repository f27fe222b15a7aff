"""Serving speed of the exported SavedModel: single-example latency and batch-64 throughput.

  ./bazelw run //scripts:benchmark -- --suite=serve
  ./bazelw run //scripts:benchmark -- --suite=serve --repetitions=3 --scale=0.1   # smoke run

For `dnn` and `lenet5` (registered default hparams, MNIST-sized 28x28x1 uint8 input, 10
classes), a checkpoint is made by a few Estimator training steps and exported with
export.write_saved_model (the same graph and signatures export_version writes). The SavedModel
is loaded the way TF Serving loads it: tf.compat.v1.saved_model.load into its own graph and
session, and each request is one session run feeding and fetching the signature's tensor names
(a Session.make_callable, so Python adds as little as it can to what Serving's C++ pays):

  serve/<model>/<signature>/single_p50, single_p99   ms per call with one example
  serve/<model>/<signature>/batch64                  examples/s with 64 examples per call

for signature serving_default (raw uint8 image tensor) and classification (serialized
tf.Example strings, parsed in the graph). Variants are alternated (harness.alternate, one
warm-up call each); p99 is taken over each repetition's calls like p50.

Not tf.saved_model.load: its signature functions (TF2's pruned wrap of the TF1 graph) took
~6 ms per single-example serving_default call against ~0.3 ms for the same request in a
session (measured 2026-12-02, dnn; 2 examples ~1.4 ms): a cost of that client, not of the
export, which TF Serving never pays.
"""

import os
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import input_suite
from estimator_app.benchmarks import options as options_lib
from estimator_app.benchmarks import train_suite
from estimator_app.serving import export
from model_fns import registry

SUITE = "serve"
MODELS = train_suite.MODELS
SIGNATURES = (export.SERVING_DEFAULT, export.CLASSIFICATION)
BATCH = 64


def export_model(model: str, work_dir: str, images: np.ndarray, labels: np.ndarray) -> str:
  """Trains `model` for a few steps and writes its SavedModel; returns the export directory."""
  model_dir = tempfile.mkdtemp(prefix=f"serve-{model}-", dir=work_dir)
  estimator = tf.estimator.Estimator(
      train_suite.project_model_fn(model),
      config=tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=0))
  estimator.train(lambda: input_suite._prebatched(images, labels), steps=5)
  model_def = registry.get(model)
  serving = export.ServingModel(model_def, model_def.hparams_cls(), input_suite.SPEC,
                                input_suite.CHAIN, train_suite.train_config())
  export_dir = os.path.join(model_dir, "export")
  export.write_saved_model(export_dir, serving, estimator.latest_checkpoint())
  return export_dir


class _Loaded:
  """A SavedModel loaded into its own graph and session, as TF Serving holds it."""

  def __init__(self, export_dir: str):
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    with self.graph.as_default():
      meta = tf.compat.v1.saved_model.load(self.session, [tf.saved_model.SERVING], export_dir)
    self.signatures = meta.signature_def

  def request(self, signature: str, input_key: str, output_key: str):
    """fn(values) -> the output for one request through `signature` (one session run)."""
    sig = self.signatures[signature]
    return self.session.make_callable(self.graph.get_tensor_by_name(sig.outputs[output_key].name),
                                      [self.graph.get_tensor_by_name(sig.inputs[input_key].name)])


def _caller(loaded: _Loaded, signature: str, images: np.ndarray) -> Callable[[int, int], None]:
  """call(start, size): one request of `size` examples starting at index `start`."""
  if signature == export.CLASSIFICATION:
    values = np.array([input_suite.SPEC.encode({"image": x}, 0) for x in images], dtype=object)
    fn = loaded.request(signature, export.CLASSIFY_INPUT_KEY, "scores")
  else:
    values = images
    fn = loaded.request(signature, "image", "probabilities")

  def call(start, size):
    fn(values[start:start + size])
  return call


def latency(call, requests: int, pool: int, p99s: List[float]) -> Callable[[], float]:
  """A measurement: p50 ms of `requests` single-example calls; appends that round's p99."""

  def measure():
    times = np.empty(requests)
    for i in range(requests):
      start = time.perf_counter()
      call(i % pool, 1)
      times[i] = time.perf_counter() - start
    p50, p99 = np.percentile(times * 1000.0, [50, 99])
    p99s.append(float(p99))
    return float(p50)

  return measure


def throughput(call, requests: int, pool: int) -> Callable[[], float]:
  """A measurement: examples/s of `requests` calls of BATCH examples each."""
  starts = list(range(0, pool - BATCH + 1, BATCH))

  def measure():
    begin = time.perf_counter()
    for i in range(requests):
      call(starts[i % len(starts)], BATCH)
    return requests * BATCH / (time.perf_counter() - begin)

  return measure


def run(opts: options_lib.BenchmarkOptions) -> Tuple[List[harness.Figure], Dict[str, object]]:
  """Measures every model x signature `opts.repetitions` times, alternated.

  Returns:
    (figures, ratios): p50/p99 latency (ms) and batch-64 throughput (examples/s) per model and
    signature; ratios[model] holds p50_ms, p99_ms and batch64 per signature (context, no target).
  """
  requests = max(int(500 * opts.scale), 50)
  batch_requests = max(int(200 * opts.scale), 20)
  images, labels = input_suite.synthetic(2000)
  os.makedirs(opts.work_dir, exist_ok=True)
  variants, p99s = {}, {}
  loaded = {}
  for model in MODELS:
    loaded[model] = _Loaded(export_model(model, opts.work_dir, images, labels))
    for signature in SIGNATURES:
      call = _caller(loaded[model], signature, images[:BATCH * 8])
      key = f"serve/{model}/{signature}"
      p99s[key] = []
      variants[f"{key}/single_p50"] = latency(call, requests, BATCH * 8, p99s[key])
      variants[f"{key}/batch64"] = throughput(call, batch_requests, BATCH * 8)
  samples = harness.alternate(variants, repetitions=opts.repetitions)
  figures = []
  for name, s in samples.items():
    if name.endswith("/single_p50"):
      key = name[:-len("/single_p50")]
      figures.append(harness.figure(SUITE, name, "ms", s))
      # The first entries are the warm-up call's.
      figures.append(harness.figure(SUITE, f"{key}/single_p99", "ms",
                                    p99s[key][-opts.repetitions:]))
    else:
      figures.append(harness.figure(SUITE, name, "examples/s", s))
  med = {f.name: f.median for f in figures}
  ratios: Dict[str, object] = {}
  for model in MODELS:
    ratios[model] = {
        f"serve_{signature}_{what}": med[f"serve/{model}/{signature}/{what}"]
        for signature in SIGNATURES for what in ("single_p50", "single_p99", "batch64")}
  return figures, ratios
