"""`rnn`: stacked, optionally bidirectional LSTM or GRU layers over a sequence.

How each input kind becomes a sequence [B, T, F]:
  * TOKENS [B, T] ids: an embedding (`embedding_dim`); padding id 0 is masked, so padded steps
    change neither the states nor the pooled output.
  * IMAGE [B, H, W, C]: each image row is one time step of W * C values (the classic MNIST RNN).
  * VECTOR [B, D]: a length-D sequence of scalars (a univariate time series).
The last layer's output is pooled over time ("last": its final state, for bidirectional layers
both directions' final states; "mean": the mean over non-padding steps) and mapped to logits.

Variables: rnn/embedding/embeddings (tokens), rnn/<cell>_<i>/<cell>_cell/{kernel,
recurrent_kernel,bias} (or rnn/bi<cell>_<i>/{forward,backward}_<cell>_<i>/... when
bidirectional), rnn/logits/{kernel,bias}.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers

NAME = "rnn"
INPUT_KINDS = (fs.TOKENS, fs.IMAGE, fs.VECTOR)
_CELLS = {"lstm": tf.keras.layers.LSTM, "gru": tf.keras.layers.GRU}


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `rnn`.

  Attributes:
    cell: "lstm" or "gru".
    units: state width of each stacked layer, bottom to top (per direction).
    bidirectional: run every layer forwards and backwards, concatenating the outputs.
    pooling: "last" (final state) or "mean" (mean over non-padding steps) of the top layer.
    embedding_dim: width of the token embeddings (TOKENS inputs only).
    dropout: dropout rate on each layer's inputs, in [0, 1) (training only).
  """
  cell: str = "lstm"
  units: Tuple[int, ...] = (128,)
  bidirectional: bool = False
  pooling: str = "last"
  embedding_dim: int = 32
  dropout: float = 0.0

  def __post_init__(self):
    hparams_lib.check_choice(HParams, "cell", self.cell, tuple(_CELLS))
    hparams_lib.check(HParams, "units", self.units,
                      len(self.units) >= 1 and all(u >= 1 for u in self.units),
                      "one or more positive widths")
    hparams_lib.check_choice(HParams, "pooling", self.pooling, ("last", "mean"))
    hparams_lib.check(HParams, "embedding_dim", self.embedding_dim, self.embedding_dim >= 1, ">= 1")
    hparams_lib.check(HParams, "dropout", self.dropout, 0.0 <= self.dropout < 1.0, "a rate in [0, 1)")


def _sequence(features, spec: fs.FeatureSpec, hp: HParams):
  """Returns (inputs [B, T, F], mask [B, T] bool or None)."""
  if spec.kind == fs.TOKENS:
    ids = layers.token_ids(features, spec)
    return layers.embed_tokens(ids, spec.vocab_size, hp.embedding_dim), tf.not_equal(ids, 0)
  x = layers.float_input(features, spec)
  shape = spec.input_feature.shape
  if spec.kind == fs.IMAGE:
    rows, width = shape[0], 1
    for d in shape[1:]:
      width *= d
    return tf.reshape(x, [-1, rows, width]), None
  return tf.reshape(x, [-1, spec.input_feature.size, 1]), None


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.num_classes] (see the model contract in registry.py)."""
  layers.check_kind(NAME, spec, INPUT_KINDS)
  with tf.name_scope(NAME):
    x, mask = _sequence(features, spec, hp)
    for i, units in enumerate(hp.units):
      sequences = i < len(hp.units) - 1 or hp.pooling == "mean"
      rnn = _CELLS[hp.cell](units, return_sequences=sequences, dropout=hp.dropout,
                            name=f"{hp.cell}_{i}")
      if hp.bidirectional:
        rnn = tf.keras.layers.Bidirectional(rnn, name=f"bi{hp.cell}_{i}")
      x = rnn(x, mask=mask, training=training)
    if hp.pooling == "mean":
      if mask is None:
        x = tf.reduce_mean(x, axis=1)
      else:
        m = tf.cast(mask, x.dtype)[..., tf.newaxis]
        x = tf.reduce_sum(x * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    return layers.output_logits(x, spec)
