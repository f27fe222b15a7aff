"""`wide_deep`: a wide linear model and a deep network trained jointly (Cheng et al., 2016).

As tf.estimator.DNNLinearCombinedClassifier builds it, on TABLE inputs (model_fns/tabular.py):

  logits = linear(wide) + dnn(deep)

  wide  tabular.linear_logits: a sparse weight per bucket of every numeric column, per id of
        every categorical column, per word of every text column and per id of every cross
        (`crosses`, hashed into `cross_buckets`), summed, plus a bias. Memorizes.
  deep  tabular.deep_input (normalized numerics, missing indicators, an embedding per
        categorical and text column) -> `hidden_units` layers of dense -> [batch norm] ->
        activation -> [dropout] -> a dense layer to the logits. Generalizes.

Each part has its own optimizer, as in the premade (FTRL for the sparse wide weights, Adagrad
for the deep part), through the `optimizer_groups` hook of model_fns/model_fn.py: the gradients
of the one loss are computed once and each part's share is applied by its optimizer, in one
train op. TrainConfig's optimizer and learning_rate are not used; its schedule (scaling both
rates alike), clipping and precision are.

Default learning rates are those of the premade single models (LinearClassifier: FTRL at
min(0.2, 1 / sqrt(number of wide columns)); DNNClassifier: Adagrad at 0.05), not the
combined premade's 0.005 and 0.001, which its own source calls "a historical artifact" and
which need many thousands of steps.

Variables: wide_deep/linear/<column>/weights (numeric columns: <column>/bucket_weights),
wide_deep/linear/<a>_X_<b>/weights, wide_deep/linear/bias; wide_deep/dnn/input/<column>/
embeddings, wide_deep/dnn/hidden_<i>/..., wide_deep/dnn/logits/{kernel,bias}.
"""

import dataclasses
import math
from typing import List, Tuple

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers
from model_fns import tabular
from model_fns import train_config

NAME = "wide_deep"
INPUT_KINDS = (fs.TABLE,)
LINEAR = "linear"
DNN = "dnn"

