"""Typed tables (CSV, TSV, Parquet, JSON Lines) as TABLE datasets, streamed in bounded memory.

Formats: `csv` (formats/csv.py hands over here unless --image_shape is given; values may be
quoted, with "" for a quote, and span lines), `tsv` (TAB separated, no quoting: a `"` is an
ordinary character), `parquet` and `jsonl` (one JSON object per line; columns in the order
their keys first appear). CSV and TSV have a header row, or --column_names. Every column
other than --label_column and --weight_column becomes one feature of a TABLE spec
(input_fns/feature_spec.py), named as in the file. Files are read with pyarrow.

Entry points: TSV_FORMAT, PARQUET_FORMAT and JSONL_FORMAT (the registry's; csv's is
formats/csv.py's), `open_table`, `TableSource`, and `read_schema` / `parse_columns` /
`parse_label_map`, which parse the options.

Values: every string is whitespace-trimmed; then the empty string and each --missing marker
(default "NA") are missing values. Missing numerics are stored as NaN, missing categoricals and
texts are left out of the Example (they parse as "" / -1).

Column types, inferred from the whole --input file (not only its train split: a column is
numeric only if every row's value is a number, so no eval row can fail to convert):
  * numeric (float32): a column whose every value is a number (an integer or float type in
    Parquet / JSON, or text that parses as one in CSV / TSV).
  * categorical ids (int64): an integer column (values >= 0) whose name ends with `_id`.
  * categorical (string): booleans (as "true" / "false", any case in CSV), and string columns
    with short values;
  * text (string): a string column whose values average more than 32 characters, or of which
    more than half hold a space.
  * multivalent categorical: a Parquet / JSON list of strings or integers. Its width K (the
    spec's max_values) is the most non-missing values one cell holds, in --input or
    --eval_input.
A schema file (--schema, see below) replaces these guesses; --columns then overrides single
columns: `name:numeric`, `name:categorical` (int64 ids when every value is an integer >= 0,
else strings), `name:text`, `name:skip` (dropped), `name:hash=N` (categorical hashed into N
buckets, no vocabulary), `name:multi=SEP` (categorical, each cell split at SEP into several
values). Entries for one column combine (`tags:multi=|,tags:hash=64`). Text "nan" or "inf"
in a numeric column is an error (name it a --missing marker); NaN in a Parquet float column
is a missing value.

Statistics (input_fns/analyze.py), from the TRAIN split only, go into each feature's `stats`:
numeric columns get mean, std, quantiles; categorical ones counts and top values; text columns
the statistics of their lengths in characters. A categorical column with more distinct values
than --hash_threshold is hashed into 2 * distinct buckets rounded up to a power of 2; any
other gets a vocabulary (at most --vocab_top_k values seen at least --vocab_min_count times,
most frequent first), written beside the shards as `vocab.<column>.txt` (asset role
`vocab/<column>`).

Labels: --label_kind, or inferred: a number that is not always an integer, or an integer with
more than 50 distinct values (a count, a score: sklearn's diabetes targets are integers with 214
of them), is a REGRESSION target (float32); 2 distinct values make a BINARY label, more a
MULTICLASS one (--label_kind=multiclass keeps 51+ integer classes as classes). --label_map=raw=name,... renames raw values (e.g.
`<=50K=0,>50K=1`; a raw value it does not map is an error). Class names are the map's names,
else the distinct raw values, sorted (numerically when all are integers). A missing label is
an error. --weight_column holds per-example weights: numbers >= 0, never missing.

Splits: --eval_input is a separate eval file with the same columns, converted with the train
file's types and labels; without it, --eval_fraction of each class goes to eval.

--describe is a dry run: it reads and checks everything, prints the per-column summary and
writes the schema it would use as JSON to --schema (make_tfrecords defaults it to
`<output_dir>.schema.json`), then stops. The schema lists every column with its "type"
(numeric / categorical / text / skip), a categorical's "dtype" (string / int64), "multi" and
"hash_buckets", plus a "summary" line (ignored when read back), and the label_kind (used
unless --label_kind is given). Edit it and pass it as --schema to convert with your types; a
schema file that exists is applied by --describe too.

Memory stays bounded whatever the file size: each input is streamed twice in record batches
(types need the whole file before any value can be converted). The first pass checks the rows,
gathers the type evidence and keeps the labels; the second converts each batch to its typed
columns, analyzes the TRAIN rows (accumulators bounded by their options) and appends the batch
to an Arrow IPC file in a private temporary directory (never the output directory). That file
is memory-mapped, so the writer's forked workers read rows with `table.take` straight from the
page cache. Only the labels and the split's row indices stay in memory (about 20 bytes a
row). The spill is removed when the source is closed or garbage-collected.

Errors name the file, line (CSV / TSV / JSON Lines; a row for Parquet) and column, and are
raised before any shard is written.
"""

import csv as csv_lib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc  # pylint: disable=unused-import
import pyarrow.json as pajson
import pyarrow.parquet as pq

from input_fns import analyze
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import input_kinds
from input_fns import splits as splits_lib
from input_fns.formats import base

CSV, TSV, PARQUET, JSONL = "csv", "tsv", "parquet", "jsonl"
SCHEMA_VERSION = 1
NUMERIC, CATEGORICAL, TEXT, SKIP = "numeric", "categorical", "text", "skip"
TYPES = (NUMERIC, CATEGORICAL, TEXT, SKIP)
# A string column is text when its values average more than this many characters.
TEXT_MEAN_LENGTH = 32
# Distinct raw label values tracked; a numeric label with more is a regression target.
MAX_CLASSES = 100_000
# An integer label with more distinct values than this is inferred to be a regression target.
MAX_INFERRED_CLASSES = 50
# The options every table format reads (csv adds delimiter and column_names, tsv column_names).
OPTIONS = ("input", "label_column", "missing", "columns", "schema", "describe", "label_kind",
           "label_map", "weight_column", "eval_input", "eval_fraction", "vocab_top_k",
           "vocab_min_count", "hash_threshold", "seed")
CSV_OPTIONS = OPTIONS[:1] + ("delimiter", "column_names") + OPTIONS[1:]
TSV_OPTIONS = OPTIONS[:1] + ("column_names",) + OPTIONS[1:]

_BATCH_ROWS = 65_536  # Parquet rows per batch
# CSV bytes per batch. pyarrow's streaming CSV reader parses a bounded number of blocks ahead
# of a slow consumer, so its memory is proportional to the block size (measured: ~45 MB at
# 1 MB blocks whatever the file size, ~440 MB and growing at 16 MB).
_BLOCK_BYTES = 1 << 20
_JSON_BLOCK_BYTES = 4 << 20  # JSON Lines bytes per batch (read here, one block at a time)
_SCHEMA_KEYS = ("schema_version", "source", "label_column", "label_kind", "weight_column",
                "columns")
_COLUMN_KEYS = ("name", "type", "dtype", "multi", "hash_buckets", "summary")
_BOOLS = pa.array(["true", "false"])
_COLUMN_SPEC = re.compile(r"^(?P<name>.+?):(?P<kind>numeric|categorical|text|skip|"
                          r"hash=(?P<buckets>.*)|multi=(?P<sep>.+))$")


class TableError(base.SourceError):
  """A table file or option is malformed; the message names the file, line and column (or the
  flag)."""


class SchemaError(TableError):
  """A --schema file is malformed or does not match the table; the message names the file."""


# --- Options ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnOverride:
  """What --schema or --columns says about one column.

  Attributes:
    type: NUMERIC, CATEGORICAL, TEXT or SKIP.
    dtype: a categorical's "string" or "int64"; "" lets the values decide.
    multi: a categorical's separator between several values in one cell ("" for one value).
    hash_buckets: > 0: a categorical hashed into this many buckets.
    origin: where it came from, for error messages ("--columns" or "--schema=PATH").
  """
  type: str
  dtype: str = ""
  multi: str = ""
  hash_buckets: int = 0
  origin: str = "--columns"


def parse_columns(specs: Sequence[str]) -> Dict[str, ColumnOverride]:
  """Parses --columns entries (`name:numeric`, `name:hash=64`, `name:multi=|`, ...).

  Args:
    specs: the entries; several for one column combine.

  Returns:
    column name -> its override.

  Raises:
    TableError: an entry that is not name:type, a bad bucket count, or entries that conflict.
  """
  out: Dict[str, ColumnOverride] = {}
  for spec in specs:
    found = _COLUMN_SPEC.match(spec.strip())
    if not found:
      raise TableError(f"--columns: {spec!r} is not name:TYPE with TYPE one of numeric, "
                       f"categorical, text, skip, hash=N, multi=SEP")
    name, kind = found.group("name").strip(), found.group("kind")
    entry = dict(type="", dtype="", multi="", hash_buckets=0)
    if kind.startswith("hash="):
      try:
        buckets = int(found.group("buckets"))
      except ValueError:
        buckets = 0
      if buckets < 1:
        raise TableError(f"--columns: {spec!r}: hash=N needs a bucket count N >= 1")
      entry.update(type=CATEGORICAL, hash_buckets=buckets)
    elif kind.startswith("multi="):
      entry.update(type=CATEGORICAL, multi=found.group("sep"))
    else:
      entry.update(type=kind)
    old = out.get(name)
    if old is not None:
      merged = dataclasses.asdict(old)
      for key, value in entry.items():
        if value and merged[key] and merged[key] != value:
          raise TableError(f"--columns: {spec!r} conflicts with an earlier entry for column "
                           f"{name!r} ({old.type}"
                           f"{', hash=' + str(old.hash_buckets) if old.hash_buckets else ''}"
                           f"{', multi=' + old.multi if old.multi else ''})")
        merged[key] = merged[key] or value
      entry = merged
      entry.pop("origin")
    out[name] = ColumnOverride(**entry)
  return out


