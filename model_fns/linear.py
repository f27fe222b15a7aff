"""`linear`: multinomial logistic regression.

IMAGE and VECTOR inputs are flattened and mapped to logits by one dense layer. TOKENS inputs
become a bag of embeddings (padding ignored) followed by the same dense layer: a linear model
over learned token features, as in fastText.

Variables: linear/logits/{kernel,bias}; for tokens also linear/embedding/embeddings.
"""

import dataclasses

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers

NAME = "linear"
INPUT_KINDS = (fs.IMAGE, fs.VECTOR, fs.TOKENS)


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `linear`.

  Attributes:
    embedding_dim: width of the token embeddings (TOKENS inputs only).
    combiner: how a row's token embeddings are combined: "mean", "sum" or "sqrtn"
      (TOKENS inputs only).
  """
  embedding_dim: int = 32
  combiner: str = "mean"

  def __post_init__(self):
    hparams_lib.check(HParams, "embedding_dim", self.embedding_dim, self.embedding_dim >= 1, ">= 1")
    hparams_lib.check_choice(HParams, "combiner", self.combiner, layers.COMBINERS)


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.num_classes] (see the model contract in registry.py)."""
  del training  # no dropout or batch norm: train and eval graphs are the same
  layers.check_kind(NAME, spec, INPUT_KINDS)
  with tf.name_scope(NAME):
    x = layers.flat_input(features, spec, hp.embedding_dim, hp.combiner)
    return layers.output_logits(x, spec)
