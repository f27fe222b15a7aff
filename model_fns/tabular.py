"""In-graph preprocessing of TABLE datasets: what every table model reads, defined once.

Everything here runs inside the model_fn, so training, evaluation and the exported SavedModel
(which carries the graph and, as assets, the vocabulary files) transform a row in exactly the
same way; the serving receiver passes the raw columns of `FeatureSpec.serving_signature`.
The transforms come from each column's `stats` (input_fns/analyze.py, measured on TRAIN):

  numeric      NaN -> the train mean, then (x - mean) / std (std 0 -> 1); a float missing
               indicator per value where the stats saw missing values (missing > 0); bucket ids
               by the stats' quantile boundaries (`tf.raw_ops.Bucketize`: boundary b_k falls
               in bucket k + 1), one more id for NaN.
  categorical  with a vocabulary: a `tf.lookup.StaticVocabularyTable` over the vocabulary
               file (whole line = key, line number = id; int64 columns parse the line as an
               int64), `oov_buckets` hashed ids for unseen values, never an error; with
               `hash_buckets`: `tf.strings.to_hash_bucket_fast` (int64 values as decimal
               strings); with neither: strings hashed into `default_hash_buckets`, int64 values
               taken modulo `default_hash_buckets` (identity for small ids). A missing value
               ("" / -1) of a single-valued column gets its own id; the padding of a
               `multivalent` column [B, N] is masked out.
  text         lower-cased (UTF-8), split on whitespace, each word hashed into
               `text_hash_buckets`: a bag of words, padding masked.
  crosses      tuples of column names (categorical or numeric): the Cartesian product of the
               columns' ids (after lookup / bucketization, padding dropped) hashed by
               `tf.sparse.cross_hashed` into `cross_buckets`.

Vocabulary files: each tf.lookup.TextFileInitializer records its file in the graph's
ASSET_FILEPATHS collection, so `Estimator.export_saved_model` copies the file into the
SavedModel's assets/ and the export serves without the dataset directory.

Id layout of one column (`Ids.size` ids): vocabulary ids [0, V), OOV ids [V, V + oov), the
missing id V + oov; hashed [0, H), missing H; numeric value j of a [k] column: bucket ids
[j * (Q + 2), (j + 1) * (Q + 2)) for Q boundaries (the last for NaN).

Builders (variable names are `<current name scope>/<part>/<column>/...`, column names reduced
to [A-Za-z0-9_] by `scope_names`):

  `deep_input(features, spec, ...)` -> float32 [B, D]: normalized numerics, their missing
      indicators, and a tf.keras Embedding per categorical / text column (`input/<col>/
      embeddings`; multivalent and text rows combined by `combiner` / mean).
  `linear_logits(features, spec, units, ...)` -> float32 [B, units]: a linear model whose
      sparse features are embedding lookups of width `units`, summed (`<col>/weights`
      [ids, units], gathered, so 10^6 hash buckets cost no dense matmul and get sparse
      updates), plus `<col>/weights` [values, units] on the normalized numerics and their
      indicators, `<col>/bucket_weights` on their bucket ids, `<a>_X_<b>/weights` per cross and
      one `bias` [units]. Every weight starts at zero, as in the premade linear model.

Also entry points, for tests and other models: `normalized`, `bucket_ids`, `categorical_ids`,
`text_ids`, `cross_parts`, `cross_ids`, `combine`, `parse_cross`, `is_cross`, `cross_name`,
`scope_names`, `exact_scope`, `auto_embedding_dim`, `Ids`, `TableInputError`.
"""

import math
import re
from typing import List, Mapping, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs

DEFAULT_OOV_BUCKETS = 1
DEFAULT_HASH_BUCKETS = 1000
DEFAULT_TEXT_HASH_BUCKETS = 10_000
DEFAULT_CROSS_BUCKETS = 10_000
# auto_embedding_dim: 6 * ids ** 0.25 (the rule of thumb of Google's feature-column guide),
# capped so a 10^6-bucket column does not get 190 dimensions.
MAX_AUTO_EMBEDDING_DIM = 64
COMBINERS = ("sum", "mean", "sqrtn")
CROSS_SEPARATOR = "*"
CROSS_SYNTAX = "two or more distinct column names joined by '*', like 'a*b'"