def parse_label_map(items: Sequence[str]) -> Dict[str, str]:
  """Parses --label_map entries `raw=name` (split at the last "=", so `<=50K=0` maps "<=50K").

  Raises:
    TableError: an entry without "=", an empty side, or one raw value mapped twice.
  """
  out: Dict[str, str] = {}
  for item in items:
    raw, eq, name = item.rpartition("=")
    raw, name = raw.strip(), name.strip()
    if not eq or not raw or not name:
      raise TableError(f"--label_map: {item!r} is not raw=name (e.g. '<=50K=0')")
    if out.get(raw, name) != name:
      raise TableError(f"--label_map: {raw!r} is mapped to both {out[raw]!r} and {name!r}")
    out[raw] = name
  return out


@dataclasses.dataclass(frozen=True)
class Schema:
  """A parsed --schema file.

  Attributes:
    path: the file.
    columns: column name -> its override, in file order.
    label_column: the label column it was written for ("" if not said).
    label_kind: the label kind it asks for ("" lets the data decide).
    weight_column: the weight column it was written for (None if not said).
  """
  path: str
  columns: Mapping[str, ColumnOverride]
  label_column: str = ""
  label_kind: str = ""
  weight_column: Optional[str] = None


def read_schema(path: str, text: str) -> Schema:
  """Parses a schema file's text (see the module docstring).

  Raises:
    SchemaError: not JSON, not an object, unknown keys, a column entry without a name or
      with an unknown type, or options that do not fit its type.
  """
  where = f"--schema={path}"
  try:
    doc = json.loads(text)
  except json.JSONDecodeError as e:
    raise SchemaError(f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: "
                      f"{e.msg})") from None
  if not isinstance(doc, dict):
    raise SchemaError(f"{where}: expected a JSON object with \"columns\", got "
                      f"{type(doc).__name__}")
  unknown = sorted(set(doc) - set(_SCHEMA_KEYS))
  if unknown:
    raise SchemaError(f"{where}: unknown key(s) {unknown}; a schema holds {list(_SCHEMA_KEYS)}")
  if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
    raise SchemaError(f"{where}: schema_version {doc['schema_version']!r} is not "
                      f"{SCHEMA_VERSION}")
  for key in ("label_column", "label_kind", "weight_column"):
    if key in doc and not isinstance(doc[key], str):
      raise SchemaError(f"{where}: {key} must be a string, got {doc[key]!r}")
  label_kind = doc.get("label_kind", "")
  if label_kind and label_kind not in input_kinds.LABEL_KINDS:
    raise SchemaError(f"{where}: label_kind {label_kind!r} is not one of "
                      f"{', '.join(input_kinds.LABEL_KINDS)}")
  entries = doc.get("columns")
  if not isinstance(entries, list):
    raise SchemaError(f"{where}: \"columns\" must be a list of {{\"name\", \"type\"}} objects")
  columns: Dict[str, ColumnOverride] = {}
  for i, entry in enumerate(entries):
    at = f"{where}: columns[{i}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
      raise SchemaError(f"{at}: expected an object with a \"name\" string, got {entry!r}")
    name = entry["name"]
    at += f" ({name!r})"
    unknown = sorted(set(entry) - set(_COLUMN_KEYS))
    if unknown:
      raise SchemaError(f"{at}: unknown key(s) {unknown}; a column has {list(_COLUMN_KEYS)}")
    if name in columns:
      raise SchemaError(f"{at}: column {name!r} is listed twice")
    kind = entry.get("type")
    if kind not in TYPES:
      raise SchemaError(f"{at}: type {kind!r} is not one of {', '.join(TYPES)}"
                        f"{errors.did_you_mean(str(kind), TYPES)}")
    dtype, multi, buckets = entry.get("dtype", ""), entry.get("multi", ""), entry.get(
        "hash_buckets", 0)
    if dtype not in ("", "string", "int64"):
      raise SchemaError(f"{at}: dtype {dtype!r} is not string or int64")
    if not isinstance(multi, str):
      raise SchemaError(f"{at}: multi must be a separator string, got {multi!r}")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 0:
      raise SchemaError(f"{at}: hash_buckets must be an integer >= 1, got {buckets!r}")
    if kind != CATEGORICAL and (dtype or multi or buckets):
      raise SchemaError(f"{at}: dtype, multi and hash_buckets are for categorical columns, "
                        f"not {kind}")
    columns[name] = ColumnOverride(type=kind, dtype=dtype, multi=multi, hash_buckets=buckets,
                                   origin=where)
  return Schema(path=path, columns=columns, label_column=doc.get("label_column", ""),
                label_kind=label_kind,
                weight_column=doc.get("weight_column"))


# --- Arrow helpers ---------------------------------------------------------------------------


def _is_str(t: pa.DataType) -> bool:
  return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
  return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_number(t: pa.DataType) -> bool:
  return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _plain(arr) -> pa.Array:
  """One contiguous array without dictionary encoding or 64-bit offsets."""
  if isinstance(arr, pa.ChunkedArray):
    arr = arr.combine_chunks()
  if pa.types.is_dictionary(arr.type):
    arr = arr.dictionary_decode()
  if pa.types.is_large_string(arr.type):
    arr = arr.cast(pa.string())
  if pa.types.is_large_list(arr.type):
    arr = arr.cast(pa.list_(arr.type.value_type))
  return arr


def _clean(arr: pa.Array, markers: pa.Array) -> pa.Array:
  """Strings trimmed, with the missing markers turned into nulls."""
  trimmed = pc.utf8_trim_whitespace(arr)
  return pc.if_else(pc.is_in(trimmed, value_set=markers), pa.scalar(None, pa.string()), trimmed)


