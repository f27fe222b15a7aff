"""One feature spec per dataset: the single source of truth for writer, reader and server.

The writer encodes examples with `FeatureSpec.encode`, the input_fn parses batches with
`FeatureSpec.parse_batch`, and the serving receiver accepts tensors shaped by
`FeatureSpec.serving_signature`. The spec is stored inside the dataset's `manifest.json`, so a
dataset directory describes itself.

Encodings:
  * `raw`: the array's bytes (C order) in one `bytes_list`; parsed with `tf.io.decode_raw`.
    Compact and fast for fixed-shape uint8/float32 tensors such as images.
  * `int64_list` / `float_list`: a fixed-length list of numbers (token ids, numeric columns).
  * `bytes_list`: strings (categorical values, text), UTF-8.

Two shapes of dataset:
  * One primary tensor (kinds IMAGE, TOKENS, VECTOR): `input_key` names it; every feature is
    fixed-shape and always present.
  * A table (kind TABLE): many named columns, each with a `role`:
      numeric      float32, fixed shape (usually [1]); missing -> absent from the Example,
                   parsed as NaN, so the model's preprocessing sees which values are missing
                   (model_fns/tabular.py turns NaN into the mean plus a missing indicator).
      categorical  string or int64 values: one per example (shape [1]; missing -> "" / -1), or
                   `multivalent`: up to K per example (shape [K], K the most the converter saw
                   in one example), parsed dense [B, K] padded with "" / -1 (an Example with
                   more values at serving time is cut to its first K).
      text         one string (missing -> "").
    `stats` is what the converter's analyze phase measured on the TRAIN split
    (input_fns/analyze.py: mean, std, quantiles; vocabulary size and top values) and
    `vocabulary` names the feature's vocabulary file among the dataset's assets (one value per
    line, most frequent first; line number = id). `hash_buckets` > 0 hashes values instead.

The label follows `label_kind`: MULTICLASS and BINARY labels are int64 class ids named by
`label_names`; REGRESSION labels are float32 (no label names). `weight_key`, when set, is an
optional float32 per-example weight stored under WEIGHT_KEY (default 1.0 when absent).
"""

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from input_fns import errors
from input_fns import input_kinds
from input_fns import records

LABEL_KEY = "label"
WEIGHT_KEY = "weight"

# Kinds of primary input (input_fns/input_kinds.py); models use them to decide how to read the
# input.
IMAGE = input_kinds.IMAGE
TOKENS = input_kinds.TOKENS
VECTOR = input_kinds.VECTOR
TABLE = input_kinds.TABLE
MULTICLASS = input_kinds.MULTICLASS
BINARY = input_kinds.BINARY
REGRESSION = input_kinds.REGRESSION

# Roles of TABLE features ("" is a plain fixed tensor of a single-input dataset).
NUMERIC = input_kinds.NUMERIC
CATEGORICAL = input_kinds.CATEGORICAL
TEXT = input_kinds.TEXT
ROLES = input_kinds.ROLES

_KINDS = input_kinds.KINDS
_ENCODINGS = ("raw", "int64_list", "float_list", "bytes_list")
_DTYPES = {"uint8": tf.uint8, "float32": tf.float32, "int64": tf.int64, "string": tf.string}
# The value a TABLE feature takes when an Example lacks it.
_MISSING = {"float32": float("nan"), "int64": -1, "string": b""}


class SpecError(errors.UserInputError):
  """A feature spec, or a value checked against one, is malformed."""


