"""What the model tests share: tiny dataset specs, batches made in memory, and running a
model_fn's EstimatorSpec in a plain graph session."""

import inspect
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import registry

# After preprocessing, IMAGE/VECTOR inputs are float32 in [0, 1]; TOKENS stay int64 ids.
IMAGE_SPEC = fs.image_spec(8, 8, 1, [str(d) for d in range(10)], value_range=(0, 16))
TOKENS_SPEC = fs.FeatureSpec(
    features=(fs.Feature("tokens", "int64", (7,), "int64_list"),), input_key="tokens",
    kind=fs.TOKENS, label_names=("neg", "neu", "pos", "other"), vocab_size=30)
VECTOR_SPEC = fs.FeatureSpec(
    features=(fs.Feature("x", "float32", (5,), "float_list"),), input_key="x",
    kind=fs.VECTOR, label_names=("a", "b", "c"))
SPECS = {fs.IMAGE: IMAGE_SPEC, fs.TOKENS: TOKENS_SPEC, fs.VECTOR: VECTOR_SPEC}


def model_kinds(kinds=(fs.IMAGE, fs.TOKENS, fs.VECTOR)) -> Iterator[Tuple[str, str]]:
  """(model name, input kind) for every registered model and each kind it reads."""
  for name in registry.names():
    for kind in kinds:
      if kind in registry.get(name).input_kinds:
        yield name, kind


def make_batch(spec: fs.FeatureSpec, batch_size: int, seed: int = 0,
               noise: float = 0.3) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """A learnable batch: each class has a random prototype; examples are noisy copies.

  Labels cycle through the classes so every class is present. Token rows get a random amount
  of trailing padding (id 0), at least one real token each.
  """
  rng = np.random.default_rng(seed)
  labels = np.arange(batch_size, dtype=np.int64) % spec.num_classes
  shape = spec.input_feature.shape
  if spec.kind == fs.TOKENS:
    protos = rng.integers(1, spec.vocab_size, size=(spec.num_classes, *shape))
    ids = protos[labels]
    swap = rng.random(ids.shape) < noise
    ids = np.where(swap, rng.integers(1, spec.vocab_size, size=ids.shape), ids)
    lengths = rng.integers(1, shape[-1] + 1, size=batch_size)
    ids[np.arange(shape[-1])[np.newaxis, :] >= lengths[:, np.newaxis]] = 0
    return {spec.input_key: ids.astype(np.int64)}, labels
  protos = rng.random((spec.num_classes, *shape))
  x = protos[labels] + noise * rng.standard_normal((batch_size, *shape))
  return {spec.input_key: np.clip(x, 0.0, 1.0).astype(np.float32)}, labels


def call_model_fn(model_fn, features, labels, mode) -> tf.estimator.EstimatorSpec:
  """Calls model_fn the way tf.estimator.Estimator does (config/params only if it takes them)."""
  kwargs = {}
  args = inspect.signature(model_fn).parameters
  if "config" in args:
    kwargs["config"] = tf.estimator.RunConfig()
  if "params" in args:
    kwargs["params"] = {}
  return model_fn(features, labels, mode, **kwargs)


def to_tensors(features: Dict[str, np.ndarray], labels: np.ndarray):
  return {k: tf.constant(v) for k, v in features.items()}, tf.constant(labels)