def _map_items(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
  """A list array with `fn` applied to its items (offsets and null cells kept)."""
  return pa.ListArray.from_arrays(arr.offsets, fn(_plain(arr.values)), mask=arr.is_null())


def _first(mask: pa.Array) -> int:
  """Index of the first true value of a boolean array (nulls count as false)."""
  return pc.index(pc.fill_null(mask, False), True).as_py()


def _first_failure(arr: pa.Array, fails: Callable[[pa.Array], bool]) -> int:
  """Index of the first element on which `fails` holds, by bisection (arr as a whole fails)."""
  lo, hi = 0, len(arr)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if fails(arr.slice(lo, mid - lo)):
      hi = mid
    else:
      lo = mid
  return lo


def _cast_fails(target: pa.DataType) -> Callable[[pa.Array], bool]:
  def fails(part: pa.Array) -> bool:
    try:
      pc.cast(part, target)
      return False
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      return True
  return fails


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _check_file(path: str, flag: str) -> None:
  if not path:
    raise TableError(f"--{flag} is required")
  if not os.path.exists(path):
    raise TableError(f"--{flag}={path}: no such file")
  if os.path.isdir(path):
    raise TableError(f"--{flag}={path} is a directory, expected a file")
  if not os.access(path, os.R_OK):
    raise TableError(f"--{flag}={path}: cannot read (permission denied)")


def _shown(names: Sequence[str], n: int = 20) -> str:
  return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


# --- Readers ---------------------------------------------------------------------------------


class _Reader:
  """Streams one file as batches of named Arrow arrays and names its rows in messages.

  Attributes:
    path: the file.
    flag: the flag that named it ("input" or "eval_input").
    names: the column names in file order (None until a JSON Lines file has been read once).
  """

  def __init__(self, path: str, flag: str):
    self.path = path
    self.flag = flag
    self.names: Optional[List[str]] = None

  def batches(self, columns: Optional[Sequence[str]]) -> Iterator[Tuple[Dict[str, pa.Array], int]]:
    """Yields ({column: array}, rows) for the named columns (None: every column)."""
    raise NotImplementedError

  def where(self, row: int) -> str:
    """The location of data row `row` (0-based), e.g. "data.csv:12"."""
    return f"{self.path} row {row + 1}"

  def empty_message(self) -> str:
    return f"empty source: {self.path} has no rows"

  def _check_names(self, names: Sequence[str], what: str) -> List[str]:
    names = [str(n).strip() for n in names]
    for i, name in enumerate(names):
      if not name:
        raise TableError(f"{self.path}: {what} {i + 1} has no name")
      if name in names[:i]:
        raise TableError(f"{self.path}: {what} {name!r} appears twice")
    return names


class _DelimitedReader(_Reader):
  """CSV or TSV, every value read as a string (types are decided by this module, not pyarrow)."""

  def __init__(self, path: str, flag: str, delimiter: str, quoted: bool,
               column_names: Sequence[str], fmt: str):
    super().__init__(path, flag)
    self._delimiter = delimiter
    self._quoted = quoted
    self._fmt = fmt
    self._header = not column_names
    raw = list(column_names) if column_names else self._read_header()
    self.names = self._check_names(raw, "header column" if self._header else "--column_names "
                                   "entry")
    self._raw = dict(zip(self.names, raw))

  def _python_reader(self, f):
    return csv_lib.reader(f, delimiter=self._delimiter,
                          quoting=csv_lib.QUOTE_MINIMAL if self._quoted else csv_lib.QUOTE_NONE)

  def _read_header(self) -> List[str]:
    try:
      with open(self.path, encoding="utf-8-sig", newline="") as f:
        for row in self._python_reader(f):
          if row:
            return row
    except UnicodeDecodeError:
      raise self._not_utf8() from None
    except csv_lib.Error as e:
      raise TableError(f"{self.path}:1: malformed {self._fmt.upper()} header ({e})") from None
    raise TableError(f"empty source: {self.path} is empty (expected a header row)")

  def empty_message(self) -> str:
    if self._header:
      return f"empty source: {self.path} has a header but no data rows"
    return f"empty source: {self.path} has no rows"

  def _rows(self) -> Iterator[Tuple[int, List[str]]]:
    """(first line, fields) of each data row, as Python's csv module splits them."""
    with open(self.path, encoding="utf-8-sig", errors="replace", newline="") as f:
      reader = self._python_reader(f)
      header, last = self._header, 0
      for row in reader:
        start, last = last + 1, reader.line_num
        if not row:
          continue
        if header:
          header = False
          continue
        yield start, row

  def where(self, row: int) -> str:
    for i, (line, _) in enumerate(self._rows()):
      if i == row:
        return f"{self.path}:{line}"
    return f"{self.path} data row {row + 1}"

  def batches(self, columns):
    wanted = list(self.names if columns is None else columns)
    read = pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=True,
                             column_names=None if self._header else list(self._raw.values()))
    parse = pacsv.ParseOptions(delimiter=self._delimiter,
                               quote_char='"' if self._quoted else False,
                               double_quote=self._quoted, newlines_in_values=self._quoted)
    convert = pacsv.ConvertOptions(
        column_types={raw: pa.string() for raw in self._raw.values()}, null_values=[],
        strings_can_be_null=False, quoted_strings_can_be_null=False,
        include_columns=[self._raw[n] for n in wanted])
    try:
      reader = pacsv.open_csv(self.path, read_options=read, parse_options=parse,
                              convert_options=convert)
      for batch in reader:
        if batch.num_rows:
          yield {n: batch.column(self._raw[n]) for n in wanted}, batch.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
      raise self._explain(e) from None

  def _explain(self, e: Exception) -> TableError:
    text = str(e)
    if "Expected" in text and "columns, got" in text:
      width = len(self.names)
      for line, row in self._rows():
        if len(row) != width:
          against = "the header has" if self._header else "--column_names names"
          return TableError(f"{self.path}:{line}: {len(row)} fields, but {against} {width} "
                            f"(ragged row)")
    if "UTF8" in text or "UTF-8" in text or isinstance(e, UnicodeDecodeError):
      return self._not_utf8()
    return TableError(f"{self.path}: malformed {self._fmt.upper()} ({text})")

  def _not_utf8(self) -> TableError:
    with open(self.path, "rb") as f:
      for number, line in enumerate(f, start=1):
        try:
          line.decode("utf-8")
        except UnicodeDecodeError as bad:
          return TableError(f"{self.path}:{number}: not UTF-8 text (byte {bad.start} of the line)")
    return TableError(f"{self.path}: not UTF-8 text")


class _ParquetReader(_Reader):
  """A Parquet file, read in row batches with the types it stores."""

  def __init__(self, path: str, flag: str):
    super().__init__(path, flag)
    with self._open() as f:
      self.names = self._check_names(f.schema_arrow.names, "column")

  def _open(self) -> pq.ParquetFile:
    try:
      return pq.ParquetFile(self.path)
    except (pa.ArrowException, OSError) as e:
      raise TableError(f"{self.path}: not a readable Parquet file ({e})") from None

  def batches(self, columns):
    wanted = list(self.names if columns is None else columns)
    with self._open() as f:
      try:
        for batch in f.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
          if batch.num_rows:
            yield {n: batch.column(n) for n in wanted}, batch.num_rows
      except (pa.ArrowException, OSError) as e:
        raise TableError(f"{self.path}: cannot read Parquet data ({e})") from None


class _JsonLinesReader(_Reader):
  """One JSON object per line, read in blocks of whole lines; columns are the keys seen."""

  def __init__(self, path: str, flag: str):
    super().__init__(path, flag)
    self._seen: List[str] = []

  def _blocks(self) -> Iterator[Tuple[int, bytes]]:
    """(number of the block's first line, bytes of whole lines)."""
    line = 1
    with open(self.path, "rb") as f:
      rest = b""
      while True:
        data = f.read(_JSON_BLOCK_BYTES)
        if not data:
          break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if not cut:
          rest = data
          continue
        yield line, data[:cut]
        line += data.count(b"\n", 0, cut)
        rest = data[cut:]
      if rest.strip():
        yield line, rest + b"\n"

  def batches(self, columns):
    for first_line, block in self._blocks():
      if not block.strip():
        continue
      try:
        table = pajson.read_json(io.BytesIO(block),
                                 read_options=pajson.ReadOptions(block_size=len(block) + 1))
      except pa.ArrowInvalid as e:
        raise self._explain(e, first_line, block) from None
      for name in table.column_names:
        if name not in self._seen:
          self._seen.append(name)
      n = table.num_rows
      wanted = self._seen if columns is None else columns
      yield ({name: _plain(table.column(name)) if name in table.column_names else pa.nulls(n)
              for name in wanted}, n)
    if self.names is None:
      self.names = self._check_names(self._seen, "key")

  def _explain(self, e: Exception, first_line: int, block: bytes) -> TableError:
    lines = [(first_line + i, text) for i, text in enumerate(block.split(b"\n")) if text.strip()]
    for number, text in lines:
      try:
        value = json.loads(text)
      except ValueError as bad:
        return TableError(f"{self.path}:{number}: not valid JSON ({bad})")
      if not isinstance(value, dict):
        return TableError(f"{self.path}:{number}: expected a JSON object, got "
                          f"{type(value).__name__}")
    found = re.search(r"Column\((/[^)]*)\) changed from (\w+) to (\w+) in row (\d+)", str(e))
    if found and int(found.group(4)) < len(lines):
      number = lines[int(found.group(4))][0]
      return TableError(f"{self.path}:{number}: key {found.group(1)[1:]!r} changed from "
                        f"{found.group(2)} to {found.group(3)}; the values of one key must share "
                        f"one JSON type")
    return TableError(f"{self.path}: malformed JSON Lines ({e})")

  def where(self, row: int) -> str:
    seen = 0
    with open(self.path, "rb") as f:
      for number, text in enumerate(f, start=1):
        if text.strip():
          if seen == row:
            return f"{self.path}:{number}"
          seen += 1
    return f"{self.path} row {row + 1}"


def _reader(fmt: str, opts: base.SourceOptions, path: str, flag: str) -> _Reader:
  _check_file(path, flag)
  if fmt in (CSV, TSV):
    delimiter = "\t" if fmt == TSV else opts.delimiter
    if len(delimiter) != 1 or delimiter in ('"', "\n", "\r"):
      raise TableError(f"--delimiter must be one character (not a quote or a line break), got "
                       f"{delimiter!r}")
    return _DelimitedReader(path, flag, delimiter, fmt == CSV, opts.column_names, fmt)
  if fmt == PARQUET:
    return _ParquetReader(path, flag)
  return _JsonLinesReader(path, flag)


# --- Pass 1: evidence for types, and the labels -----------------------------------------------


def _kind(t: pa.DataType) -> Optional[str]:
  """What a column's Arrow type says: "string", "int", "float", "bool", "list_string",
  "list_int", "list_null", None (all null) or "unsupported <type>"."""
  if pa.types.is_null(t):
    return None
  if _is_str(t):
    return "string"
  if pa.types.is_boolean(t):
    return "bool"
  if pa.types.is_integer(t):
    return "int"
  if pa.types.is_floating(t) or pa.types.is_decimal(t):
    return "float"
  if _is_list(t):
    inner = _kind(t.value_type)
    if inner in ("string", "int", None):
      return f"list_{inner or 'null'}"
  return f"unsupported {t}"


