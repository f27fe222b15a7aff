"""The analyze phase of TensorFlow Transform: per-column statistics in bounded memory.

The tabular converter streams the TRAIN split in batches of columns and feeds each column batch
to an accumulator; `result()` then gives JSON-able statistics that go into the dataset manifest
and drive in-graph preprocessing (normalization from mean/std, bucketization by quantiles,
vocabulary lookup). Accumulators of the same column built by parallel workers combine with
`merge`, so a column can be analyzed in pieces.

Entry points:
  * `NumericAccumulator` -> `NumericStats`: count, missing, mean, std, min, max, quantile
    boundaries, and whether every value is integral.
  * `CategoricalAccumulator` -> `CategoricalStats`: counts, missing, distinct values and the
    vocabulary (most frequent first).
  * `write_vocabulary` / `read_vocabulary`: the vocabulary asset that
    `tf.lookup.TextFileInitializer` reads (line number = id).
  * `summary_line`: one line per column for the converter's summary.

Memory per column is bounded by the options, not by the number of rows: a numeric column keeps
`sample_size` sampled values, a categorical column at most 1.5 * `max_tracked` counters (plus
the distinct values of the batch being added).
"""

import collections
import dataclasses
import math
import operator
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from input_fns import errors

# How many of the most frequent categories CategoricalStats.to_json_dict keeps for summaries.
SUMMARY_TOP = 10
# The line length summary_line keeps to, and the width its column name is padded to.
_SUMMARY_WIDTH = 110
_NAME_WIDTH = 14
_NAME_MAX = 30

# Once more than max_tracked categories are held, the counters are cut back to max_tracked only
# when they exceed max_tracked by this share: a cut costs a pass over every counter, and cutting
# after each batch would make a column with many rare values quadratic.
_CUT_SLACK = 0.5

_MULTI_VALUED_TYPES = (list, tuple, np.ndarray)


class AnalyzeError(errors.UserInputError):
  """A column cannot be analyzed (a value that is not finite or not a category), or analyze
  options or stored statistics are malformed; the message names the column or field."""


