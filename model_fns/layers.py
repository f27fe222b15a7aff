"""Building blocks the models share, so each model file holds only what makes it that model.

TABLE inputs (named numeric / categorical / text columns) are preprocessed in the graph by
model_fns/tabular.py; `flat_input` reads them through `tabular.deep_input`.

All blocks are tf.keras layers called in graph mode (the Estimator builds a tf.compat.v1 graph),
with explicit layer names: variable names are `<model>/<layer>/<weight>`, stable across runs,
which warm starts and checkpoint maps rely on. Variables are plain resource variables in
GLOBAL_VARIABLES, so checkpoints stay tf.train.Saver compatible.
"""

from typing import Sequence

import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs
from model_fns import tabular


class UnsupportedInputError(errors.UserInputError):
  """The dataset's kind of input is one a model cannot read."""


def check_kind(model: str, spec: fs.FeatureSpec, kinds: Sequence[str]) -> None:
  """Raises UnsupportedInputError unless the dataset's input kind is one of `kinds`."""
  if spec.kind not in kinds:
    what = ("the dataset is a table (named numeric, categorical and text columns)"
            if spec.kind == fs.TABLE else f"dataset feature {spec.input_key!r} is {spec.kind}")
    raise UnsupportedInputError(
        f"model {model!r} reads {' or '.join(kinds)} inputs; {what} (pick another --model)")


def model_scope(name: str):
  """The name scope of a model's layers: `name` exactly, even when a feature (a table column)
  has that name, so variable names stay `<name>/...` in every graph (tabular.exact_scope)."""
  return tabular.exact_scope(name)


def activation(name: str):
  """The tf.keras activation function called `name`."""
  return tf.keras.activations.get(name)


ACTIVATIONS = ("relu", "elu", "selu", "gelu", "swish", "tanh", "sigmoid", "softplus", "linear")


def float_input(features, spec: fs.FeatureSpec) -> tf.Tensor:
  """The model input as float32 (IMAGE/VECTOR inputs are float32 after preprocessing already;
  the cast only matters when a caller skips preprocessing)."""
  return tf.cast(features[spec.input_key], tf.float32)


def image_input(model: str, features, spec: fs.FeatureSpec) -> tf.Tensor:
  """The input as float32 [B, H, W, C] images.

  Raises:
    UnsupportedInputError: the dataset's input is not IMAGE.
  """
  check_kind(model, spec, (fs.IMAGE,))
  x = float_input(features, spec)
  shape = spec.input_feature.shape
  if len(shape) == 2:  # [H, W] grey images without a channel axis
    x = x[..., tf.newaxis]
  elif len(shape) != 3:
    raise UnsupportedInputError(
        f"model {model!r} needs images of shape [H, W] or [H, W, C]; feature "
        f"{spec.input_key!r} has shape {list(shape)}")
  return x


def token_ids(features, spec: fs.FeatureSpec) -> tf.Tensor:
  """The token ids as int64 [B, T] (0 = padding)."""
  return tf.reshape(tf.cast(features[spec.input_key], tf.int64), [-1, spec.input_feature.size])


def output_logits(x: tf.Tensor, spec: fs.FeatureSpec) -> tf.Tensor:
  """The final linear layer, named `logits`, of width spec.logits_dimension (C classes; 1 for
  a binary or a regression label); float32 even under a mixed-precision policy."""
  logits = tf.keras.layers.Dense(spec.logits_dimension, name="logits")(x)
  return tf.cast(logits, tf.float32)