@dataclasses.dataclass
class _Evidence:
  """What pass 1 saw of one column's values."""
  kinds: set = dataclasses.field(default_factory=set)
  values: int = 0
  can_int: bool = True
  can_float: bool = True
  can_bool: bool = True
  int_min: Optional[int] = None
  length_sum: int = 0
  spaced: int = 0

  def add(self, arr: pa.Array, markers: pa.Array) -> None:
    arr = _plain(arr)
    kind = _kind(arr.type)
    if kind is None:
      return
    self.kinds.add(kind)
    if kind == "string":
      values = pc.drop_null(_clean(arr, markers))
      self.values += len(values)
      if not len(values):
        return
      self.length_sum += pc.sum(pc.utf8_length(values)).as_py()
      self.spaced += pc.sum(pc.match_substring(values, " ")).as_py()
      if self.can_int:
        try:
          self._saw_ints(pc.cast(values, pa.int64()))
        except pa.ArrowInvalid:
          self.can_int = False
      if self.can_float:
        try:
          pc.cast(values, pa.float64())
        except pa.ArrowInvalid:
          self.can_float = False
      if self.can_bool:
        self.can_bool = pc.all(pc.is_in(pc.utf8_lower(values), value_set=_BOOLS)).as_py()
    elif kind in ("int", "list_int"):
      values = pc.drop_null(_plain(arr.values) if kind == "list_int" else arr)
      self.values += len(values) if kind == "int" else len(arr) - arr.null_count
      self._saw_ints(values)
    else:
      self.values += len(arr) - arr.null_count

  def _saw_ints(self, ints: pa.Array) -> None:
    if len(ints):
      low = pc.min(ints).as_py()
      self.int_min = low if self.int_min is None else min(self.int_min, low)

  @property
  def nonnegative_ints(self) -> bool:
    return self.int_min is None or self.int_min >= 0


class _Labels:
  """Pass 1's record of the label column of one file: raw values as codes, and as numbers."""

  def __init__(self, name: str):
    self.name = name
    self.values: List[str] = []  # distinct raw values (as strings), in order of appearance
    self._index: Dict[str, int] = {}
    self._value_set = pa.array([], pa.string())
    self._codes: List[np.ndarray] = []
    self._floats: List[np.ndarray] = []
    self.rows = 0
    self.numeric = True
    self.integral = True
    self.too_many = False
    self.first_missing: Optional[int] = None
    self.first_non_number: Optional[Tuple[int, str]] = None
    self.first_non_finite: Optional[Tuple[int, str]] = None

  def add(self, arr: pa.Array, markers: pa.Array, where: str) -> None:
    arr = _plain(arr)
    kind = _kind(arr.type)
    if kind is None:
      strings = pa.nulls(len(arr), pa.string())
    elif kind == "string":
      strings = _clean(arr, markers)
    elif kind in ("int", "float", "bool"):
      strings = pc.cast(arr, pa.string())
    else:
      raise TableError(f"{where}: label column {self.name!r} holds {arr.type}; a label is a "
                       f"string or a number")
    offset, n = self.rows, len(arr)
    self.rows += n
    if strings.null_count and self.first_missing is None:
      self.first_missing = offset + _first(strings.is_null())
    if self.numeric:
      self._add_numbers(arr if kind in ("int", "float", "bool") else strings, offset)
    if not self.too_many:
      fresh = [v for v in pc.unique(pc.drop_null(strings)).to_pylist() if v not in self._index]
      if fresh:
        for value in fresh:
          self._index[value] = len(self.values)
          self.values.append(value)
        self._value_set = pa.array(self.values, pa.string())
      if len(self.values) > MAX_CLASSES:
        self.too_many = True
        self._codes = []
      else:
        self._codes.append(pc.fill_null(pc.index_in(strings, value_set=self._value_set),
                                        -1).to_numpy().astype(np.int32))

  def _add_numbers(self, arr: pa.Array, offset: int) -> None:
    try:
      numbers = pc.cast(arr, pa.float64())
    except pa.ArrowInvalid:
      i = _first_failure(arr, _cast_fails(pa.float64()))
      self.numeric = False
      self.first_non_number = (offset + i, arr[i].as_py())
      self._floats = []
      return
    values = numbers.to_numpy(zero_copy_only=False)
    null = pc.is_null(numbers).to_numpy(zero_copy_only=False)
    present = values[~null]
    if self.first_non_finite is None and not np.isfinite(present).all():
      bad = int(np.flatnonzero(~np.isfinite(values) & ~null)[0])
      self.first_non_finite = (offset + bad, str(arr[bad].as_py()))
    if self.integral and not (present == np.floor(present)).all():
      self.integral = False
    self._floats.append(values)

  def codes(self) -> np.ndarray:
    return np.concatenate(self._codes) if self._codes else np.empty(0, np.int32)

  def floats(self) -> np.ndarray:
    return np.concatenate(self._floats) if self._floats else np.empty(0, np.float64)

  def forget_rows(self) -> None:
    """Drops the per-row codes and numbers (once the labels are decided)."""
    self._codes, self._floats = [], []

  def first_row_of(self, codes: np.ndarray, bad_codes: np.ndarray) -> Tuple[int, str]:
    """The first row whose code is in bad_codes, and its raw value."""
    row = int(np.flatnonzero(np.isin(codes, bad_codes))[0])
    return row, self.values[codes[row]]


# --- Column plans ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
  """How one feature column is converted and stored.

  Attributes:
    name: the column (and the feature).
    role: fs.NUMERIC, fs.CATEGORICAL or fs.TEXT.
    dtype: "float32", "string" or "int64".
    multivalent: several values a cell (a list column, or a string column split at `multi`).
    multi: the separator a string cell is split at ("" for none).
    hash_buckets: > 0: hashed into this many buckets (set by --columns / --schema).
    bools: true/false strings, normalized to lower case.
    origin: "inferred", "--columns" or "--schema=PATH" (said in conversion errors).
  """
  name: str
  role: str
  dtype: str
  multivalent: bool = False
  multi: str = ""
  hash_buckets: int = 0
  bools: bool = False
  origin: str = "inferred"

  @property
  def arrow_type(self) -> pa.DataType:
    scalar = {"float32": pa.float32(), "string": pa.string(), "int64": pa.int64()}[self.dtype]
    return pa.list_(scalar) if self.multivalent else scalar

  @property
  def kind(self) -> str:
    """The name summaries and the manifest give it."""
    if self.role != fs.CATEGORICAL:
      return self.role
    if self.hash_buckets:
      return "hashed"
    return "multivalent" if self.multivalent else "categorical"


def _plan(name: str, ev: _Evidence, override: Optional[ColumnOverride], where: str
          ) -> Optional[_Plan]:
  """The column's plan from its evidence and override (None: skipped).

  Raises:
    TableError: a type a table cannot hold, lists mixed with single values, or an override
      that does not fit the values (e.g. a list column made numeric).
  """
  kinds = set(ev.kinds)
  unsupported = sorted(k for k in kinds if k.startswith("unsupported"))
  lists = {k for k in kinds if k.startswith("list_")}
  origin = override.origin if override else "inferred"
  if override and override.type == SKIP:
    return None
  if unsupported:
    raise TableError(f"{where}: column {name!r} holds {unsupported[0][len('unsupported '):]}, "
                     f"which a table column cannot hold; drop it with --columns={name}:skip")
  if lists and lists != kinds:
    raise TableError(f"{where}: column {name!r} holds both lists and single values")
  strings = "string" in kinds
  only_ints = kinds == {"int"} or (kinds == {"string"} and ev.can_int)
  ints = only_ints and ev.nonnegative_ints
  if lists:
    int_items = lists == {"list_int"} and ev.nonnegative_ints
    if override and (override.type != CATEGORICAL or override.multi):
      asked = f"multi={override.multi}" if override.multi else override.type
      raise TableError(f"{where}: column {name!r} holds lists, so it is a multivalent "
                       f"categorical ({origin} asks for {asked})")
    dtype = override.dtype if override and override.dtype else ("int64" if int_items else "string")
    return _Plan(name, fs.CATEGORICAL, dtype, multivalent=True,
                 hash_buckets=override.hash_buckets if override else 0, origin=origin)
  if override:
    if override.type == NUMERIC:
      return _Plan(name, fs.NUMERIC, "float32", origin=origin)
    if override.type == TEXT:
      return _Plan(name, fs.TEXT, "string", origin=origin)
    if override.multi and not (strings or not kinds):
      raise TableError(f"{where}: column {name!r}: multi={override.multi} splits strings, but "
                       f"the column holds {', '.join(sorted(kinds))}")
    dtype = override.dtype or ("int64" if ints and not override.multi else "string")
    bools = strings and ev.can_bool and ev.values > 0 and dtype == "string"
    return _Plan(name, fs.CATEGORICAL, dtype, multivalent=bool(override.multi),
                 multi=override.multi, hash_buckets=override.hash_buckets, bools=bools,
                 origin=origin)
  if kinds == {"string"} and ev.values:
    if ev.can_bool:
      return _Plan(name, fs.CATEGORICAL, "string", bools=True)
    if ev.can_int:
      if name.endswith("_id") and ev.nonnegative_ints:
        return _Plan(name, fs.CATEGORICAL, "int64")
      return _Plan(name, fs.NUMERIC, "float32")
    if ev.can_float:
      return _Plan(name, fs.NUMERIC, "float32")
  if kinds == {"int"}:
    if name.endswith("_id") and ev.nonnegative_ints:
      return _Plan(name, fs.CATEGORICAL, "int64")
    return _Plan(name, fs.NUMERIC, "float32")
  if kinds and kinds <= {"int", "float"}:
    return _Plan(name, fs.NUMERIC, "float32")
  if strings and ev.values and (ev.length_sum > TEXT_MEAN_LENGTH * ev.values
                                or 2 * ev.spaced > ev.values):
    return _Plan(name, fs.TEXT, "string")
  return _Plan(name, fs.CATEGORICAL, "string")


