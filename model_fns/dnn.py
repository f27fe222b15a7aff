"""`dnn`: a fully connected network over the flattened input."""

import dataclasses
from typing import Tuple

import tensorflow as tf

from input_fns import feature_spec as fs


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `dnn`.

  Attributes:
    hidden_units: width of each hidden layer, input to output.
    activation: a tf.keras activation name.
    dropout: dropout rate after each hidden layer (training only).
  """
  hidden_units: Tuple[int, ...] = (128, 64)
  activation: str = "relu"
  dropout: float = 0.0


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  x = tf.keras.layers.Flatten()(tf.cast(features[spec.input_key], tf.float32))
  for i, units in enumerate(hp.hidden_units):
    x = tf.keras.layers.Dense(units, activation=hp.activation, name=f"hidden_{i}")(x)
    if hp.dropout > 0:
      x = tf.keras.layers.Dropout(hp.dropout)(x, training=training)
  return tf.keras.layers.Dense(spec.num_classes, name="logits")(x)