def batch_norm(x: tf.Tensor, training: bool, name: str, momentum: float = 0.99,
               epsilon: float = 1e-3) -> tf.Tensor:
  """Batch normalization over the last axis, with moving averages that really update.

  A tf.keras BatchNormalization called in a tf.compat.v1 graph (an Estimator model_fn) creates
  its moving-average assign ops but puts them only in `layer.updates`, not in the UPDATE_OPS
  collection the train_op runs (checked on TF 2.15): added here, so the shared builder's
  `control_dependencies(UPDATE_OPS)` runs them and evaluation sees trained statistics.

  Args:
    x: input tensor, features on the last axis.
    training: normalize with batch statistics and update the moving averages (TRAIN mode),
      or normalize with the moving averages (EVAL / PREDICT).
    name: layer name (the variables are <scope>/<name>/{gamma,beta,moving_mean,moving_variance}).
    momentum: moving-average decay.
    epsilon: added to the variance.

  Returns:
    The normalized tensor, same shape as x.
  """
  layer = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)
  y = layer(x, training=training)
  if training:
    existing = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    for op in layer.updates:
      if op not in existing:
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, op)
  return y


def dense_stack(x: tf.Tensor, units: Sequence[int], act: str, dropout: float,
                use_batch_norm: bool, training: bool, bn_momentum: float = 0.99,
                prefix: str = "hidden") -> tf.Tensor:
  """Fully connected layers `<prefix>_<i>`: dense -> [batch norm] -> activation -> [dropout].

  With batch norm the dense layer has no bias (BN's beta takes its place).
  """
  for i, n in enumerate(units):
    x = tf.keras.layers.Dense(n, use_bias=not use_batch_norm, name=f"{prefix}_{i}")(x)
    if use_batch_norm:
      x = batch_norm(x, training, name=f"{prefix}_{i}_bn", momentum=bn_momentum)
    x = activation(act)(x)
    if dropout > 0:
      x = tf.keras.layers.Dropout(dropout, name=f"{prefix}_{i}_dropout")(x, training=training)
  return x


def embed_tokens(ids: tf.Tensor, vocab_size: int, dim: int, name: str = "embedding") -> tf.Tensor:
  """Embeds int ids [B, T] into [B, T, dim]. Id 0 is padding; callers mask it."""
  return tf.keras.layers.Embedding(vocab_size, dim, name=name)(ids)


def bag_of_embeddings(ids: tf.Tensor, vocab_size: int, dim: int, combiner: str,
                      name: str = "embedding") -> tf.Tensor:
  """Combines the embeddings of the non-padding tokens of each row into [B, dim].

  Args:
    ids: int token ids [B, T], 0 = padding (padding contributes nothing).
    vocab_size: number of ids, padding included.
    dim: embedding width.
    combiner: "sum", "mean" (sum / count) or "sqrtn" (sum / sqrt(count)); a row of padding
      only gives zeros.
    name: the embedding layer's name.

  Returns:
    float [B, dim].
  """
  emb = embed_tokens(ids, vocab_size, dim, name)
  return tabular.combine(emb, tf.not_equal(ids, 0), combiner)


COMBINERS = tabular.COMBINERS


def flat_input(features, spec: fs.FeatureSpec, embedding_dim: int, combiner: str) -> tf.Tensor:
  """The input as one float vector per example (what `linear` and `dnn` read).

  Args:
    features: the model's feature dict.
    spec: the dataset's spec.
    embedding_dim: width of the token embeddings (TOKENS) or of each categorical / text
      column's embedding (TABLE); 0: tabular.auto_embedding_dim of the id count.
    combiner: how a row's token embeddings (TOKENS) or a multivalent column's embeddings
      (TABLE) combine: "mean", "sum" or "sqrtn".

  Returns:
    float [B, D]: a bag of token embeddings for TOKENS; tabular.deep_input (normalized
    numerics, missing indicators, column embeddings; variables input/<column>/embeddings) for
    TABLE; the flattened float input otherwise.
  """
  if spec.kind == fs.TOKENS:
    dim = embedding_dim or tabular.auto_embedding_dim(spec.vocab_size)
    return bag_of_embeddings(token_ids(features, spec), spec.vocab_size, dim, combiner)
  if spec.kind == fs.TABLE:
    return tabular.deep_input(features, spec, embedding_dim=embedding_dim, combiner=combiner)
  return tf.keras.layers.Flatten(name="flatten")(float_input(features, spec))