# --- Pass 2: typed columns ---------------------------------------------------------------------


class _Converter:
  """Turns one batch's raw arrays into the plans' typed arrays, checking every value.

  Errors name the row through `where(i)` (i: index in the batch) and the column.
  """

  def __init__(self, markers: pa.Array):
    self._markers = markers

  def column(self, plan: _Plan, arr: pa.Array, where: Callable[[int], str]) -> pa.Array:
    arr = _plain(arr)
    if pa.types.is_null(arr.type):
      return pa.nulls(len(arr), plan.arrow_type) if plan.dtype != "float32" else pa.array(
          np.full(len(arr), np.nan, np.float32))
    because = "" if plan.origin == "inferred" else f" (the column is {plan.kind} by {plan.origin})"
    if plan.role == fs.NUMERIC:
      return self._numbers(plan.name, arr, where, because)
    if plan.role == fs.TEXT:
      return self._strings(arr, False)
    if plan.multivalent and not _is_list(arr.type):
      strings = self._strings(arr, plan.bools)
      arr = _map_items(pc.split_pattern(strings, plan.multi), lambda v: _clean(v, self._markers))
    if plan.dtype == "string":
      if _is_list(arr.type):
        return _map_items(arr, lambda v: self._strings(v, plan.bools))
      return self._strings(arr, plan.bools)
    if _is_list(arr.type):
      items = self._ids(plan.name, _plain(arr.values), lambda i: where(
          int(np.searchsorted(arr.offsets.to_numpy(), i, side="right") - 1)), because)
      return pa.ListArray.from_arrays(arr.offsets, items, mask=arr.is_null())
    return self._ids(plan.name, arr, where, because)

  def _strings(self, arr: pa.Array, bools: bool) -> pa.Array:
    if _is_str(arr.type):
      out = _clean(arr, self._markers)
    else:
      out = pc.cast(arr, pa.string())
    return pc.utf8_lower(out) if bools else out

  def _numbers(self, name: str, arr: pa.Array, where, because: str) -> pa.Array:
    text = _is_str(arr.type)
    if text:
      arr = _clean(arr, self._markers)
    try:
      numbers = pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      i = _first_failure(arr, _cast_fails(pa.float64()))
      raise TableError(f"{where(i)}: column {name!r}: {arr[i].as_py()!r} is not a "
                       f"number{because}") from None
    values = numbers.to_numpy(zero_copy_only=False)
    bad = np.isinf(values)
    if text:  # a NaN stored in a typed (Parquet) float column is a missing value; text "nan" is not
      bad |= np.isnan(values) & ~pc.is_null(numbers).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):
      as32 = values.astype(np.float32)
    bad |= np.isinf(as32) & np.isfinite(values)
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      problem = ("does not fit float32" if np.isfinite(values[i])
                 else "is not a finite number (name missing-value markers with --missing)")
      raise TableError(f"{where(i)}: column {name!r}: {arr[i].as_py()!r} {problem}")
    return pa.array(as32)

  def _ids(self, name: str, arr: pa.Array, where, because: str) -> pa.Array:
    if _is_str(arr.type):
      arr = _clean(arr, self._markers)
    try:
      ids = pc.cast(arr, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      i = _first_failure(arr, _cast_fails(pa.int64()))
      raise TableError(f"{where(i)}: column {name!r}: {arr[i].as_py()!r} is not an integer "
                       f"id{because}") from None
    negative = pc.less(ids, 0)
    if pc.any(negative).as_py():
      i = _first(negative)
      raise TableError(f"{where(i)}: column {name!r}: {arr[i].as_py()!r} is not an integer id "
                       f">= 0{because}")
    return ids

  def weights(self, name: str, arr: pa.Array, where) -> pa.Array:
    arr = _plain(arr)
    if pa.types.is_null(arr.type):
      arr = pa.nulls(len(arr), pa.float64())
    elif not (_is_str(arr.type) or _is_number(arr.type)):
      raise TableError(f"{where(0)}: weight column {name!r} holds {arr.type}, not numbers")
    weights = self._numbers(name, arr, where, "")
    values = weights.to_numpy()
    if np.isnan(values).any():
      raise TableError(f"{where(int(np.flatnonzero(np.isnan(values))[0]))}: column {name!r}: "
                       f"missing weight (every example of a --weight_column needs one)")
    if (values < 0).any():
      i = int(np.flatnonzero(values < 0)[0])
      raise TableError(f"{where(i)}: column {name!r}: weight {float(values[i]):g} is negative")
    return weights


class _Analyzer:
  """The analyze phase: one bounded accumulator per column, fed the TRAIN rows."""

  def __init__(self, plans: Sequence[_Plan], options: analyze.AnalyzeOptions):
    self._acc = {}
    for plan in plans:
      if plan.role == fs.CATEGORICAL:
        self._acc[plan.name] = analyze.CategoricalAccumulator(plan.name, options)
      else:  # a text column: the statistics of its lengths
        self._acc[plan.name] = analyze.NumericAccumulator(plan.name, options)
    self._plans = {p.name: p for p in plans}

  def update(self, name: str, arr: pa.Array) -> None:
    plan = self._plans[name]
    if plan.role == fs.NUMERIC:
      self._acc[name].update(arr.to_numpy(zero_copy_only=False))
    elif plan.role == fs.TEXT:
      lengths = pc.cast(pc.utf8_length(arr), pa.float64())
      self._acc[name].update(lengths.to_numpy(zero_copy_only=False))
    elif plan.multivalent:
      self._acc[name].update(arr.to_pylist())
    elif plan.dtype == "int64":
      self._acc[name].update(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False))
    else:
      self._acc[name].update(arr.to_numpy(zero_copy_only=False))

  def result(self, name: str):
    return self._acc[name].result()


# --- The spill file ----------------------------------------------------------------------------


def _remove_spill(directory: str, maps: List[Any], owner: int) -> None:
  if os.getpid() != owner:  # a forked writer process: the directory is its parent's
    return
  for mm in maps:
    try:
      mm.close()
    except (OSError, ValueError):
      pass
  maps.clear()
  shutil.rmtree(directory, ignore_errors=True)


class _Spill:
  """Typed columns in Arrow IPC files in a private temporary directory, read memory-mapped.

  The directory goes when `close()` is called or the object is garbage-collected (only in the
  process that made it: forked writer workers share the mapping and never remove it).
  """

  def __init__(self):
    self.directory = tempfile.mkdtemp(prefix="make_tfrecords-table-")
    self._maps: List[Any] = []
    self._finalizer = weakref.finalize(self, _remove_spill, self.directory, self._maps,
                                       os.getpid())

  def path(self, name: str) -> str:
    return os.path.join(self.directory, name + ".arrow")

  def open(self, name: str) -> pa.Table:
    mm = pa.memory_map(self.path(name))
    self._maps.append(mm)
    return pa.ipc.open_file(mm).read_all()

  def close(self) -> None:
    self._finalizer()


class _SpillWriter:
  """Appends typed batches to one spill file (nothing when there is no spill: --describe)."""

  def __init__(self, spill: Optional[_Spill], name: str, schema: pa.Schema):
    self._writer = (pa.ipc.new_file(spill.path(name), schema) if spill is not None else None)
    self._schema = schema

  def write(self, columns: Mapping[str, pa.Array]) -> None:
    if self._writer is not None:
      self._writer.write_batch(pa.record_batch([columns[f.name] for f in self._schema],
                                               schema=self._schema))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


# --- The source --------------------------------------------------------------------------------