# Names linear_logits gives its own variables, which no column scope may take.
_LINEAR_RESERVED = ("bias",)


class TableInputError(errors.UserInputError):
  """A table's columns cannot be used as asked (a cross naming an unknown or text column)."""


class Ids(NamedTuple):
  """The ids of one column (or cross), padded dense.

  Attributes:
    ids: int64 [B, N], each in [0, size) (masked positions hold 0).
    mask: bool [B, N], False at padding; None when every position is a value.
    size: the number of distinct ids (the rows of the column's weight table).
  """
  ids: tf.Tensor
  mask: Optional[tf.Tensor]
  size: int


# --- Names ------------------------------------------------------------------------------------


def _sanitize(name: str) -> str:
  clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
  return clean if clean and clean[0].isalnum() else "c" + clean


def scope_names(names: Sequence[str], reserved: Sequence[str] = ()) -> List[str]:
  """Scope names for columns (or crosses): [A-Za-z0-9_], starting with a letter or digit.

  Args:
    names: the column (or cross scope) names, in spec order: the order decides who keeps a
      contested name, so a column's scope stays the same while later columns come and go.
    reserved: names no column may take (the builder's own variables).

  Returns:
    One unique scope per name, in order: a name that sanitizes to a taken one gets a suffix
    _2, _3, ...
  """
  taken = set(reserved)
  out = []
  for name in names:
    base = _sanitize(name)
    scope, i = base, 1
    while scope in taken:
      i += 1
      scope = f"{base}_{i}"
    taken.add(scope)
    out.append(scope)
  return out


def exact_scope(name: str):
  """tf.name_scope(name) under the current scope, never uniquified to `name_1`.

  A graph uniquifies a scope whose name an op already has: a serving receiver's placeholder
  named after a column ("age") would move the variables of a top-level scope "age" to
  "age_1/...", and the checkpoint would no longer restore. An absolute scope ("outer/age/")
  is entered as it is.

  Args:
    name: one scope name (no "/").

  Returns:
    The name-scope context manager.
  """
  current = tf.compat.v1.get_default_graph().get_name_scope()
  return tf.name_scope(f"{current}/{name}/" if current else f"{name}/")


def parse_cross(text: str) -> Tuple[str, ...]:
  """"a*b*c" -> ("a", "b", "c").

  Raises:
    ValueError: fewer than two names, an empty name, or a name given twice.
  """
  names = tuple(n.strip() for n in text.split(CROSS_SEPARATOR))
  if len(names) < 2 or not all(names) or len(set(names)) != len(names):
    raise ValueError(f"a cross is {CROSS_SYNTAX}; got {text!r}")
  return names


def is_cross(text: str) -> bool:
  """Whether `text` is a cross ("a*b"; see parse_cross)."""
  try:
    parse_cross(text)
  except ValueError:
    return False
  return True


def cross_name(columns: Sequence[str]) -> str:
  """The scope of a cross's weights: "a_X_b" (the tf.feature_column convention)."""
  return "_X_".join(_sanitize(c) for c in columns)


def auto_embedding_dim(ids: int) -> int:
  """6 * ids ** 0.25, rounded, in [1, MAX_AUTO_EMBEDDING_DIM]."""
  return int(min(MAX_AUTO_EMBEDDING_DIM, max(1, round(6.0 * ids ** 0.25))))


# --- Numeric columns --------------------------------------------------------------------------


def _stats(feature: fs.Feature) -> Mapping:
  return feature.stats or {}


def _moments(feature: fs.Feature) -> Tuple[float, float]:
  stats = _stats(feature)
  mean = float(stats.get("mean") or 0.0)
  std = float(stats.get("std") or 0.0)
  return mean, (std if std > 0 and math.isfinite(std) else 1.0)


def has_missing_indicator(feature: fs.Feature) -> bool:
  """Whether a numeric column gets a missing indicator: its stats saw missing values."""
  return int(_stats(feature).get("missing") or 0) > 0


def boundaries(feature: fs.Feature) -> List[float]:
  """The numeric column's bucket boundaries: its stats' quantiles (possibly none)."""
  return [float(q) for q in _stats(feature).get("quantiles") or ()]


def _numeric_values(features, feature: fs.Feature) -> tf.Tensor:
  """float32 [B, size] of a numeric column (NaN kept)."""
  return tf.reshape(tf.cast(features[feature.name], tf.float32), [-1, feature.size])


