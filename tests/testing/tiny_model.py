"""The tiny model the model_fn builder tests train: its specs, hyperparameters and batches.

Entry points: MODEL (a registry.ModelDef over `build_logits`), TinyHParams, SPEC (4x4 grey
images, 3 classes), VECTOR_SPEC (16 floats, 2 classes), `batch` (a learnable batch) and
CAPTURED (tensors of the last graph built, for exact checks; tests clear it in setUp).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import registry

# float32 pixels in [0, 1], as the model sees them after preprocessing.
SPEC = fs.FeatureSpec(features=(fs.Feature("image", "float32", (4, 4, 1)),), input_key="image",
                      kind=fs.IMAGE, label_names=("ant", "bee", "cat"), value_range=(0, 1))
VECTOR_SPEC = fs.FeatureSpec(features=(fs.Feature("x", "float32", (16,), "float_list"),),
                             input_key="x", kind=fs.VECTOR, label_names=("no", "yes"))


@dataclasses.dataclass(frozen=True)
class TinyHParams:
  """The test model: flatten -> dense(hidden) -> [batch norm] -> relu -> dense logits * gain.

  Attributes:
    hidden: hidden width.
    batch_norm: "" (none), "keras" (tf.keras layer; its updates stay in layer.updates only),
      "update_ops" (tf.keras layer, updates added to UPDATE_OPS as model_fns/layers.py does),
      "compat_v1" (tf.compat.v1.layers.batch_normalization, which fills UPDATE_OPS itself).
    gain: multiplies the logits inside the model (in the compute dtype).
    collection_l2: adds collection_l2 * sum(hidden kernel ** 2) to REGULARIZATION_LOSSES, as
      tf.compat.v1-style models do.
  """
  hidden: int = 8
  batch_norm: str = ""
  gain: float = 1.0
  collection_l2: float = 0.0


CAPTURED = {}  # "hidden": the hidden layer's output in the last graph built


def build_logits(features, spec, hp, training):
  """The registry contract: logits [B, spec.num_classes] of features[spec.input_key]."""
  x = tf.keras.layers.Flatten(name="flatten")(features[spec.input_key])
  dense = tf.keras.layers.Dense(hp.hidden, name="hidden")
  h = dense(x)
  CAPTURED["hidden"] = h
  if hp.collection_l2:
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES,
                                   hp.collection_l2 * tf.reduce_sum(dense.kernel ** 2))
  if hp.batch_norm in ("keras", "update_ops"):
    layer = tf.keras.layers.BatchNormalization(momentum=0.9, name="bn")
    h = layer(h, training=training)
    if hp.batch_norm == "update_ops" and training:
      for op in layer.updates:
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, op)
  elif hp.batch_norm == "compat_v1":
    h = tf.compat.v1.layers.batch_normalization(h, momentum=0.9, training=training, name="bn")
  h = tf.nn.relu(h)
  return tf.keras.layers.Dense(spec.num_classes, name="logits")(h) * hp.gain


MODEL = registry.ModelDef("tiny", TinyHParams, build_logits)


def batch(spec, n=24, seed=0):
  """A learnable batch: each label is the arg-max of three fixed projections of the input."""
  rng = np.random.default_rng(seed)
  shape = spec.input_feature.shape
  x = rng.random((n, *shape)).astype(np.float32)
  proj = np.random.default_rng(99).standard_normal((int(np.prod(shape)), spec.num_classes))
  labels = np.argmax((x.reshape(n, -1) - 0.5) @ proj, axis=1).astype(np.int64)
  return {spec.input_key: x}, labels