@dataclasses.dataclass(frozen=True)
class Feature:
  """One feature of an example.

  Attributes:
    name: key in the tf.Example and in the features dict.
    dtype: "uint8", "float32", "int64" or "string".
    shape: fixed shape of one example's value ([1] for a scalar table column).
    encoding: "raw", "int64_list", "float_list" or "bytes_list" (see module docstring).
    role: "" for the fixed tensors of single-input datasets; NUMERIC, CATEGORICAL or TEXT for
      the columns of a TABLE (see module docstring).
    multivalent: a CATEGORICAL column with any number of values per example.
    stats: the analyze phase's statistics of the column (input_fns/analyze.py JSON), or None.
    vocabulary: asset file name of the column's vocabulary ("" for none).
    hash_buckets: > 0: categorical values are hashed into this many buckets (no vocabulary).
  """
  name: str
  dtype: str
  shape: Tuple[int, ...]
  encoding: str = "raw"
  role: str = ""
  multivalent: bool = False
  stats: Optional[Mapping[str, Any]] = dataclasses.field(default=None, compare=False, hash=False)
  vocabulary: str = ""
  hash_buckets: int = 0

  def __post_init__(self):
    where = f"feature {self.name!r}"
    if self.dtype not in _DTYPES:
      raise SpecError(f"{where}: dtype {self.dtype!r} is not one of {sorted(_DTYPES)}")
    if self.encoding not in _ENCODINGS:
      raise SpecError(f"{where}: encoding {self.encoding!r} is not one of {_ENCODINGS}")
    if self.encoding == "int64_list" and self.dtype != "int64":
      raise SpecError(f"{where}: int64_list needs dtype int64, got {self.dtype}")
    if self.encoding == "float_list" and self.dtype != "float32":
      raise SpecError(f"{where}: float_list needs dtype float32, got {self.dtype}")
    if (self.encoding == "bytes_list") != (self.dtype == "string"):
      raise SpecError(f"{where}: dtype string goes with encoding bytes_list (got {self.dtype}, "
                      f"{self.encoding})")
    if not self.shape or any(int(d) < 1 for d in self.shape):
      raise SpecError(f"{where}: shape must be non-empty and positive, got {self.shape}")
    object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
    if self.role not in ROLES:
      raise SpecError(f"{where}: role {self.role!r} is not one of {ROLES[1:]}")
    if self.role == "" and (self.dtype == "string" or self.multivalent or self.vocabulary
                            or self.hash_buckets):
      raise SpecError(f"{where}: strings, multivalent values, vocabularies and hashing need a "
                      f"table column role ({', '.join(ROLES[1:])})")
    if self.role == NUMERIC and self.dtype != "float32":
      raise SpecError(f"{where}: a numeric column is float32, got {self.dtype}")
    if self.role == CATEGORICAL and self.dtype not in ("string", "int64"):
      raise SpecError(f"{where}: a categorical column is string or int64, got {self.dtype}")
    if self.role == TEXT and self.dtype != "string":
      raise SpecError(f"{where}: a text column is string, got {self.dtype}")
    if self.role and self.encoding == "raw":
      raise SpecError(f"{where}: table columns are stored as lists, not raw bytes")
    if self.multivalent and (self.role != CATEGORICAL or len(self.shape) != 1):
      raise SpecError(f"{where}: only a categorical column of shape [K] (K = the most values "
                      f"one example holds) can be multivalent")
    if self.hash_buckets < 0 or (self.hash_buckets and self.vocabulary):
      raise SpecError(f"{where}: hash_buckets must be >= 0 and exclusive with a vocabulary")
    if (self.vocabulary or self.hash_buckets) and self.role != CATEGORICAL:
      raise SpecError(f"{where}: only categorical columns have a vocabulary or hash buckets")
    if self.stats is not None:
      object.__setattr__(self, "stats", dict(self.stats))

  @property
  def missing_value(self):
    """What a TABLE column parses to when an Example lacks it (NaN, -1 or b"")."""
    return _MISSING[self.dtype]

  @property
  def size(self) -> int:
    return int(np.prod(self.shape))

  @property
  def tf_dtype(self) -> tf.DType:
    return _DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """Everything a reader, a model or a server needs to know about a dataset's examples.

  Attributes:
    features: the input features, in order; `input_key` names the primary one.
    input_key: the feature models read (e.g. "image"); "" for a TABLE (models read every
      column by its role).
    kind: IMAGE, TOKENS, VECTOR or TABLE: how models interpret the features.
    label_names: one name per class; the label is an int64 in [0, num_classes). Empty for
      REGRESSION.
    value_range: (low, high) of raw input values, used by scaling presets (images).
    vocab_size: number of token ids including padding 0 and OOV (TOKENS only).
    label_kind: MULTICLASS, BINARY (2 classes, class 1 positive) or REGRESSION.
    weight_key: name of the source column that gave per-example weights ("" for none); the
      weights are stored under WEIGHT_KEY.
    label_stats: the analyze phase's statistics of a REGRESSION label, or None.
    assets_dir: where the vocabulary files are (the dataset directory; set when a manifest is
      read, never stored).
  """
  features: Tuple[Feature, ...]
  input_key: str
  kind: str
  label_names: Tuple[str, ...]
  value_range: Optional[Tuple[float, float]] = None
  vocab_size: Optional[int] = None
  label_kind: str = MULTICLASS
  weight_key: str = ""
  label_stats: Optional[Mapping[str, Any]] = dataclasses.field(default=None, compare=False,
                                                              hash=False)
  assets_dir: str = dataclasses.field(default="", compare=False, hash=False)

  def __post_init__(self):
    object.__setattr__(self, "features", tuple(self.features))
    object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))
    if self.value_range is not None:
      object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
    names = [f.name for f in self.features]
    if len(set(names)) != len(names) or LABEL_KEY in names or WEIGHT_KEY in names:
      raise SpecError(f"feature names must be unique and not {LABEL_KEY!r} or {WEIGHT_KEY!r}: "
                      f"{names}")
    if self.kind not in _KINDS:
      raise SpecError(f"kind {self.kind!r} is not one of {_KINDS}")
    if self.kind == TABLE:
      if self.input_key:
        raise SpecError(f"a TABLE spec has no input_key (got {self.input_key!r})")
      if not self.features:
        raise SpecError("a TABLE spec needs at least one column")
      plain = [f.name for f in self.features if not f.role]
      if plain:
        raise SpecError(f"every column of a TABLE spec needs a role; {plain} have none")
    else:
      if self.input_key not in names:
        raise SpecError(f"input_key {self.input_key!r} is not a feature: {names}")
      roles = [f.name for f in self.features if f.role]
      if roles:
        raise SpecError(f"feature roles are for TABLE specs; {roles} have one in a {self.kind} "
                        f"spec")
    if self.label_kind not in input_kinds.LABEL_KINDS:
      raise SpecError(f"label_kind {self.label_kind!r} is not one of {input_kinds.LABEL_KINDS}")
    if self.label_kind == REGRESSION:
      if self.label_names:
        raise SpecError(f"a regression label has no label_names (got {len(self.label_names)})")
    elif len(self.label_names) < 2:
      raise SpecError(f"need at least 2 classes, got {len(self.label_names)}")
    if self.label_kind == BINARY and len(self.label_names) != 2:
      raise SpecError(f"a binary label has exactly 2 classes, got {len(self.label_names)}")
    if self.kind == TOKENS and not self.vocab_size:
      raise SpecError("a TOKENS spec needs vocab_size")
    if self.label_stats is not None:
      object.__setattr__(self, "label_stats", dict(self.label_stats))

  @property
  def num_classes(self) -> int:
    """C for MULTICLASS and BINARY labels; 0 for REGRESSION."""
    return len(self.label_names)

  @property
  def logits_dimension(self) -> int:
    """Width of a model's output: C (MULTICLASS), 1 (BINARY: the positive logit) or 1
    (REGRESSION)."""
    return self.num_classes if self.label_kind == MULTICLASS else 1

  @property
  def is_table(self) -> bool:
    return self.kind == TABLE

  def columns(self, role: str) -> Tuple[Feature, ...]:
    """The TABLE columns of one role, in spec order."""
    return tuple(f for f in self.features if f.role == role)

  def vocabulary_path(self, feature: Feature) -> str:
    """The vocabulary file of a categorical column, in `assets_dir`.

    Raises:
      SpecError: the column has no vocabulary, or the spec was not read from a dataset.
    """
    if not feature.vocabulary:
      raise SpecError(f"feature {feature.name!r} has no vocabulary")
    if not self.assets_dir:
      raise SpecError(f"feature {feature.name!r}: the spec was not read from a dataset "
                      f"directory, so its vocabulary file {feature.vocabulary!r} has no location")
    return self.assets_dir.rstrip("/") + "/" + feature.vocabulary

  @property
  def input_feature(self) -> Feature:
    if self.kind == TABLE:
      raise SpecError("a TABLE spec has no single input feature; read its columns by role")
    return self.feature(self.input_key)

  def feature(self, name: str) -> Feature:
    for f in self.features:
      if f.name == name:
        return f
    raise KeyError(name)

  # --- JSON -------------------------------------------------------------------------------------

  def to_json_dict(self) -> Dict[str, Any]:
    """JSON of the spec; fields at their defaults are left out of the features and the spec
    (so specs written before TABLE support keep their exact bytes and fingerprints)."""
    d = {"features": [_feature_json(f) for f in self.features], "input_key": self.input_key,
         "kind": self.kind, "label_names": list(self.label_names),
         "value_range": list(self.value_range) if self.value_range is not None else None,
         "vocab_size": self.vocab_size}
    if self.label_kind != MULTICLASS:
      d["label_kind"] = self.label_kind
    if self.weight_key:
      d["weight_key"] = self.weight_key
    if self.label_stats is not None:
      d["label_stats"] = dict(self.label_stats)
    return d

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any], assets_dir: str = "") -> "FeatureSpec":
    try:
      return cls(
          features=tuple(Feature(**f) for f in d["features"]),
          input_key=d["input_key"],
          kind=d["kind"],
          label_names=tuple(d["label_names"]),
          value_range=d.get("value_range"),
          vocab_size=d.get("vocab_size"),
          label_kind=d.get("label_kind", MULTICLASS),
          weight_key=d.get("weight_key", ""),
          label_stats=d.get("label_stats"),
          assets_dir=assets_dir)
    except (KeyError, TypeError) as e:
      raise SpecError(f"malformed feature spec ({type(e).__name__}: {e})") from e

  def to_json(self) -> str:
    return json.dumps(self.to_json_dict(), sort_keys=True)

  # --- Writing ----------------------------------------------------------------------------------

  def encode(self, values: Mapping[str, Any], label) -> bytes:
    """Serializes one example.

    Args:
      values: feature name -> array of the feature's shape (cast to its dtype exactly). TABLE
        columns: a number (NaN = missing) or an array of the column's shape; a categorical or
        text value (None, or "" / -1 for a categorical, = missing); a list of values for a
        multivalent column. With a weight_key, WEIGHT_KEY -> the example's weight (>= 0).
      label: class index in [0, num_classes), or a finite float for REGRESSION.

    Returns:
      A serialized tf.train.Example.

    Raises:
      SpecError: a feature is missing, has the wrong shape, or does not fit its dtype;
        or the label is out of range.
    """
    feats = {LABEL_KEY: self._label_feature(label)}
    if self.weight_key:
      feats[WEIGHT_KEY] = _weight_feature(values.get(WEIGHT_KEY, 1.0))
    for f in self.features:
      if f.role:
        feature = _table_feature(f, values)
        if feature is not None:
          feats[f.name] = feature
        continue
      if f.name not in values:
        raise SpecError(f"feature {f.name!r} is missing")
      arr = np.asarray(values[f.name])
      if arr.shape != f.shape:
        raise SpecError(f"feature {f.name!r}: expected shape {f.shape}, got {arr.shape}")
      cast = arr.astype(f.dtype)
      if not np.array_equal(cast, arr):
        raise SpecError(f"feature {f.name!r}: values do not fit dtype {f.dtype} exactly")
      if f.encoding == "raw":
        feats[f.name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(cast).tobytes()]))
      elif f.encoding == "int64_list":
        feats[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=cast.ravel()))
      else:
        feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=cast.ravel()))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()

  def _label_feature(self, label) -> tf.train.Feature:
    if self.label_kind == REGRESSION:
      target = float(label)
      if not np.isfinite(target) or not np.isfinite(np.float32(target)):
        raise SpecError(f"regression label {label!r} is not a finite float32")
      return tf.train.Feature(float_list=tf.train.FloatList(value=[target]))
    label = int(label)
    if not 0 <= label < self.num_classes:
      raise SpecError(f"label {label} is out of range [0, {self.num_classes})")
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))

  # --- Reading ----------------------------------------------------------------------------------

  def parsing_spec(self, with_label: bool = True) -> Dict[str, Any]:
    spec = {}
    for f in self.features:
      if f.multivalent:
        spec[f.name] = tf.io.VarLenFeature(f.tf_dtype)
      elif f.role:
        spec[f.name] = tf.io.FixedLenFeature([f.size], f.tf_dtype,
                                             default_value=[f.missing_value] * f.size)
      elif f.encoding == "raw":
        spec[f.name] = tf.io.FixedLenFeature([], tf.string)
      else:
        spec[f.name] = tf.io.FixedLenFeature([f.size], f.tf_dtype)
    if with_label:
      spec[LABEL_KEY] = tf.io.FixedLenFeature(
          [], tf.float32 if self.label_kind == REGRESSION else tf.int64)
      if self.weight_key:
        spec[WEIGHT_KEY] = tf.io.FixedLenFeature([], tf.float32, default_value=1.0)
    return spec

  def parse_batch(self, serialized: tf.Tensor, with_label: bool = True):
    """Parses a batch of serialized examples in one vectorized op.

    Args:
      serialized: string tensor of shape [batch].
      with_label: whether examples carry a label (serving requests do not).

    Returns:
      (features, labels): features maps each feature name to a tensor of shape
      [batch] + feature.shape in the feature's dtype (a multivalent column's values padded with
      its missing value), plus WEIGHT_KEY -> float32 [batch]
      when the spec has a weight_key and `with_label`; labels is int64 [batch] (float32 for
      REGRESSION; None without).
    """
    parsed = tf.io.parse_example(serialized, self.parsing_spec(with_label))
    features = {}
    for f in self.features:
      value = parsed[f.name]
      if f.multivalent:
        dense = tf.sparse.to_dense(value, default_value=f.missing_value)[:, :f.size]
        dense = tf.pad(dense, [[0, 0], [0, f.size - tf.shape(dense)[1]]],
                       constant_values=f.missing_value)
        features[f.name] = tf.ensure_shape(dense, [None, f.size])
        continue
      if f.encoding == "raw":
        value = tf.io.decode_raw(value, f.tf_dtype, fixed_length=f.size * f.tf_dtype.size)
      features[f.name] = tf.reshape(value, [-1, *f.shape])
    if with_label and self.weight_key:
      features[WEIGHT_KEY] = parsed[WEIGHT_KEY]
    return features, (parsed[LABEL_KEY] if with_label else None)

  # --- Serving ----------------------------------------------------------------------------------

  def serving_signature(self) -> Dict[str, tf.TensorSpec]:
    """TensorSpecs of the raw-tensor serving input: [None] + shape per feature ([None, None]
    for a multivalent column)."""
    return {f.name: tf.TensorSpec([None, None] if f.multivalent else [None, *f.shape],
                                  f.tf_dtype, name=f.name) for f in self.features}