def normalized(features, feature: fs.Feature) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
  """A numeric column imputed and standardized by its stats.

  Args:
    features: the feature dict; features[feature.name] is float32 [B, *shape], NaN = missing.
    feature: a NUMERIC column.

  Returns:
    (float32 [B, size]: (x - mean) / std with NaN -> mean (so 0), or x itself without stats;
     float32 [B, size] 1.0 where x was NaN, or None unless the stats saw missing values).
  """
  x = _numeric_values(features, feature)
  mean, std = _moments(feature)
  missing = tf.math.is_nan(x)
  z = (tf.where(missing, tf.fill(tf.shape(x), mean), x) - mean) / std
  indicator = tf.cast(missing, tf.float32) if has_missing_indicator(feature) else None
  return z, indicator


def bucket_ids(features, feature: fs.Feature) -> Ids:
  """A numeric column's bucket ids by its quantile boundaries (NaN: the last id of each value).

  Args:
    features: as for `normalized`.
    feature: a NUMERIC column.

  Returns:
    Ids [B, size] with size * (Q + 2) ids for Q boundaries: value j of the column in bucket b
    (x < q_0: 0; q_{b-1} <= x < q_b: b; x >= q_{Q-1}: Q; NaN: Q + 1) is j * (Q + 2) + b.
  """
  x = _numeric_values(features, feature)
  bounds = boundaries(feature)
  per_value = len(bounds) + 2
  missing = tf.math.is_nan(x)
  buckets = tf.cast(tf.raw_ops.Bucketize(input=tf.where(missing, tf.zeros_like(x), x),
                                         boundaries=bounds), tf.int64)
  buckets = tf.where(missing, tf.fill(tf.shape(buckets), tf.constant(per_value - 1, tf.int64)),
                     buckets)
  offsets = tf.range(feature.size, dtype=tf.int64) * per_value
  return Ids(buckets + offsets[tf.newaxis, :], None, feature.size * per_value)


# --- Categorical columns ----------------------------------------------------------------------


