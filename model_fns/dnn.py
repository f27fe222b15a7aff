"""`dnn`: a fully connected network (multilayer perceptron).

IMAGE and VECTOR inputs are flattened; TOKENS inputs become a bag of embeddings (padding
ignored); TABLE inputs become model_fns/tabular.py's deep input (normalized numerics, missing
indicators, an embedding per categorical and text column). Then `hidden_units` layers of
dense -> [batch norm] -> activation -> [dropout], and a dense layer to the logits
(spec.logits_dimension wide).

Variables: dnn/hidden_<i>/kernel (+ bias without batch norm), dnn/hidden_<i>_bn/{gamma, beta,
moving_mean, moving_variance} with batch norm, dnn/logits/{kernel,bias}; for tokens also
dnn/embedding/embeddings; for tables dnn/input/<column>/embeddings per categorical and text
column.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers

NAME = "dnn"
INPUT_KINDS = (fs.IMAGE, fs.VECTOR, fs.TOKENS, fs.TABLE)


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `dnn`.

  Attributes:
    hidden_units: width of each hidden layer, input to output; () gives a linear model.
    activation: activation after each hidden layer (a tf.keras name: relu, elu, gelu, tanh, ...).
    dropout: dropout rate after each hidden layer, in [0, 1) (training only).
    batch_norm: batch-normalize each hidden layer before its activation.
    batch_norm_momentum: decay of the batch-norm moving averages.
    embedding_dim: width of the token embeddings (TOKENS) or of each categorical and text
      column's embedding (TABLE); 0: 6 * ids ** 0.25 of each, capped at 64.
    combiner: how a row's token embeddings (TOKENS) or a multivalent column's embeddings
      (TABLE) are combined: "mean", "sum" or "sqrtn".
  """
  hidden_units: Tuple[int, ...] = (128, 64)
  activation: str = "relu"
  dropout: float = 0.0
  batch_norm: bool = False
  batch_norm_momentum: float = 0.99
  embedding_dim: int = 32
  combiner: str = "mean"

  def __post_init__(self):
    hparams_lib.check(HParams, "hidden_units", self.hidden_units,
                      all(u >= 1 for u in self.hidden_units), "positive widths")
    hparams_lib.check_choice(HParams, "activation", self.activation, layers.ACTIVATIONS)
    hparams_lib.check(HParams, "dropout", self.dropout, 0.0 <= self.dropout < 1.0, "a rate in [0, 1)")
    hparams_lib.check(HParams, "batch_norm_momentum", self.batch_norm_momentum,
                      0.0 <= self.batch_norm_momentum < 1.0, "a decay in [0, 1)")
    hparams_lib.check(HParams, "embedding_dim", self.embedding_dim, self.embedding_dim >= 0,
                      ">= 0 (0: auto)")
    hparams_lib.check_choice(HParams, "combiner", self.combiner, layers.COMBINERS)


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.logits_dimension] (the model contract in registry.py)."""
  layers.check_kind(NAME, spec, INPUT_KINDS)
  with layers.model_scope(NAME):
    x = layers.flat_input(features, spec, hp.embedding_dim, hp.combiner)
    x = layers.dense_stack(x, hp.hidden_units, hp.activation, hp.dropout, hp.batch_norm,
                           training, hp.batch_norm_momentum)
    return layers.output_logits(x, spec)