def _feature_json(f: Feature) -> Dict[str, Any]:
  d = {"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "encoding": f.encoding}
  for field in dataclasses.fields(Feature):
    if field.name not in d and getattr(f, field.name) != field.default:
      d[field.name] = getattr(f, field.name)
  return d


def _weight_feature(weight) -> tf.train.Feature:
  w = float(weight)
  if not np.isfinite(w) or w < 0:
    raise SpecError(f"example weight {weight!r} is not a finite number >= 0")
  return tf.train.Feature(float_list=tf.train.FloatList(value=[w]))


def _table_feature(f: Feature, values: Mapping[str, Any]) -> Optional[tf.train.Feature]:
  if f.name not in values:
    raise SpecError(f"feature {f.name!r} is missing (pass None for a missing value)")
  try:
    stored = records.table_values(f, values[f.name])
  except records.EncodeError as e:
    raise SpecError(str(e)) from None
  if stored is None:
    return None
  if f.dtype == "float32":
    return tf.train.Feature(float_list=tf.train.FloatList(value=stored))
  if f.dtype == "int64":
    return tf.train.Feature(int64_list=tf.train.Int64List(value=stored))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=stored))


def _shown(feature: Feature, attr: str) -> str:
  value = getattr(feature, attr)
  return "[" + ", ".join(str(d) for d in value) + "]" if attr == "shape" else str(value)