def _vocabulary_size(feature: fs.Feature, path: str) -> int:
  """Lines of a vocabulary file, as tf.lookup.TextFileInitializer counts them.

  Raises:
    TableInputError: the file cannot be read.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
  except tf.errors.OpError as e:
    raise TableInputError(f"column {feature.name!r}: cannot read its vocabulary {path} "
                          f"({type(e).__name__}: {e.message}); the dataset directory holds it "
                          f"beside manifest.json") from e
  if not data:
    return 0
  return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _as_keys(values: tf.Tensor) -> tf.Tensor:
  """Strings to hash: int64 values as decimals, the way analyze renders int categories."""
  return tf.strings.as_string(values) if values.dtype == tf.int64 else values


def _hashed(values: tf.Tensor, buckets: int) -> tf.Tensor:
  return tf.strings.to_hash_bucket_fast(_as_keys(values), buckets)


def categorical_ids(features, spec: fs.FeatureSpec, feature: fs.Feature,
                    oov_buckets: int = DEFAULT_OOV_BUCKETS,
                    default_hash_buckets: int = DEFAULT_HASH_BUCKETS) -> Ids:
  """A categorical column's ids (see the module docstring for the layout).

  Args:
    features: the feature dict; features[feature.name] is string or int64 [B, 1], or [B, N]
      padded with "" / -1 for a multivalent column.
    spec: the dataset's spec (for the vocabulary file's path).
    feature: a CATEGORICAL column.
    oov_buckets: hashed ids for values not in the vocabulary (>= 1).
    default_hash_buckets: buckets of a column with neither a vocabulary nor hash_buckets.

  Returns:
    Ids [B, 1] (missing: its own id) or, multivalent, [B, N] with padding masked.

  Raises:
    ValueError: oov_buckets < 1.
    feature_spec.SpecError: the column's vocabulary has no location (spec.assets_dir unset).
    TableInputError: the vocabulary file cannot be read.
  """
  if oov_buckets < 1:
    raise ValueError(f"oov_buckets must be >= 1 (unseen values need an id); got {oov_buckets}")
  values = features[feature.name]
  if not feature.multivalent:
    values = tf.reshape(values, [-1, 1])
  missing = tf.equal(values, tf.constant(feature.missing_value, values.dtype))
  if feature.vocabulary:
    path = spec.vocabulary_path(feature)
    vocab = _vocabulary_size(feature, path)
    if vocab:
      # The table's initializer runs with tables_initializer(), before any step: it must not
      # wait on a previous step's train op (steps_per_run builds step i under its control).
      with tf.control_dependencies(None):
        init = tf.lookup.TextFileInitializer(
            path, key_dtype=values.dtype, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            vocab_size=vocab)
        table = tf.lookup.StaticVocabularyTable(init, oov_buckets)
      ids = table.lookup(values)
    else:  # an empty vocabulary: every value is out of it
      ids = _hashed(values, oov_buckets)
    known = vocab + oov_buckets
  elif feature.hash_buckets:
    ids, known = _hashed(values, feature.hash_buckets), feature.hash_buckets
  elif values.dtype == tf.int64:
    ids, known = tf.math.floormod(values, default_hash_buckets), default_hash_buckets
  else:
    ids, known = _hashed(values, default_hash_buckets), default_hash_buckets
  if feature.multivalent:
    return Ids(tf.where(missing, tf.zeros_like(ids), ids), tf.logical_not(missing), known + 1)
  return Ids(tf.where(missing, tf.fill(tf.shape(ids), tf.constant(known, tf.int64)), ids), None,
             known + 1)


# --- Text columns -----------------------------------------------------------------------------


def text_ids(features, feature: fs.Feature, buckets: int = DEFAULT_TEXT_HASH_BUCKETS) -> Ids:
  """A text column as a hashed bag of words.

  Args:
    features: the feature dict; features[feature.name] is string [B, 1] ("" = missing).
    feature: a TEXT column.
    buckets: hash buckets of the words.

  Returns:
    Ids [B, W] (W: the most words of a row in the batch; possibly 0), padding masked.
  """
  text = tf.reshape(features[feature.name], [-1])
  words = tf.strings.split(tf.strings.lower(text, encoding="utf-8"))
  dense = tf.strings.to_hash_bucket_fast(words, buckets).to_tensor(default_value=-1)
  mask = tf.greater_equal(dense, 0)
  return Ids(tf.maximum(dense, 0), mask, buckets)


# --- Crosses ----------------------------------------------------------------------------------


def _sparse(ids: Ids) -> tf.SparseTensor:
  """The valid ids as a SparseTensor [B, N] (a dense Tensor when nothing is masked)."""
  if ids.mask is None:
    return ids.ids
  where = tf.where(ids.mask)
  return tf.SparseTensor(where, tf.gather_nd(ids.ids, where),
                         tf.shape(ids.ids, out_type=tf.int64))


def cross_ids(parts: Sequence[Ids], buckets: int) -> Ids:
  """The hashed cross of several columns' ids.

  Args:
    parts: two or more columns' Ids (same batch).
    buckets: hash buckets of the cross.

  Returns:
    Ids [B, M]: every combination of one valid id per part (M: the largest product in the
    batch), hashed by tf.sparse.cross_hashed; a row where a part has no valid id has none.
  """
  crossed = tf.sparse.cross_hashed([_sparse(p) for p in parts], num_buckets=buckets)
  dense = tf.sparse.to_dense(crossed, default_value=-1)
  return Ids(tf.maximum(dense, 0), tf.greater_equal(dense, 0), buckets)


def cross_parts(features, spec: fs.FeatureSpec, columns: Sequence[str],
                oov_buckets: int = DEFAULT_OOV_BUCKETS,
                default_hash_buckets: int = DEFAULT_HASH_BUCKETS) -> List[Ids]:
  """The ids a cross combines: bucket ids of numeric columns, ids of categorical ones.

  Args:
    features: the TABLE feature dict.
    spec: the dataset's spec.
    columns: the crossed column names.
    oov_buckets: see categorical_ids.
    default_hash_buckets: see categorical_ids.

  Returns:
    One Ids per column, in order (for cross_ids).

  Raises:
    TableInputError: a name is no column, or a text column.
  """
  parts = []
  for name in columns:
    try:
      feature = spec.feature(name)
    except KeyError:
      known = [f.name for f in spec.features if f.role in (fs.NUMERIC, fs.CATEGORICAL)]
      raise TableInputError(f"cross {CROSS_SEPARATOR.join(columns)!r}: no column {name!r}"
                            f"{errors.did_you_mean(name, known)}; the table's numeric and "
                            f"categorical columns are {', '.join(known)}") from None
    if feature.role == fs.NUMERIC:
      parts.append(bucket_ids(features, feature))
    elif feature.role == fs.CATEGORICAL:
      parts.append(categorical_ids(features, spec, feature, oov_buckets, default_hash_buckets))
    else:
      raise TableInputError(f"cross {CROSS_SEPARATOR.join(columns)!r}: column {name!r} is "
                            f"{feature.role}; crosses take numeric (bucketized) and "
                            f"categorical columns")
  return parts


# --- Builders ---------------------------------------------------------------------------------


def combine(vectors: tf.Tensor, mask: Optional[tf.Tensor], combiner: str) -> tf.Tensor:
  """Combines each row's vectors over its unmasked positions.

  Args:
    vectors: float [B, N, D].
    mask: bool [B, N], False where a position is padding; None: none is.
    combiner: "sum", "mean" (sum / count) or "sqrtn" (sum / sqrt(count)); a row without any
      unmasked position gives zeros.

  Returns:
    float [B, D], the dtype of `vectors`.

  Raises:
    ValueError: an unknown combiner.
  """
  if mask is None:
    total = tf.reduce_sum(vectors, axis=1)
    count = tf.cast(tf.shape(vectors)[1], vectors.dtype)
  else:
    m = tf.cast(mask, vectors.dtype)[..., tf.newaxis]
    total = tf.reduce_sum(vectors * m, axis=1)
    count = tf.reduce_sum(m, axis=1)
  if combiner == "sum":
    return total
  if combiner == "mean":
    return total / tf.maximum(count, 1.0)
  if combiner == "sqrtn":
    return total / tf.sqrt(tf.maximum(count, 1.0))
  raise ValueError(f"unknown combiner {combiner!r}; known: {', '.join(COMBINERS)}")


def _embedded(ids: Ids, dim: int, scope: str, combiner: str) -> tf.Tensor:
  """float32 [B, dim]: the combined tf.keras Embedding `scope` of one column's ids."""
  vectors = tf.keras.layers.Embedding(ids.size, dim, name=scope)(ids.ids)
  return tf.cast(combine(tf.cast(vectors, tf.float32), ids.mask, combiner), tf.float32)