class TableSource(base.Source):
  """A TABLE source whose rows live in the memory-mapped spill file.

  Attributes (besides base.Source's):
    spill_dir: the temporary directory of the spill ("" after --describe, which writes none).
  """

  def __init__(self, spec: fs.FeatureSpec, splits: Mapping[str, np.ndarray],
               description: Mapping[str, Any], identity: Mapping[str, Any],
               assets: Mapping[str, Tuple[str, bytes]], *, tables: Mapping[str, pa.Table],
               labels: Mapping[str, np.ndarray], readers: Mapping[str, _Reader],
               plans: Sequence[_Plan], weight_column: str, summary_lines: Sequence[str],
               spill: Optional[_Spill], describe_only: bool = False):
    """Args:
      spec, splits, description, identity, assets: see base.Source; a split's records are
        row indices into its table.
      tables: split -> the memory-mapped typed table its records index.
      labels: split -> int64 class ids or float32 targets, one per row of its table.
      readers: split -> the reader of its file (names rows in error messages).
      plans: the feature columns' plans, in spec order.
      weight_column: the table column of the weights ("" for none).
      summary_lines: what summary() returns.
      spill: the spill the tables are mapped from (closed by close()); None for none.
      describe_only: opened by --describe (no records).
    """
    super().__init__(spec, splits, description, identity, assets)
    self._tables = tables
    self._labels = labels
    self._readers = readers
    self._plans = plans
    self._weight = weight_column
    self._summary = list(summary_lines)
    self._spill = spill
    self.describe_only = describe_only
    self.spill_dir = spill.directory if spill is not None else ""

  def load(self, split, record):
    values, labels = self.load_batch(split, [record])
    return {k: v[0] for k, v in values.items()}, labels[0]

  def load_batch(self, split, records):
    """Rows by index: numeric columns as float32 [n] arrays (NaN = missing), the others as
    lists of str / int / None (lists of lists when multivalent); labels int64 or float32 [n]."""
    rows = np.asarray(records, dtype=np.int64)
    sub = self._tables[split].take(pa.array(rows))
    values = {}
    for plan in self._plans:
      column = sub.column(plan.name)
      values[plan.name] = column.to_numpy() if plan.role == fs.NUMERIC else column.to_pylist()
    if self._weight:
      values[fs.WEIGHT_KEY] = sub.column(self._weight).to_numpy()
    return values, self._labels[split][rows]

  def describe(self, split, record):
    return self._readers[split].where(int(record))

  def summary(self) -> str:
    return "\n".join(self._summary)

  def close(self) -> None:
    if self._spill is not None:
      self._spill.close()


def _vocab_file(name: str, taken: set) -> str:
  stem = re.sub(r"[^\w.-]", "_", name)
  out, k = f"vocab.{stem}.txt", 1
  while out in taken:
    k += 1
    out = f"vocab.{stem}.{k}.txt"
  taken.add(out)
  return out


def _buckets(distinct: int) -> int:
  """2 * distinct, rounded up to a power of 2."""
  return 1 << max(2 * distinct - 1, 1).bit_length()


def _label_summary(name: str, kind: str, names: Sequence[str], train_ids: np.ndarray) -> str:
  counts = np.bincount(train_ids, minlength=len(names)) if len(train_ids) else np.zeros(len(names))
  total = max(int(counts.sum()), 1)
  order = np.argsort(-counts, kind="stable")[:6]
  shown = ", ".join(f"{names[i]} {counts[i] / total:.1%}" for i in order)
  return (f"label {name}: {kind}, {len(names)} classes (train: {shown}"
          f"{', ...' if len(names) > 6 else ''})")


def open_table(opts: base.SourceOptions, fmt: str, format_: base.Format) -> base.Source:
  """Reads, checks and analyzes a table file (see the module docstring).

  Args:
    opts: the options; format_.options says which ones `fmt` reads.
    fmt: CSV, TSV, PARQUET or JSONL.
    format_: the registered Format (its options go into the description and identity).

  Returns:
    A TableSource; with --describe, one with `describe_only` set and no records, after the
    schema file is written.

  Raises:
    TableError / SchemaError / SplitError: anything wrong with the files or options, each
      naming the file, line and column or the flag.
  """
  _check_options(opts)
  overrides = parse_columns(opts.columns)
  label_map = parse_label_map(opts.label_map)
  schema, schema_text = _input_schema(opts)
  markers = pa.array(sorted(set(opts.missing) | {""}), pa.string())
  train = _reader(fmt, opts, opts.input, "input")
  evalr = _reader(fmt, opts, opts.eval_input, "eval_input") if opts.eval_input else None
  files = [r for r in (train, evalr) if r is not None]
  stamps = {r.path: _stamp(r.path) for r in files}
  identity = {"format": fmt, **base.options_used(format_, opts, with_paths=False),
              "content_sha256": {r.flag: _sha256(r.path) for r in files}}
  if schema is not None:
    identity["schema_sha256"] = hashlib.sha256(schema_text.encode("utf-8")).hexdigest()

  # Pass 1: names, row checks, type evidence, labels.
  evidence, labels, skipped = _scan(train, opts, overrides, schema, markers)
  eval_labels = _scan_eval(evalr, train, opts.label_column, skipped, markers) if evalr else None
  plans = _plans(train, opts, overrides, schema, evidence, skipped)
  kind = opts.label_kind or (schema.label_kind if schema else "")
  kind, label_names, label_ids, eval_ids = _decide_labels(kind, label_map, train, labels, evalr,
                                                          eval_labels)
  split_indices, is_train = _split(opts, kind, label_ids, eval_ids, train.path)

  # Pass 2: convert, analyze the TRAIN rows, spill (not for --describe).
  analyze_options = analyze.AnalyzeOptions(
      vocab_top_k=opts.vocab_top_k, vocab_min_count=opts.vocab_min_count,
      max_tracked=max(100_000, 4 * opts.hash_threshold), seed=opts.seed % (1 << 32))
  analyzer = _Analyzer(plans, analyze_options)
  spill = None if opts.describe else _Spill()
  try:
    fields = [pa.field(p.name, p.arrow_type) for p in plans]
    if opts.weight_column:
      fields.append(pa.field(opts.weight_column, pa.float32()))
    converter = _Converter(markers)
    widths: Dict[str, int] = {}
    for reader, rows, analyzed in ((train, len(label_ids), is_train),
                                   (evalr, len(eval_ids) if evalr else 0, None)):
      if reader is not None:
        _convert_file(reader, plans, opts.weight_column, converter, analyzer, analyzed, rows,
                      _SpillWriter(spill, reader.flag, pa.schema(fields)), widths)
    for reader in files:
      if _stamp(reader.path) != stamps[reader.path]:
        raise TableError(f"--{reader.flag}={reader.path} changed while it was being read; "
                         f"convert a file nothing is writing to")

    plans, columns, assets, lines = _columns(train, plans, analyzer, opts.hash_threshold,
                                             widths)
    label_stats = None
    if kind == fs.REGRESSION:
      acc = analyze.NumericAccumulator(opts.label_column, analyze_options)
      acc.update(label_ids[is_train])
      label_stats = acc.result()
      label_line = analyze.summary_line(opts.label_column, "label", label_stats)
      label_stats = label_stats.to_json_dict()
    else:
      label_line = _label_summary(opts.label_column, kind, label_names, label_ids[is_train])
    spec = fs.table_spec(columns, label_names, kind, weight_key=opts.weight_column,
                         label_stats=label_stats)
    counts = {k: len(v) for k, v in split_indices.items()}
    summary = [f"table {train.path}: {sum(counts.values()):,} rows ("
               + ", ".join(f"{k} {v:,}" for k, v in counts.items())
               + f"), {len(plans)} feature columns"
               + (f", {len(skipped)} skipped" if skipped else "")]
    summary += ["  " + lines[p.name] for p in plans] + ["  " + label_line]
    if opts.weight_column:
      summary.append(f"  weight {opts.weight_column}: per-example weights")

    if opts.describe:
      _write_schema(opts, _schema_doc(train, opts, plans, kind, lines))
      summary.append(f"schema written to {opts.schema} (--describe: no shards written)")
      return TableSource(spec, {}, {"format": fmt}, {}, assets, tables={}, labels={}, readers={},
                         plans=plans, weight_column=opts.weight_column, summary_lines=summary,
                         spill=None, describe_only=True)
    description = {"format": fmt, **base.options_used(format_, opts, with_paths=True),
                   "column_types": {p.name: p.kind for p in plans}, "label_kind": kind,
                   "counts": counts}
    table = spill.open(train.flag)
    tables = {splits_lib.TRAIN: table, splits_lib.EVAL: table}
    all_labels = {splits_lib.TRAIN: label_ids, splits_lib.EVAL: label_ids}
    readers = {splits_lib.TRAIN: train, splits_lib.EVAL: train}
    if evalr is not None:
      tables[splits_lib.EVAL] = spill.open(evalr.flag)
      all_labels[splits_lib.EVAL] = eval_ids
      readers[splits_lib.EVAL] = evalr
    return TableSource(spec, split_indices, description, identity, assets, tables=tables,
                       labels=all_labels, readers=readers, plans=plans,
                       weight_column=opts.weight_column, summary_lines=summary, spill=spill)
  except BaseException:
    if spill is not None:
      spill.close()
    raise