def describe_difference(old: FeatureSpec, new: FeatureSpec) -> str:
  """How `new` differs from `old`, in one line for an error message ("" if they are equal).

  E.g. "feature 'image' shape [8, 8, 1] -> [4, 4, 1]; label_names 10 -> 5 classes": features
  added or removed, each shared feature's dtype/shape/encoding, then the spec's other fields,
  old -> new.
  """
  parts = []
  old_features = {f.name: f for f in old.features}
  new_features = {f.name: f for f in new.features}
  added = [n for n in new_features if n not in old_features]
  removed = [n for n in old_features if n not in new_features]
  if added:
    parts.append(f"features added: {', '.join(map(repr, added))}")
  if removed:
    parts.append(f"features removed: {', '.join(map(repr, removed))}")
  for name, a in old_features.items():
    b = new_features.get(name)
    if b is None:
      continue
    changes = [f"{attr} {_shown(a, attr)} -> {_shown(b, attr)}"
               for attr in ("dtype", "shape", "encoding", "role", "multivalent", "vocabulary",
                            "hash_buckets") if getattr(a, attr) != getattr(b, attr)]
    if changes:
      parts.append(f"feature {name!r} {', '.join(changes)}")
  if not added and not removed and list(old_features) != list(new_features):
    parts.append(f"feature order {list(old_features)} -> {list(new_features)}")
  for attr in ("input_key", "kind", "value_range", "vocab_size", "label_kind", "weight_key"):
    if getattr(old, attr) != getattr(new, attr):
      parts.append(f"{attr} {getattr(old, attr)!r} -> {getattr(new, attr)!r}")
  if old.num_classes != new.num_classes:
    parts.append(f"label_names {old.num_classes} -> {new.num_classes} classes")
  elif old.label_names != new.label_names:
    renamed = [f"{a!r} -> {b!r}" for a, b in zip(old.label_names, new.label_names) if a != b]
    parts.append(f"label_names: {len(renamed)} of {old.num_classes} renamed "
                 f"({', '.join(renamed[:3])}{', ...' if len(renamed) > 3 else ''})")
  return "; ".join(parts)