def deep_input(features, spec: fs.FeatureSpec, *, embedding_dim: int = 0,
               combiner: str = "mean", oov_buckets: int = DEFAULT_OOV_BUCKETS,
               default_hash_buckets: int = DEFAULT_HASH_BUCKETS,
               text_hash_buckets: int = DEFAULT_TEXT_HASH_BUCKETS,
               name: str = "input") -> tf.Tensor:
  """The dense input of a deep model on a table: one float32 vector per example.

  Args:
    features: the TABLE feature dict (spec.serving_signature's keys; no label or weight).
    spec: the dataset's spec (kind TABLE).
    embedding_dim: width of every categorical and text embedding; 0: auto_embedding_dim of
      each column's id count.
    combiner: how a multivalent column's embeddings combine ("mean", "sum", "sqrtn"); text
      always takes the mean.
    oov_buckets: see categorical_ids.
    default_hash_buckets: see categorical_ids.
    text_hash_buckets: see text_ids.
    name: the name scope of the embeddings (`<scope>/<name>/<column>/embeddings`).

  Returns:
    float32 [B, D], in spec order: per numeric column its normalized values [size] (then its
    missing indicators [size], where it has them); per categorical / text column its
    embedding [dim].

  Raises:
    ValueError: embedding_dim < 0 or an unknown combiner.
  """
  if embedding_dim < 0:
    raise ValueError(f"embedding_dim must be >= 0 (0: auto); got {embedding_dim}")
  if combiner not in COMBINERS:
    raise ValueError(f"unknown combiner {combiner!r}; known: {', '.join(COMBINERS)}")
  scopes = dict(zip((f.name for f in spec.features),
                    scope_names([f.name for f in spec.features])))
  parts = []
  with exact_scope(name):
    for feature in spec.features:
      if feature.role == fs.NUMERIC:
        z, indicator = normalized(features, feature)
        parts.append(z)
        if indicator is not None:
          parts.append(indicator)
        continue
      if feature.role == fs.CATEGORICAL:
        ids, how = categorical_ids(features, spec, feature, oov_buckets,
                                   default_hash_buckets), combiner
      elif feature.role == fs.TEXT:
        ids, how = text_ids(features, feature, text_hash_buckets), "mean"
      else:
        continue
      dim = embedding_dim or auto_embedding_dim(ids.size)
      parts.append(_embedded(ids, dim, scopes[feature.name], how))
  return tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]