# The premade LinearClassifier's and DNNClassifier's rates (see the module docstring).
_MAX_LINEAR_LEARNING_RATE = 0.2
_DNN_LEARNING_RATE = 0.05


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `wide_deep`.

  Attributes:
    hidden_units: width of each hidden layer of the deep part, input to output; () makes the
      deep part linear in its dense input.
    activation: activation after each hidden layer (a tf.keras name: relu, elu, gelu, ...).
    dropout: dropout rate after each hidden layer, in [0, 1) (training only).
    batch_norm: batch-normalize each hidden layer before its activation.
    batch_norm_momentum: decay of the batch-norm moving averages.
    embedding_dim: width of each categorical and text column's embedding in the deep part;
      0: 6 * ids ** 0.25 of each column, capped at 64.
    combiner: how a multivalent column's embeddings combine: "mean", "sum" or "sqrtn".
    crosses: feature crosses of the wide part, each two or more numeric (bucketized) or
      categorical column names joined by "*", like "education*occupation".
    cross_buckets: hash buckets of each cross.
    text_hash_buckets: hash buckets of the words of the text columns (both parts).
    linear_optimizer: optimizer of the wide part (a TrainConfig optimizer name).
    linear_learning_rate: its base learning rate; 0: min(0.2, 1 / sqrt(wide columns)), wide
      columns being the table's columns plus the crosses (the premade's rule).
    dnn_optimizer: optimizer of the deep part (a TrainConfig optimizer name).
    dnn_learning_rate: its base learning rate (> 0).
  """
  hidden_units: Tuple[int, ...] = (128, 64)
  activation: str = "relu"
  dropout: float = 0.0
  batch_norm: bool = False
  batch_norm_momentum: float = 0.99
  embedding_dim: int = 0
  combiner: str = "mean"
  crosses: Tuple[str, ...] = ()
  cross_buckets: int = tabular.DEFAULT_CROSS_BUCKETS
  text_hash_buckets: int = tabular.DEFAULT_TEXT_HASH_BUCKETS
  linear_optimizer: str = "ftrl"
  linear_learning_rate: float = 0.0
  dnn_optimizer: str = "adagrad"
  dnn_learning_rate: float = _DNN_LEARNING_RATE

  def __post_init__(self):
    hparams_lib.check(HParams, "hidden_units", self.hidden_units,
                      all(u >= 1 for u in self.hidden_units), "positive widths")
    hparams_lib.check_choice(HParams, "activation", self.activation, layers.ACTIVATIONS)
    hparams_lib.check(HParams, "dropout", self.dropout, 0.0 <= self.dropout < 1.0,
                      "a rate in [0, 1)")
    hparams_lib.check(HParams, "batch_norm_momentum", self.batch_norm_momentum,
                      0.0 <= self.batch_norm_momentum < 1.0, "a decay in [0, 1)")
    hparams_lib.check(HParams, "embedding_dim", self.embedding_dim, self.embedding_dim >= 0,
                      ">= 0 (0: auto)")
    hparams_lib.check_choice(HParams, "combiner", self.combiner, layers.COMBINERS)
    hparams_lib.check(HParams, "crosses", list(self.crosses),
                      all(tabular.is_cross(c) for c in self.crosses), tabular.CROSS_SYNTAX)
    hparams_lib.check(HParams, "cross_buckets", self.cross_buckets, self.cross_buckets >= 1,
                      ">= 1")
    hparams_lib.check(HParams, "text_hash_buckets", self.text_hash_buckets,
                      self.text_hash_buckets >= 1, ">= 1")
    hparams_lib.check_choice(HParams, "linear_optimizer", self.linear_optimizer,
                             train_config.OPTIMIZERS)
    hparams_lib.check(HParams, "linear_learning_rate", self.linear_learning_rate,
                      self.linear_learning_rate >= 0, ">= 0 (0: auto)")
    hparams_lib.check_choice(HParams, "dnn_optimizer", self.dnn_optimizer,
                             train_config.OPTIMIZERS)
    hparams_lib.check(HParams, "dnn_learning_rate", self.dnn_learning_rate,
                      self.dnn_learning_rate > 0, "> 0")


def linear_learning_rate(hp: HParams, spec: fs.FeatureSpec) -> float:
  """The wide part's base rate: hp.linear_learning_rate, or the premade's rule when it is 0."""
  if hp.linear_learning_rate:
    return hp.linear_learning_rate
  wide_columns = len(spec.features) + len(hp.crosses)
  return min(_MAX_LINEAR_LEARNING_RATE, 1.0 / math.sqrt(wide_columns))


def optimizer_groups(hp: HParams, spec: fs.FeatureSpec) -> List[Tuple[str, str, float]]:
  """The model_fn hook: (variable-name prefix, optimizer name, base learning rate) per part."""
  return [(f"{NAME}/{LINEAR}", hp.linear_optimizer, linear_learning_rate(hp, spec)),
          (f"{NAME}/{DNN}", hp.dnn_optimizer, hp.dnn_learning_rate)]


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.logits_dimension] (the model contract in registry.py).

  Raises:
    layers.UnsupportedInputError: the dataset is not a TABLE.
    tabular.TableInputError: a cross names an unknown or a text column.
  """
  layers.check_kind(NAME, spec, INPUT_KINDS)
  with layers.model_scope(NAME):
    with tabular.exact_scope(LINEAR):
      wide = tabular.linear_logits(
          features, spec, spec.logits_dimension,
          crosses=[tabular.parse_cross(c) for c in hp.crosses], cross_buckets=hp.cross_buckets,
          numeric_values=False, text_hash_buckets=hp.text_hash_buckets)
    with tabular.exact_scope(DNN):
      x = tabular.deep_input(features, spec, embedding_dim=hp.embedding_dim,
                             combiner=hp.combiner, text_hash_buckets=hp.text_hash_buckets)
      x = layers.dense_stack(x, hp.hidden_units, hp.activation, hp.dropout, hp.batch_norm,
                             training, hp.batch_norm_momentum)
      deep = layers.output_logits(x, spec)
    return tf.add(wide, deep, name="logits")