def image_spec(height: int, width: int, channels: int, label_names: Sequence[str],
               value_range: Tuple[float, float] = (0, 255)) -> FeatureSpec:
  """The spec of an image classification dataset stored as raw uint8 pixels."""
  return FeatureSpec(
      features=(Feature("image", "uint8", (height, width, channels), "raw"),),
      input_key="image",
      kind=IMAGE,
      label_names=tuple(label_names),
      value_range=value_range)


def vector_spec(dim: int, label_names: Sequence[str], name: str = "vector") -> FeatureSpec:
  """The spec of a dataset of [dim] float32 feature vectors (e.g. numeric CSV columns)."""
  return FeatureSpec(
      features=(Feature(name, "float32", (dim,), "float_list"),),
      input_key=name,
      kind=VECTOR,
      label_names=tuple(label_names))


def table_spec(columns: Sequence[Feature], label_names: Sequence[str] = (),
               label_kind: str = MULTICLASS, weight_key: str = "",
               label_stats: Optional[Mapping[str, Any]] = None) -> FeatureSpec:
  """The spec of a table: named columns, each with a role (see the module docstring)."""
  return FeatureSpec(features=tuple(columns), input_key="", kind=TABLE,
                     label_names=tuple(label_names), label_kind=label_kind,
                     weight_key=weight_key, label_stats=label_stats)