def _zeros_variable(shape: Sequence[int], name: str) -> tf.Variable:
  return tf.Variable(tf.zeros(shape, tf.float32), name=name)


def _summed_weights(ids: Ids, units: int, name: str) -> tf.Tensor:
  """float32 [B, units]: the sum of the weight rows of a row's valid ids (a gather, sparse
  gradients)."""
  weights = _zeros_variable([ids.size, units], name)
  rows = tf.nn.embedding_lookup(weights, ids.ids)
  return combine(rows, ids.mask, "sum")


def linear_logits(features, spec: fs.FeatureSpec, units: int, *,
                  crosses: Sequence[Sequence[str]] = (),
                  cross_buckets: int = DEFAULT_CROSS_BUCKETS, numeric_values: bool = True,
                  oov_buckets: int = DEFAULT_OOV_BUCKETS,
                  default_hash_buckets: int = DEFAULT_HASH_BUCKETS,
                  text_hash_buckets: int = DEFAULT_TEXT_HASH_BUCKETS) -> tf.Tensor:
  """A linear model on a table: summed sparse weights of every column's ids, plus a bias.

  Variables, under the current name scope (all zeros at first): `<col>/weights` [ids, units]
  per categorical and text column; per numeric column `<col>/weights` [size (+ size for the
  missing indicators), units] on its normalized values (with numeric_values) and
  `<col>/bucket_weights` [ids, units] on its bucket ids; `<a>_X_<b>/weights`
  [cross_buckets, units] per cross; `bias` [units].

  Args:
    features: the TABLE feature dict (no label or weight).
    spec: the dataset's spec (kind TABLE).
    units: the output width (spec.logits_dimension).
    crosses: tuples of two or more numeric / categorical column names.
    cross_buckets: hash buckets of every cross.
    numeric_values: also weigh the normalized numeric values and missing indicators (False:
      numerics enter through their buckets only, as the wide part of a wide-and-deep model).
    oov_buckets: see categorical_ids.
    default_hash_buckets: see categorical_ids.
    text_hash_buckets: see text_ids.

  Returns:
    float32 [B, units].

  Raises:
    TableInputError: a cross names an unknown or a text column.
  """
  crosses = [tuple(c) for c in crosses]
  for c in crosses:
    parse_cross(CROSS_SEPARATOR.join(c))  # two or more distinct names
  scopes = scope_names([f.name for f in spec.features] + [cross_name(c) for c in crosses],
                       _LINEAR_RESERVED)
  terms = []
  for feature, scope in zip(spec.features, scopes):
    with exact_scope(scope):
      if feature.role == fs.NUMERIC:
        if numeric_values:
          z, indicator = normalized(features, feature)
          x = z if indicator is None else tf.concat([z, indicator], axis=1)
          weights = _zeros_variable([x.shape[-1], units], "weights")
          terms.append(tf.matmul(x, weights))
        terms.append(_summed_weights(bucket_ids(features, feature), units, "bucket_weights"))
      elif feature.role == fs.CATEGORICAL:
        terms.append(_summed_weights(
            categorical_ids(features, spec, feature, oov_buckets, default_hash_buckets), units,
            "weights"))
      elif feature.role == fs.TEXT:
        terms.append(_summed_weights(text_ids(features, feature, text_hash_buckets), units,
                                     "weights"))
  for columns, scope in zip(crosses, scopes[len(spec.features):]):
    parts = cross_parts(features, spec, columns, oov_buckets, default_hash_buckets)
    with exact_scope(scope):
      terms.append(_summed_weights(cross_ids(parts, cross_buckets), units, "weights"))
  bias = _zeros_variable([units], "bias")
  return tf.add_n(terms) + bias  # every column makes a term, and a table has one at least