def _check_options(opts: base.SourceOptions) -> None:
  for flag in ("vocab_top_k", "vocab_min_count", "hash_threshold"):
    if getattr(opts, flag) < 1:
      raise TableError(f"--{flag} must be >= 1, got {getattr(opts, flag)}")
  if opts.label_kind and opts.label_kind not in input_kinds.LABEL_KINDS:
    raise TableError(f"--label_kind must be one of {', '.join(input_kinds.LABEL_KINDS)} (or "
                     f"empty to infer it), got {opts.label_kind!r}")
  if opts.eval_input and opts.eval_fraction is not None:
    raise TableError("--eval_fraction does not apply with --eval_input (the eval split is that "
                     "file)")
  if opts.describe and not opts.schema:
    raise TableError("--describe needs --schema: the path to write the inferred schema to")


def _input_schema(opts: base.SourceOptions) -> Tuple[Optional[Schema], str]:
  """The --schema file to apply (with --describe only if it exists already) and its text."""
  if not opts.schema or (opts.describe and not os.path.isfile(opts.schema)):
    return None, ""
  _check_file(opts.schema, "schema")
  with open(opts.schema, encoding="utf-8", errors="replace") as f:
    text = f.read()
  return read_schema(opts.schema, text), text


def _stamp(path: str) -> Tuple[int, int]:
  st = os.stat(path)
  return st.st_size, st.st_mtime_ns


def _scan(train: _Reader, opts: base.SourceOptions, overrides: Mapping[str, ColumnOverride],
          schema: Optional[Schema], markers: pa.Array
          ) -> Tuple[Dict[str, _Evidence], _Labels, set]:
  """Pass 1 over --input: (evidence per column, labels, skipped columns)."""
  label, weight = opts.label_column, opts.weight_column
  if train.names is not None:
    _check_names(train, opts, overrides, schema)
  skipped = {n for n, o in {**(schema.columns if schema else {}), **overrides}.items()
             if o.type == SKIP}
  wanted = None if train.names is None else [n for n in train.names if n not in skipped]
  evidence: Dict[str, _Evidence] = {}
  labels = _Labels(label)
  for columns, n in train.batches(wanted):
    for name, arr in columns.items():
      if name == label:
        labels.add(arr, markers, train.path)
      elif name != weight:
        evidence.setdefault(name, _Evidence()).add(arr, markers)
    if label not in columns:
      labels.add(pa.nulls(n, pa.string()), markers, train.path)
  if not labels.rows:
    raise TableError(train.empty_message())
  if wanted is None:  # JSON Lines: the keys are known now
    _check_names(train, opts, overrides, schema)
  _check_labels_present(train, labels)
  return evidence, labels, skipped


def _scan_eval(evalr: _Reader, train: _Reader, label: str, skipped: set,
               markers: pa.Array) -> _Labels:
  """Pass 1 over --eval_input: its rows are checked and its labels kept."""
  labels = _Labels(label)
  for columns, n in evalr.batches(None if evalr.names is None else [label]):
    labels.add(columns.get(label, pa.nulls(n, pa.string())), markers, evalr.path)
  missing = sorted(set(n for n in train.names if n not in skipped) - set(evalr.names or []))
  if missing:
    raise TableError(f"--eval_input={evalr.path}: no column(s) {', '.join(map(repr, missing))} "
                     f"of --input={train.path}")
  if not labels.rows:
    raise TableError(evalr.empty_message())
  _check_labels_present(evalr, labels)
  return labels


def _plans(train: _Reader, opts: base.SourceOptions, overrides: Mapping[str, ColumnOverride],
           schema: Optional[Schema], evidence: Mapping[str, _Evidence], skipped: set
           ) -> List[_Plan]:
  """The plan of every feature column, in file order (--columns over --schema over inferred)."""
  label, weight = opts.label_column, opts.weight_column
  plans = []
  for name in train.names:
    if name in (label, weight) or name in skipped:
      continue
    override = overrides.get(name) or (schema.columns.get(name) if schema else None)
    plan = _plan(name, evidence.get(name, _Evidence()), override, train.path)
    if plan is not None:
      plans.append(plan)
  if not plans:
    raise TableError(f"{train.path}: no feature columns besides the label column {label!r}"
                     f"{' and the weight column ' + repr(weight) if weight else ''}")
  return plans


