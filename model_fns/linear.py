"""`linear`: multinomial (or binary) logistic regression, or linear regression.

IMAGE and VECTOR inputs are flattened and mapped to logits by one dense layer. TOKENS inputs
become a bag of embeddings (padding ignored) followed by the same dense layer: a linear model
over learned token features, as in fastText. TABLE inputs get model_fns/tabular.py's sparse
linear model, as tf.estimator.LinearClassifier builds it: a weight per id of every categorical
column, word of every text column, bucket and normalized value of every numeric column and
id of every cross, summed (embedding lookups, so hashed columns of 10^6 buckets stay cheap).

Variables: linear/logits/{kernel,bias}; for tokens also linear/embedding/embeddings; for tables
linear/<column>/weights (numeric columns also linear/<column>/bucket_weights),
linear/<a>_X_<b>/weights per cross and linear/bias, all starting at zero.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers
from model_fns import tabular

NAME = "linear"
INPUT_KINDS = (fs.IMAGE, fs.VECTOR, fs.TOKENS, fs.TABLE)


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `linear`.

  Attributes:
    embedding_dim: width of the token embeddings (TOKENS inputs only); 0: 6 * vocab_size **
      0.25, capped at 64.
    combiner: how a row's token embeddings are combined: "mean", "sum" or "sqrtn"
      (TOKENS inputs only).
    crosses: feature crosses of a TABLE, each two or more numeric (bucketized) or categorical
      column names joined by "*", like "age*education".
    cross_buckets: hash buckets of each cross (TABLE inputs only).
  """
  embedding_dim: int = 32
  combiner: str = "mean"
  crosses: Tuple[str, ...] = ()
  cross_buckets: int = tabular.DEFAULT_CROSS_BUCKETS

  def __post_init__(self):
    hparams_lib.check(HParams, "embedding_dim", self.embedding_dim, self.embedding_dim >= 0,
                      ">= 0 (0: auto)")
    hparams_lib.check_choice(HParams, "combiner", self.combiner, layers.COMBINERS)
    hparams_lib.check(HParams, "crosses", list(self.crosses),
                      all(tabular.is_cross(c) for c in self.crosses), tabular.CROSS_SYNTAX)
    hparams_lib.check(HParams, "cross_buckets", self.cross_buckets, self.cross_buckets >= 1,
                      ">= 1")


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.logits_dimension] (the model contract in registry.py).

  Raises:
    layers.UnsupportedInputError: the dataset's kind is not one of INPUT_KINDS.
    tabular.TableInputError: a cross names an unknown or a text column.
  """
  del training  # no dropout or batch norm: train and eval graphs are the same
  layers.check_kind(NAME, spec, INPUT_KINDS)
  with layers.model_scope(NAME):
    if spec.kind == fs.TABLE:
      return tabular.linear_logits(
          features, spec, spec.logits_dimension,
          crosses=[tabular.parse_cross(c) for c in hp.crosses], cross_buckets=hp.cross_buckets)
    x = layers.flat_input(features, spec, hp.embedding_dim, hp.combiner)
    return layers.output_logits(x, spec)