def _check_int(owner: str, field: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise AnalyzeError(f"{owner}.{field} must be an int >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class AnalyzeOptions:
  """How much the analyzers keep, and so how exact their results are.

  Attributes:
    num_quantiles: buckets for bucketization; the boundaries are the num_quantiles - 1 interior
      quantiles.
    sample_size: values kept by the reservoir sample quantiles are computed from; quantiles are
      exact for columns of at most this many values.
    vocab_top_k: at most this many categories go into a vocabulary (most frequent first).
    vocab_min_count: categories seen fewer times stay out of the vocabulary.
    max_tracked: distinct categories counted exactly; beyond, counts are approximate
      (Misra-Gries) so memory stays bounded.
    seed: seeds the reservoir sample; the same seed and input order give the same sample.
  """
  num_quantiles: int = 10
  sample_size: int = 100_000
  vocab_top_k: int = 100_000
  vocab_min_count: int = 1
  max_tracked: int = 1_000_000
  seed: int = 0

  def __post_init__(self):
    _check_int("AnalyzeOptions", "num_quantiles", self.num_quantiles, 2)
    for field in ("sample_size", "vocab_top_k", "vocab_min_count", "max_tracked"):
      _check_int("AnalyzeOptions", field, getattr(self, field), 1)
    _check_int("AnalyzeOptions", "seed", self.seed, 0)


# --- numeric columns ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NumericStats:
  """What the analyzer learned about a numeric column.

  Attributes:
    count: non-missing values.
    missing: missing values (NaN).
    mean: mean of the non-missing values; 0.0 when count == 0.
    std: population standard deviation; 0.0 when count <= 1 or the column is constant.
    min: smallest value; NaN when count == 0 (null in JSON).
    max: largest value; NaN when count == 0 (null in JSON).
    quantiles: bucket boundaries, strictly increasing: the interior quantiles
      k / num_quantiles, k = 1..num_quantiles-1, deduplicated (so fewer when the column has
      few distinct values; empty when count == 0). Exact when count <= sample_size, else from
      a uniform sample of sample_size values.
    is_integer: every non-missing value is integral (False when count == 0).
  """
  count: int
  missing: int
  mean: float
  std: float
  min: float
  max: float
  quantiles: Tuple[float, ...]
  is_integer: bool

  def __post_init__(self):
    _check_int("NumericStats", "count", self.count, 0)
    _check_int("NumericStats", "missing", self.missing, 0)
    object.__setattr__(self, "count", int(self.count))
    object.__setattr__(self, "missing", int(self.missing))
    for field in ("mean", "std", "min", "max"):
      object.__setattr__(self, field, float(getattr(self, field)))
    object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
    object.__setattr__(self, "is_integer", bool(self.is_integer))
    if any(b <= a for a, b in zip(self.quantiles, self.quantiles[1:])):
      raise AnalyzeError(f"NumericStats.quantiles must be strictly increasing, "
                         f"got {self.quantiles}")
    if not self.std >= 0.0:
      raise AnalyzeError(f"NumericStats.std must be >= 0, got {self.std}")

  @property
  def missing_fraction(self) -> float:
    """Share of values that are missing (0.0 for an empty column)."""
    total = self.count + self.missing
    return self.missing / total if total else 0.0

  def to_json_dict(self) -> Dict[str, Any]:
    """The stats as JSON-able values (min and max are null when count == 0)."""
    return {
        "count": self.count,
        "missing": self.missing,
        "mean": self.mean,
        "std": self.std,
        "min": None if math.isnan(self.min) else self.min,
        "max": None if math.isnan(self.max) else self.max,
        "quantiles": list(self.quantiles),
        "is_integer": self.is_integer,
    }

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> "NumericStats":
    """Inverse of to_json_dict.

    Raises:
      AnalyzeError: a field is missing or has the wrong type.
    """
    where = "numeric stats"
    try:
      quantiles = d["quantiles"]
      if not isinstance(quantiles, (list, tuple)):
        raise AnalyzeError(f"malformed {where}: quantiles must be a list, got {quantiles!r}")
      return cls(
          count=_json_int(d, "count", where),
          missing=_json_int(d, "missing", where),
          mean=_json_float(d, "mean", where),
          std=_json_float(d, "std", where),
          min=_json_float(d, "min", where, allow_null=True),
          max=_json_float(d, "max", where, allow_null=True),
          quantiles=tuple(_json_number(q, "quantiles", where) for q in quantiles),
          is_integer=_json_bool(d, "is_integer", where))
    except (KeyError, TypeError) as e:
      raise AnalyzeError(f"malformed {where} ({type(e).__name__}: {e})") from e


class NumericAccumulator:
  """Streams one numeric column: exact moments, sampled quantiles, bounded memory.

  Mean and variance use Chan et al.'s parallel combination of (count, mean, M2) in float64,
  with every moment taken about the first value seen, so a column around 1e9 with a small
  spread keeps its precision (the mean is off by at most about one float64 spacing).

  Quantiles come from a bottom-k sample: every value gets a seeded uniform key and the
  sample_size values with the smallest keys are kept. That is a uniform sample without
  replacement, the same whatever the batch sizes, and two samples merge exactly (the smallest
  keys of the union), each side weighted by the values it has seen.
  """

  def __init__(self, name: str, options: AnalyzeOptions):
    """Starts an empty accumulator.

    Args:
      name: the column, for error messages.
      options: sample_size and num_quantiles are read; seed seeds the sample.
    """
    self.name = name
    self.options = options
    self._rng = np.random.default_rng(options.seed)
    self._count = 0
    self._missing = 0
    # Moments are kept about the first value seen, so a column far from 0 loses no precision
    # to its offset; only the final mean adds it back.
    self._ref = 0.0
    self._mean = 0.0  # of (value - _ref)
    self._m2 = 0.0
    self._min = math.inf
    self._max = -math.inf
    self._is_integer = True
    self._keys = np.empty(0, np.float64)
    self._sample = np.empty(0, np.float64)

  def update(self, values: np.ndarray) -> None:
    """Adds one batch of the column; a failed update leaves the accumulator unchanged.

    Args:
      values: float or int array [n] (other shapes are flattened); NaN (or None in an object
        array) is a missing value. Values are taken as float64 (ints past 2**53 round).

    Raises:
      AnalyzeError: a value is infinite, or the values are not numbers.
    """
    raw = np.asarray(values)
    if raw.dtype.kind in "USc":
      raise AnalyzeError(f"column {self.name!r}: values are not numbers (dtype {raw.dtype})")
    integral_dtype = raw.dtype.kind in "biu"
    try:
      x = raw.astype(np.float64, copy=False).ravel()
    except (TypeError, ValueError) as e:
      raise AnalyzeError(f"column {self.name!r}: values are not numbers ({e})") from e
    missing = np.isnan(x)
    if missing.any():
      n_missing = int(missing.sum())
      present = np.flatnonzero(~missing)
      x = x[present]
    else:
      n_missing = 0
      present = None
    infinite = np.flatnonzero(np.isinf(x))
    if len(infinite):
      i = int(infinite[0])
      row = self._count + self._missing + (i if present is None else int(present[i]))
      raise AnalyzeError(f"column {self.name!r}: value {x[i]} is not finite "
                         f"(row {row} of the rows analyzed)")
    self._missing += n_missing
    if not len(x):
      return
    if not self._count:
      self._ref = float(x[0])
    deviations = x - self._ref
    batch_mean = float(deviations.mean())
    batch_m2 = float(np.square(deviations - batch_mean).sum())
    self._combine_moments(len(x), batch_mean, batch_m2, float(x.min()), float(x.max()))
    if self._is_integer and not integral_dtype:
      self._is_integer = bool(np.all(x == np.floor(x)))
    # One key per value, drawn in input order, so the sample does not depend on batch sizes.
    keys = self._rng.random(len(x))
    if len(self._keys) >= self.options.sample_size:
      keep = keys < self._keys.max()
      keys, x = keys[keep], x[keep]
    self._add_to_sample(keys, x)

  def merge(self, other: "NumericAccumulator") -> None:
    """Adds what another accumulator of the same column saw (e.g. a parallel worker's).

    Give parallel workers different seeds for independent samples; with the same seed the
    merged sample is still a valid one (each side contributes in proportion to its count).

    Args:
      other: an accumulator built with the same options (the seed may differ); it is not
        changed.

    Raises:
      TypeError: other is not a NumericAccumulator.
      ValueError: other was built with different options.
    """
    if not isinstance(other, NumericAccumulator):
      raise TypeError(f"cannot merge {type(other).__name__} into a NumericAccumulator")
    _check_mergeable(self.name, self.options, other.options)
    self._missing += other._missing
    if other._count:
      if not self._count:
        self._ref = other._ref
      self._combine_moments(other._count, (other._ref - self._ref) + other._mean, other._m2,
                            other._min, other._max)
      self._is_integer = self._is_integer and other._is_integer
      self._add_to_sample(other._keys, other._sample)

  def result(self) -> NumericStats:
    """The statistics of everything added so far (the accumulator can keep going)."""
    if not self._count:
      return NumericStats(count=0, missing=self._missing, mean=0.0, std=0.0, min=math.nan,
                          max=math.nan, quantiles=(), is_integer=False)
    if self._min == self._max:
      # Exactly constant: summing many copies of c and dividing need not give c back.
      mean, std = self._min, 0.0
    else:
      mean = min(max(self._ref + self._mean, self._min), self._max)
      std = math.sqrt(self._m2 / self._count) if self._count > 1 else 0.0
    k = self.options.num_quantiles
    probs = np.arange(1, k) / k
    quantiles = np.unique(np.quantile(self._sample, probs))
    return NumericStats(count=self._count, missing=self._missing, mean=mean, std=std,
                        min=self._min, max=self._max, quantiles=tuple(quantiles.tolist()),
                        is_integer=self._is_integer)

  def _combine_moments(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
    """Chan et al.: folds (n, mean about _ref, M2) of more values into the running ones."""
    total = self._count + n
    delta = mean - self._mean
    self._mean += delta * (n / total)
    self._m2 += m2 + delta * delta * (self._count * n / total)
    self._count = total
    self._min = min(self._min, lo)
    self._max = max(self._max, hi)

  def _add_to_sample(self, keys: np.ndarray, values: np.ndarray) -> None:
    """Keeps the sample_size values with the smallest keys among the sample and these."""
    if not len(keys):
      return
    keys = np.concatenate([self._keys, keys])
    values = np.concatenate([self._sample, values])
    k = self.options.sample_size
    if len(keys) > k:
      keep = np.argpartition(keys, k - 1)[:k]
      keys, values = keys[keep], values[keep]
    self._keys, self._sample = keys, values


# --- categorical columns --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CategoricalStats:
  """What the analyzer learned about a categorical column.

  Attributes:
    count: non-missing values (items, for multi-valued cells).
    missing: missing cells (None, "", NaN, or a list with no value).
    distinct: distinct values seen; a lower bound when `approximate`.
    approximate: more than max_tracked distinct values were seen, so counts are Misra-Gries
      lower bounds (each at most (count - sum of kept counts) / (max_tracked + 1) below the
      true count) and rare values may be missing from the vocabulary.
    vocabulary: the kept values (count >= vocab_min_count, at most vocab_top_k), most frequent
      first, ties broken by value (compared as strings); ints as decimal strings.
    counts: the count of each vocabulary value, same order.
    vocab_size: size of the full vocabulary. Equal to len(vocabulary) for stats from an
      accumulator; stats read back by from_json_dict hold only the SUMMARY_TOP most frequent
      values (the full vocabulary lives in its file, see write_vocabulary). None means
      len(vocabulary).
    cells: non-missing cells; differs from count only for multi-valued cells. None means count.
  """
  count: int
  missing: int
  distinct: int
  approximate: bool
  vocabulary: Tuple[str, ...]
  counts: Tuple[int, ...]
  vocab_size: Optional[int] = None
  cells: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
    object.__setattr__(self, "counts", tuple(int(c) for c in self.counts))
    object.__setattr__(self, "approximate", bool(self.approximate))
    if self.vocab_size is None:
      object.__setattr__(self, "vocab_size", len(self.vocabulary))
    if self.cells is None:
      object.__setattr__(self, "cells", self.count)
    for field in ("count", "missing", "distinct", "vocab_size", "cells"):
      _check_int("CategoricalStats", field, getattr(self, field), 0)
      object.__setattr__(self, field, int(getattr(self, field)))
    if len(self.counts) != len(self.vocabulary):
      raise AnalyzeError(f"CategoricalStats: {len(self.vocabulary)} vocabulary values but "
                         f"{len(self.counts)} counts")
    if self.vocab_size < len(self.vocabulary):
      raise AnalyzeError(f"CategoricalStats.vocab_size {self.vocab_size} is smaller than the "
                         f"{len(self.vocabulary)} values held")
    bad = [v for v in self.vocabulary if not isinstance(v, str) or not v]
    if bad:
      raise AnalyzeError(f"CategoricalStats.vocabulary values must be non-empty strings, "
                         f"got {bad[0]!r}")

  @property
  def complete(self) -> bool:
    """The whole vocabulary is held (False for stats read back from JSON)."""
    return self.vocab_size == len(self.vocabulary)

  @property
  def missing_fraction(self) -> float:
    """Share of cells that are missing (0.0 for an empty column)."""
    total = self.cells + self.missing
    return self.missing / total if total else 0.0

  def top(self, n: int) -> List[Tuple[str, int]]:
    """The n most frequent vocabulary values as (value, count), most frequent first.

    Args:
      n: how many; fewer come back when the vocabulary (or, for stats read back from JSON,
        the SUMMARY_TOP values held) is shorter.
    """
    return list(zip(self.vocabulary[:max(n, 0)], self.counts[:max(n, 0)]))

  def to_json_dict(self) -> Dict[str, Any]:
    """The stats as JSON-able values, without the vocabulary (only its SUMMARY_TOP head)."""
    return {
        "count": self.count,
        "missing": self.missing,
        "cells": self.cells,
        "distinct": self.distinct,
        "approximate": self.approximate,
        "vocab_size": self.vocab_size,
        "top": [[value, count] for value, count in self.top(SUMMARY_TOP)],
    }

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any]) -> "CategoricalStats":
    """Inverse of to_json_dict; the result holds only the top values (`complete` is False
    unless the vocabulary is that short).

    Raises:
      AnalyzeError: a field is missing or has the wrong type.
    """
    where = "categorical stats"
    try:
      top = d["top"]
      if not isinstance(top, (list, tuple)) or not all(
          isinstance(t, (list, tuple)) and len(t) == 2 for t in top):
        raise AnalyzeError(f"malformed {where}: top must be a list of [value, count], "
                           f"got {top!r}")
      for value, count in top:
        if not isinstance(value, str) or isinstance(count, bool) or not isinstance(count, int):
          raise AnalyzeError(f"malformed {where}: top entry [{value!r}, {count!r}] is not "
                             f"[string, int]")
      count = _json_int(d, "count", where)
      return cls(
          count=count,
          missing=_json_int(d, "missing", where),
          distinct=_json_int(d, "distinct", where),
          approximate=_json_bool(d, "approximate", where),
          vocabulary=tuple(value for value, _ in top),
          counts=tuple(c for _, c in top),
          vocab_size=_json_int(d, "vocab_size", where),
          cells=_json_int(d, "cells", where) if "cells" in d else count)
    except (KeyError, TypeError) as e:
      raise AnalyzeError(f"malformed {where} ({type(e).__name__}: {e})") from e


class CategoricalAccumulator:
  """Streams one categorical column: exact counts up to max_tracked distinct values.

  Each batch is counted at C speed (collections.Counter for Python objects, np.unique for
  numeric and fixed-width string arrays), its distinct values are rendered as strings (ints as
  decimals, so 7 and "7" are one category) and added to a dict. Past max_tracked distinct
  values the dict becomes a Misra-Gries summary: when it holds more than
  max_tracked * (1 + _CUT_SLACK) counters, the (max_tracked + 1)-th largest count is
  subtracted from every counter and those left at zero are dropped. Values more frequent than
  1 / (max_tracked + 1) of the column always survive. Misra-Gries summaries merge by adding
  counters and cutting again, which `merge` does.
  """

  def __init__(self, name: str, options: AnalyzeOptions):
    """Starts an empty accumulator.

    Args:
      name: the column, for error messages.
      options: vocab_top_k, vocab_min_count and max_tracked are read.
    """
    self.name = name
    self.options = options
    self._counts: Dict[str, int] = {}
    self._count = 0
    self._missing = 0
    self._cells = 0
    self._cut = False
    self._distinct_floor = 0

  def update(self, values: Any) -> None:
    """Adds one batch of the column; a failed update leaves the accumulator unchanged.

    Args:
      values: one cell per row: a sequence or array of str, int (or integral float, bool,
        UTF-8 bytes); None, "" and NaN are missing. A cell may instead be a list, tuple or
        array of such values (a multi-valued cell): each item counts on its own, and a cell
        without any value is one missing cell. Booleans are the categories "true"/"false".

    Raises:
      AnalyzeError: a value is not a category (e.g. a non-integral float), or bytes that are
        not UTF-8; the message names the column and the value.
      TypeError: values is a single string rather than a batch.
    """
    if isinstance(values, (str, bytes)):
      raise TypeError(f"column {self.name!r}: update takes a batch of values, not one string")
    array = values if isinstance(values, np.ndarray) else None
    if array is not None and array.ndim != 1:
      raise AnalyzeError(f"column {self.name!r}: expected a batch of shape [n], got "
                         f"{array.shape}")
    if array is not None and array.dtype.kind in "biufUS":
      batch, missing, cells = self._count_array(array)
    else:
      cells_list = values if array is not None else list(values)
      if any(issubclass(t, _MULTI_VALUED_TYPES) for t in set(map(type, cells_list))):
        items, missing = _flatten_cells(cells_list)
        cells = len(cells_list) - missing
        batch, _ = self._render(self._counter(items))
      else:
        batch, missing = self._render(self._counter(cells_list))
        cells = len(cells_list) - missing
    self._missing += missing
    self._cells += cells
    self._count += sum(batch.values())
    self._add_counts(batch)

  def merge(self, other: "CategoricalAccumulator") -> None:
    """Adds what another accumulator of the same column saw (e.g. a parallel worker's).

    Args:
      other: an accumulator built with the same options; it is not changed.

    Raises:
      TypeError: other is not a CategoricalAccumulator.
      ValueError: other was built with different options.
    """
    if not isinstance(other, CategoricalAccumulator):
      raise TypeError(f"cannot merge {type(other).__name__} into a CategoricalAccumulator")
    _check_mergeable(self.name, self.options, other.options)
    self._count += other._count
    self._missing += other._missing
    self._cells += other._cells
    self._cut = self._cut or other._cut
    self._distinct_floor = max(self._distinct_floor, other._distinct_floor)
    self._add_counts(other._counts)

  def result(self) -> CategoricalStats:
    """The statistics of everything added so far (the accumulator can keep going)."""
    counts = self._counts
    k = self.options.max_tracked
    approximate = self._cut or len(counts) > k
    distinct = max(self._distinct_floor, len(counts)) if approximate else len(counts)
    if len(counts) > k:
      counts = _misra_gries_cut(counts, k)
    kept = _most_frequent(counts, self.options.vocab_top_k, self.options.vocab_min_count)
    return CategoricalStats(count=self._count, missing=self._missing, distinct=distinct,
                            approximate=approximate, vocabulary=tuple(v for v, _ in kept),
                            counts=tuple(c for _, c in kept), cells=self._cells)

  def _counter(self, values: Sequence[Any]) -> Mapping[Any, int]:
    try:
      return collections.Counter(values)
    except TypeError as e:  # an unhashable cell, e.g. a dict
      raise AnalyzeError(f"column {self.name!r}: a value is not a category ({e})") from e

  def _count_array(self, array: np.ndarray) -> Tuple[Dict[str, int], int, int]:
    """(value -> count, missing cells, non-missing cells) of a numeric or fixed-width array."""
    n = len(array)
    if array.dtype.kind == "f":
      missing = np.isnan(array)
      array = array[~missing]
      bad = np.flatnonzero(~np.isfinite(array) | (array != np.floor(array))
                           | (np.abs(array) >= 2.0**63))
      if len(bad):
        raise AnalyzeError(f"column {self.name!r}: value {array[bad[0]]} is not a "
                           f"category (a string or an integer)")
      array = array.astype(np.int64)
      n_missing = int(missing.sum())
    else:
      n_missing = 0
    uniques, counts = np.unique(array, return_counts=True)
    batch, missing_values = self._render(dict(zip(uniques.tolist(), counts.tolist())))
    n_missing += missing_values
    return batch, n_missing, n - n_missing

  def _render(self, raw: Mapping[Any, int]) -> Tuple[Dict[str, int], int]:
    """Turns value -> count into category string -> count, and the count of missing values."""
    if set(map(type, raw)) == {str}:
      batch = dict(raw)
      return batch, batch.pop("", 0)
    batch: Dict[str, int] = {}
    missing = 0
    for value, count in raw.items():
      category = _category(value, self.name)
      if category is None:
        missing += count
      else:
        batch[category] = batch.get(category, 0) + count
    return batch, missing

  def _add_counts(self, batch: Mapping[str, int]) -> None:
    counts = self._counts
    if not counts:
      counts.update(batch)
    else:
      for value, count in batch.items():
        counts[value] = counts.get(value, 0) + count
    k = self.options.max_tracked
    if len(counts) > k + max(int(k * _CUT_SLACK), 1):
      self._distinct_floor = max(self._distinct_floor, len(counts))
      self._counts = _misra_gries_cut(counts, k)
      self._cut = True


def _check_mergeable(name: str, options: AnalyzeOptions, other: AnalyzeOptions) -> None:
  """Raises ValueError unless two accumulators' options agree (seeds may differ)."""
  if dataclasses.replace(other, seed=options.seed) != options:
    raise ValueError(f"column {name!r}: cannot merge accumulators with different options "
                     f"({options} vs {other})")


def _category(value: Any, column: str) -> Optional[str]:
  """The category string of one value, or None when the value is missing."""
  if isinstance(value, str):
    return value or None
  if value is None:
    return None
  if isinstance(value, (bool, np.bool_)):
    return "true" if value else "false"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    if math.isnan(value):
      return None
    if math.isfinite(value) and value == math.floor(value):
      return str(int(value))
    raise AnalyzeError(f"column {column!r}: value {value!r} is not a category "
                       f"(a string or an integer)")
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8") or None
    except UnicodeDecodeError as e:
      raise AnalyzeError(f"column {column!r}: value {value!r} is not UTF-8") from e
  raise AnalyzeError(f"column {column!r}: value {value!r} ({type(value).__name__}) is not a "
                     f"category (a string or an integer)")


def _is_missing(value: Any) -> bool:
  if value is None:
    return True
  if isinstance(value, (str, bytes)):
    return not value
  return isinstance(value, (float, np.floating)) and math.isnan(value)


def _flatten_cells(cells: Sequence[Any]) -> Tuple[List[Any], int]:
  """(every non-missing item of every cell, number of cells without any item)."""
  items: List[Any] = []
  missing = 0
  for cell in cells:
    if isinstance(cell, _MULTI_VALUED_TYPES):
      present = [v for v in (cell.tolist() if isinstance(cell, np.ndarray) else cell)
                 if not _is_missing(v)]
      if present:
        items.extend(present)
      else:
        missing += 1
    elif _is_missing(cell):
      missing += 1
    else:
      items.append(cell)
  return items, missing


def _most_frequent(counts: Mapping[str, int], top_k: int, min_count: int
                   ) -> List[Tuple[str, int]]:
  """Up to top_k (value, count) with count >= min_count: most frequent first, ties by value."""
  values = list(counts)
  c = np.fromiter(counts.values(), np.int64, len(values))
  floor = min_count
  if len(c) > top_k:
    # Only values at least as frequent as the top_k-th can make the cut; sort just those.
    floor = max(floor, int(np.partition(c, len(c) - top_k)[len(c) - top_k]))
  kept = sorted((values[i], int(c[i])) for i in np.flatnonzero(c >= floor).tolist())
  kept.sort(key=operator.itemgetter(1), reverse=True)  # stable: equal counts stay by value
  return kept[:top_k]


def _misra_gries_cut(counts: Mapping[str, int], k: int) -> Dict[str, int]:
  """Keeps at most k counters: subtracts the (k+1)-th largest count, drops what reaches 0."""
  values = list(counts)
  c = np.fromiter(counts.values(), np.int64, len(values))
  threshold = np.partition(c, len(c) - k - 1)[len(c) - k - 1]
  keep = np.flatnonzero(c > threshold)
  return {values[i]: int(c[i] - threshold) for i in keep.tolist()}


# --- vocabulary files -----------------------------------------------------------------------


def write_vocabulary(stats: CategoricalStats, name: Optional[str] = None) -> bytes:
  """The vocabulary asset: one value per line, UTF-8, most frequent first (line number = id).

  Args:
    stats: an accumulator's result (not stats read back from JSON, which lack the vocabulary).
    name: the column, for error messages.

  Returns:
    The file's bytes; b"" for an empty vocabulary.

  Raises:
    AnalyzeError: a value contains a line break ("\\n", or "\\r", which
      tf.lookup.TextFileInitializer strips from line ends), or is not encodable as UTF-8, or
      stats hold only part of the vocabulary.
  """
  where = f"column {name!r}: " if name else ""
  if not stats.complete:
    raise AnalyzeError(f"{where}stats hold {len(stats.vocabulary)} of the {stats.vocab_size} "
                       f"vocabulary values (read back from JSON?); write the vocabulary from "
                       f"the accumulator's result")
  for value in stats.vocabulary:
    if "\n" in value or "\r" in value:
      raise AnalyzeError(f"{where}vocabulary value {value!r} contains a line break; a "
                         f"vocabulary file holds one value per line")
  if not stats.vocabulary:
    return b""
  try:
    return ("\n".join(stats.vocabulary) + "\n").encode("utf-8")
  except UnicodeEncodeError as e:
    raise AnalyzeError(f"{where}vocabulary value {e.object[e.start:e.end]!r} is not "
                       f"encodable as UTF-8") from e


def read_vocabulary(data: bytes) -> Tuple[str, ...]:
  """The values of a vocabulary file, in id order (a trailing "\\r" is dropped, as TF does).

  Raises:
    AnalyzeError: data is not UTF-8.
  """
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise AnalyzeError(f"vocabulary file is not UTF-8 ({e})") from e
  if not text:
    return ()
  if text.endswith("\n"):
    text = text[:-1]
  return tuple(line[:-1] if line.endswith("\r") else line for line in text.split("\n"))


# --- summaries ------------------------------------------------------------------------------


def _number(x: float, integral: bool) -> str:
  if integral and abs(x) < 1e15:
    return str(int(x))
  return f"{x:.4g}"


def summary_line(name: str, kind: str, stats: Any) -> str:
  """One line about a column for the converter's summary, at most 110 characters.

  For example:
    age            numeric     int   missing 0.0%   mean 43.83 std 17.3 range [17, 90]
    workclass      categorical       missing 5.9%   8 distinct: Private 72.9%, Self-emp 8.3%, ...

  Category shares are of the non-missing values; past max_tracked they come from lower-bound
  counts and the distinct count reads "N+".

  Args:
    name: the column (names over 30 characters are shortened).
    kind: what the converter calls the column, e.g. "numeric" or "categorical".
    stats: its NumericStats or CategoricalStats.

  Returns:
    The line, without a newline.

  Raises:
    TypeError: stats is neither NumericStats nor CategoricalStats.
  """
  if len(name) > _NAME_MAX:
    name = name[:_NAME_MAX - 3] + "..."
  if isinstance(stats, NumericStats):
    value_type = "int" if stats.is_integer else "float"
  elif isinstance(stats, CategoricalStats):
    value_type = ""
  else:
    raise TypeError(f"summary_line needs NumericStats or CategoricalStats, got "
                    f"{type(stats).__name__}")
  head = (f"{name:<{_NAME_WIDTH}} {kind:<11} {value_type:<5} "
          f"{'missing ' + format(stats.missing_fraction, '.1%'):<14} ")
  if isinstance(stats, NumericStats):
    if not stats.count:
      line = head + "no values"
    else:
      line = (head + f"mean {stats.mean:.4g} std {stats.std:.4g} range "
              f"[{_number(stats.min, stats.is_integer)}, {_number(stats.max, stats.is_integer)}]")
    if len(line) > _SUMMARY_WIDTH:
      line = line[:_SUMMARY_WIDTH - 3] + "..."
    return line
  line = head + f"{stats.distinct}{'+' if stats.approximate else ''} distinct"
  shown = stats.top(SUMMARY_TOP)
  total = max(stats.vocab_size, stats.distinct)
  for i, (value, count) in enumerate(shown):
    part = (": " if i == 0 else ", ") + f"{value} {count / stats.count:.1%}"
    tail = ", ..." if i + 1 < total else ""
    if len(line) + len(part) + len(tail) > _SUMMARY_WIDTH:
      return line + (": ..." if i == 0 else ", ...")
    line += part
  if shown and len(shown) < total:
    line += ", ..."
  return line[:_SUMMARY_WIDTH]


# --- JSON helpers ---------------------------------------------------------------------------


def _json_number(value: Any, key: str, where: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise AnalyzeError(f"malformed {where}: {key} must be a number, got {value!r}")
  return float(value)


def _json_int(d: Mapping[str, Any], key: str, where: str) -> int:
  value = d[key]
  if isinstance(value, bool) or not isinstance(value, int):
    raise AnalyzeError(f"malformed {where}: {key} must be an int, got {value!r}")
  return value


def _json_float(d: Mapping[str, Any], key: str, where: str, allow_null: bool = False) -> float:
  value = d[key]
  if value is None and allow_null:
    return math.nan
  return _json_number(value, key, where)


def _json_bool(d: Mapping[str, Any], key: str, where: str) -> bool:
  value = d[key]
  if not isinstance(value, bool):
    raise AnalyzeError(f"malformed {where}: {key} must be true or false, got {value!r}")
  return value