def _split(opts: base.SourceOptions, kind: str, label_ids: np.ndarray,
           eval_ids: Optional[np.ndarray], path: str
           ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """(split -> row indices, which --input rows are TRAIN rows)."""
  n = len(label_ids)
  if eval_ids is not None:
    return ({splits_lib.TRAIN: np.arange(n), splits_lib.EVAL: np.arange(len(eval_ids))},
            np.ones(n, bool))
  strata = label_ids if kind != fs.REGRESSION else np.zeros(n, np.int64)
  split_indices = splits_lib.split_indices(strata, opts.resolved_eval_fraction, opts.seed,
                                           source=path)
  is_train = np.zeros(n, bool)
  is_train[split_indices[splits_lib.TRAIN]] = True
  return split_indices, is_train


def _columns(train: _Reader, plans: Sequence[_Plan], analyzer: _Analyzer, hash_threshold: int,
             widths: Mapping[str, int]
             ) -> Tuple[List[_Plan], List[fs.Feature], Dict[str, Tuple[str, bytes]],
                        Dict[str, str]]:
  """(plans with their hash buckets settled, spec features, vocabulary assets, summary lines).

  Args:
    train: the --input reader (named in errors).
    plans: the feature columns' plans.
    analyzer: the analyze phase, fed every TRAIN row.
    hash_threshold: categoricals with more distinct values are hashed.
    widths: a multivalent column's most values in one example (its max_values).
  """
  out_plans, columns, assets, lines, taken = [], [], {}, {}, set()
  for plan in plans:
    stats = analyzer.result(plan.name)
    if not stats.count:
      raise TableError(f"{train.path}: column {plan.name!r} has no value in the train split "
                       f"(every cell is missing); drop it with --columns={plan.name}:skip")
    if plan.role == fs.NUMERIC:
      columns.append(fs.numeric_column(plan.name, stats=stats.to_json_dict()))
    elif plan.role == fs.TEXT:
      columns.append(fs.text_column(plan.name, stats=stats.to_json_dict()))
    else:
      buckets = plan.hash_buckets or (_buckets(stats.distinct)
                                      if stats.distinct > hash_threshold else 0)
      width = widths.get(plan.name, 1) if plan.multivalent else None
      if buckets:
        plan = dataclasses.replace(plan, hash_buckets=buckets)
        columns.append(fs.categorical_column(plan.name, plan.dtype, plan.multivalent,
                                             hash_buckets=buckets, stats=stats.to_json_dict(),
                                             max_values=width))
      else:
        try:
          data = analyze.write_vocabulary(stats, plan.name)
        except analyze.AnalyzeError as e:
          raise TableError(f"{train.path}: {e}") from None
        file = _vocab_file(plan.name, taken)
        assets[f"vocab/{plan.name}"] = (file, data)
        columns.append(fs.categorical_column(plan.name, plan.dtype, plan.multivalent,
                                             vocabulary=file, stats=stats.to_json_dict(),
                                             max_values=width))
    out_plans.append(plan)
    lines[plan.name] = analyze.summary_line(
        plan.name, "text len" if plan.role == fs.TEXT else plan.kind, stats)
  return out_plans, columns, assets, lines


def _write_schema(opts: base.SourceOptions, doc: Mapping[str, Any]) -> None:
  if files_lib.is_local(opts.schema):
    directory = os.path.dirname(os.path.abspath(opts.schema))
    if not os.path.isdir(directory):
      raise TableError(f"--schema={opts.schema}: directory {directory} does not exist")
  files_lib.write_atomically(opts.schema, json.dumps(doc, indent=2) + "\n")


def _most_values(cells: pa.Array) -> int:
  """The most non-missing values one cell of a list array holds."""
  if not len(cells):
    return 0
  present = np.concatenate([[0], np.cumsum(cells.values.is_valid().to_numpy(
      zero_copy_only=False), dtype=np.int64)])
  offsets = cells.offsets.to_numpy()
  return int((present[offsets[1:]] - present[offsets[:-1]]).max())


def _convert_file(reader: _Reader, plans: Sequence[_Plan], weight: str, converter: _Converter,
                  analyzer: _Analyzer, is_train: Optional[np.ndarray], rows: int,
                  out: _SpillWriter, widths: Dict[str, int]) -> None:
  """Pass 2 over one file: typed columns checked, TRAIN rows analyzed, batches spilled, and
  `widths` raised to the most values a cell of each multivalent column holds."""
  wanted = [p.name for p in plans] + ([weight] if weight else [])
  offset = 0
  try:
    for columns, n in reader.batches(wanted):
      where = lambda i, at=offset: reader.where(at + i)
      typed = {p.name: converter.column(p, columns[p.name], where) for p in plans}
      for plan in plans:
        if plan.multivalent:
          widths[plan.name] = max(widths.get(plan.name, 1), _most_values(typed[plan.name]))
      if weight:
        typed[weight] = converter.weights(weight, columns[weight], where)
      if is_train is not None:
        mask = is_train[offset:offset + n]
        every = mask.all()
        keep = None if every else pa.array(mask)
        for plan in plans:
          arr = typed[plan.name]
          analyzer.update(plan.name, arr if every else arr.filter(keep))
      out.write(typed)
      offset += n
  finally:
    out.close()
  if offset != rows:
    raise TableError(f"--{reader.flag}={reader.path} changed while it was being read ({rows} rows "
                     f"first, {offset} then); convert a file nothing is writing to")


def _check_names(reader: _Reader, opts: base.SourceOptions,
                 overrides: Mapping[str, ColumnOverride], schema: Optional[Schema]) -> None:
  """Checks that every column the options name exists, and the schema covers the file."""
  names = reader.names
  label, weight = opts.label_column, opts.weight_column
  if label not in names:
    raise TableError(f"{reader.path}: no label column {label!r} (columns: {_shown(names)})"
                     f"{errors.did_you_mean(label, names)}; name it with --label_column")
  if weight and weight not in names:
    raise TableError(f"{reader.path}: no weight column {weight!r} (columns: {_shown(names)})"
                     f"{errors.did_you_mean(weight, names)}")
  if weight and weight == label:
    raise TableError(f"--weight_column={weight} is the label column")
  for name in overrides:
    if name not in names:
      raise TableError(f"--columns: no column {name!r} in {reader.path}"
                       f"{errors.did_you_mean(name, names)}")
    if name in (label, weight):
      raise TableError(f"--columns: {name!r} is the {'label' if name == label else 'weight'} "
                       f"column; it is not a feature")
  if schema is not None:
    where = f"--schema={schema.path}"
    if schema.label_column and schema.label_column != label:
      raise SchemaError(f"{where} was written for label column {schema.label_column!r}, but "
                        f"--label_column is {label!r}")
    if schema.weight_column is not None and schema.weight_column != weight:
      raise SchemaError(f"{where} was written for weight column {schema.weight_column!r}, but "
                        f"--weight_column is {weight!r}")
    for name in schema.columns:
      if name not in names:
        raise SchemaError(f"{where}: no column {name!r} in {reader.path}"
                          f"{errors.did_you_mean(name, names)}")
      if name in (label, weight):
        raise SchemaError(f"{where}: {name!r} is the label or weight column; list only features")
    absent = [n for n in names if n not in schema.columns and n not in (label, weight)]
    if absent:
      raise SchemaError(f"{where} does not list column(s) {', '.join(map(repr, absent))} of "
                        f"{reader.path}; add them (\"type\": \"skip\" drops a column)")
  skipped = {n for n, o in {**(schema.columns if schema else {}), **overrides}.items()
             if o.type == SKIP}
  for name in names:
    if name in (fs.LABEL_KEY, fs.WEIGHT_KEY) and name not in {label, weight} | skipped:
      raise TableError(f"{reader.path}: column {name!r} has a name the dataset keeps for the "
                       f"{name}; use it as --{name}_column={name} or drop it with "
                       f"--columns={name}:skip")


def _check_labels_present(reader: _Reader, labels: _Labels) -> None:
  if labels.first_missing is not None:
    raise TableError(f"{reader.where(labels.first_missing)}: column {labels.name!r}: missing "
                     f"label (an empty cell or a --missing marker)")


def _decide_labels(kind: str, label_map: Mapping[str, str], reader: _Reader, labels: _Labels,
                   evalr: Optional[_Reader], eval_labels: Optional[_Labels]):
  """(label kind, label names, train label array, eval label array or None).

  Raises:
    TableError: a regression label that is not a finite number, a raw value --label_map does
      not map, an eval label unseen in training, the wrong number of classes for the kind.
  """
  name = labels.name
  if label_map and kind == fs.REGRESSION:
    raise TableError("--label_map maps class labels; it does not apply to "
                     "--label_kind=regression")
  if not kind:
    if label_map:
      kind = fs.BINARY if len(set(label_map.values())) == 2 else fs.MULTICLASS
    elif labels.numeric and (not labels.integral or labels.too_many
                             or len(labels.values) > MAX_INFERRED_CLASSES):
      kind = fs.REGRESSION
    elif len(labels.values) == 2:
      kind = fs.BINARY
    else:
      kind = fs.MULTICLASS
  if kind == fs.REGRESSION:
    out = []
    for r, l in ((reader, labels), (evalr, eval_labels)):
      if r is None:
        out.append(None)
        continue
      if not l.numeric:
        row, value = l.first_non_number
        raise TableError(f"{r.where(row)}: column {name!r}: label {value!r} is not a number (the "
                         f"label is a regression target)")
      if l.first_non_finite is not None:
        row, value = l.first_non_finite
        raise TableError(f"{r.where(row)}: column {name!r}: label {value!r} is not a finite "
                         f"number")
      values = l.floats()
      with np.errstate(over="ignore"):
        as32 = values.astype(np.float32)
      if not np.isfinite(as32).all():
        row = int(np.flatnonzero(~np.isfinite(as32))[0])
        raise TableError(f"{r.where(row)}: column {name!r}: label {values[row]!r} does not fit "
                         f"float32")
      out.append(as32)
      l.forget_rows()
    return kind, (), out[0], out[1]
  if labels.too_many:
    raise TableError(f"{reader.path}: label column {name!r} has more than {MAX_CLASSES:,} "
                     f"distinct values; a regression target? (--label_kind=regression)")
  if label_map:
    names = base.label_names(list(label_map.values()))
  else:
    names = base.label_names(labels.values)
  index = {n: i for i, n in enumerate(names)}
  train_raw = set(labels.values)
  out = []
  for r, l in ((reader, labels), (evalr, eval_labels)):
    if r is None:
      out.append(None)
      continue
    if label_map:
      lookup = np.array([index[label_map[v]] if v in label_map else -1 for v in l.values],
                        np.int64)
    else:
      lookup = np.array([index[v] if v in train_raw else -1 for v in l.values], np.int64)
    codes = l.codes()
    ids = lookup[codes] if len(lookup) else np.empty(0, np.int64)
    if (ids < 0).any():
      row, value = l.first_row_of(codes, np.flatnonzero(lookup < 0))
      if label_map:
        raise TableError(f"{r.where(row)}: column {name!r}: label {value!r} is not in "
                         f"--label_map (it maps {_shown(sorted(label_map), 8)})")
      raise TableError(f"{r.where(row)}: column {name!r}: label {value!r} is not among the "
                       f"labels of --input ({_shown(list(names), 8)}); name every class with "
                       f"--label_map")
    out.append(ids)
    l.forget_rows()
  base.require_classes(names, f"{reader.path} (label column {name!r})")
  if kind == fs.BINARY and len(names) != 2:
    raise TableError(f"{reader.path}: a binary label has 2 classes, column {name!r} has "
                     f"{len(names)} ({_shown(list(names), 6)})")
  return kind, names, out[0], out[1]


def _schema_doc(reader: _Reader, opts: base.SourceOptions, plans: Sequence[_Plan], kind: str,
                lines: Mapping[str, str]) -> Dict[str, Any]:
  """The editable schema --describe writes: every column of the file in file order."""
  by_name = {p.name: p for p in plans}
  columns = []
  for name in reader.names:
    if name in (opts.label_column, opts.weight_column):
      continue
    plan = by_name.get(name)
    if plan is None:
      columns.append({"name": name, "type": SKIP})
      continue
    entry = {"name": name, "type": {fs.NUMERIC: NUMERIC, fs.TEXT: TEXT}.get(plan.role,
                                                                            CATEGORICAL)}
    if plan.role == fs.CATEGORICAL:
      entry["dtype"] = plan.dtype
      if plan.multi:
        entry["multi"] = plan.multi
      if plan.hash_buckets:
        entry["hash_buckets"] = plan.hash_buckets
    if name in lines:
      entry["summary"] = lines[name]
    columns.append(entry)
  return {"schema_version": SCHEMA_VERSION, "source": reader.path,
          "label_column": opts.label_column, "label_kind": kind,
          "weight_column": opts.weight_column, "columns": columns}


def _opener(fmt: str) -> Callable[[base.SourceOptions], base.Source]:
  return lambda opts: open_table(opts, fmt, FORMATS[fmt])


TSV_FORMAT = base.Format(
    name=TSV, open=_opener(TSV), options=TSV_OPTIONS,
    summary="TAB-separated table with a header row (or --column_names): typed columns, "
            "--label_column, stats and vocabularies (see --columns, --schema, --describe)")
PARQUET_FORMAT = base.Format(
    name=PARQUET, open=_opener(PARQUET), options=OPTIONS,
    summary="Parquet table: typed columns, --label_column, stats and vocabularies")
JSONL_FORMAT = base.Format(
    name=JSONL, open=_opener(JSONL), options=OPTIONS,
    summary="JSON Lines (one object per line) table: typed columns, --label_column, stats and "
            "vocabularies")
FORMATS = {f.name: f for f in (TSV_FORMAT, PARQUET_FORMAT, JSONL_FORMAT)}