def numeric_column(name: str, shape: Tuple[int, ...] = (1,), stats=None) -> Feature:
  return Feature(name, "float32", shape, "float_list", role=NUMERIC, stats=stats)


def categorical_column(name: str, dtype: str = "string", multivalent: bool = False,
                       vocabulary: str = "", hash_buckets: int = 0, stats=None,
                       max_values: Optional[int] = None) -> Feature:
  """A categorical column; a multivalent one holds up to `max_values` values per example.

  Raises:
    SpecError: multivalent without max_values (or max_values without multivalent).
  """
  if multivalent != (max_values is not None):
    raise SpecError(f"feature {name!r}: a multivalent column needs max_values (the most values "
                    f"one example holds), and only a multivalent one has it")
  return Feature(name, dtype, (max_values or 1,),
                 "bytes_list" if dtype == "string" else "int64_list", role=CATEGORICAL,
                 multivalent=multivalent, vocabulary=vocabulary, hash_buckets=hash_buckets,
                 stats=stats)


def text_column(name: str, stats=None) -> Feature:
  return Feature(name, "string", (1,), "bytes_list", role=TEXT, stats=stats)


def token_spec(max_length: int, vocab_size: int, label_names: Sequence[str],
               name: str = "tokens") -> FeatureSpec:
  """The spec of a text dataset: [max_length] int64 token ids, 0 = padding, 1 = unknown."""
  return FeatureSpec(
      features=(Feature(name, "int64", (max_length,), "int64_list"),),
      input_key=name,
      kind=TOKENS,
      label_names=tuple(label_names),
      vocab_size=vocab_size)
