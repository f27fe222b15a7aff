"""CSV files with a header row: one label column plus numeric feature columns.

Without --image_shape every other column is a number and the example is a float32 vector
(kind VECTOR, feature "vector", column order as in the header). With --image_shape=H,W,C the
other columns are H*W*C integer pixels in 0..255, row-major, and the example is a uint8 image
(kind IMAGE). Label names are the distinct values of the label column, sorted (numerically
when they are all integers). Blank lines are skipped; everything else is checked before any
shard is written, and errors name the file, line and column.
"""

import csv as csv_lib
import hashlib
import io
from typing import List, Tuple

import numpy as np

from input_fns import feature_spec as fs
from input_fns import splits as splits_lib
from input_fns.formats import base

NAME = "csv"


class CsvError(base.SourceError):
  """A CSV file is malformed; the message names the file, line and column."""


def _rows(path: str, text: str) -> Tuple[List[str], List[List[str]], List[int]]:
  """Header, data rows and their line numbers (1-based, as an editor shows them)."""
  reader = csv_lib.reader(io.StringIO(text, newline=""))
  try:
    header = next(reader, None)
    if header is None:
      raise CsvError(f"empty source: {path} is empty (expected a header row)")
    rows, lines = [], []
    for row in reader:
      if not row or (len(row) == 1 and not row[0].strip()):
        continue
      if len(row) != len(header):
        raise CsvError(f"{path}:{reader.line_num}: {len(row)} fields, but the header has "
                       f"{len(header)} (ragged row)")
      rows.append(row)
      lines.append(reader.line_num)
  except csv_lib.Error as e:
    raise CsvError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
  return [h.strip() for h in header], rows, lines


def _numbers(path: str, cells: List[List[str]], lines: List[int], columns: List[str]) -> np.ndarray:
  """Parses cells as float64, naming the first cell that is not a finite number."""
  try:
    values = np.array(cells, dtype=np.float64)
  except ValueError:
    values = None
  if values is not None and np.isfinite(values).all():
    return values
  for row, line in zip(cells, lines):
    for cell, column in zip(row, columns):
      try:
        number = float(cell)
      except ValueError:
        raise CsvError(f"{path}:{line}: column {column!r}: {cell!r} is not a number") from None
      if not np.isfinite(number):
        raise CsvError(f"{path}:{line}: column {column!r}: {cell!r} is not a finite number")
  raise AssertionError("unreachable: numpy and float() disagree")


def open_source(opts: base.SourceOptions) -> base.Source:
  """Reads and checks the whole CSV file named by --input.

  Raises:
    CsvError / SourceError / SplitError: missing file or label column, ragged rows,
      non-numeric or out-of-range values, no rows, fewer than 2 classes.
  """
  path = opts.input
  raw = base.read_input(path, "input")
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise CsvError(f"{path}: not UTF-8 text (byte {e.start})") from None
  header, rows, lines = _rows(path, text)
  if opts.label_column not in header:
    raise CsvError(f"{path}: no label column {opts.label_column!r} in the header (columns: "
                   f"{', '.join(header[:20])}{', ...' if len(header) > 20 else ''}); "
                   f"name it with --label_column")
  if not rows:
    raise CsvError(f"empty source: {path} has a header but no data rows")
  label_at = header.index(opts.label_column)
  columns = [h for i, h in enumerate(header) if i != label_at]
  if not columns:
    raise CsvError(f"{path}: no feature columns besides the label column {opts.label_column!r}")
  label_strings = [row[label_at].strip() for row in rows]
  cells = [row[:label_at] + row[label_at + 1:] for row in rows]
  values = _numbers(path, cells, lines, columns)
  names = base.label_names(label_strings)
  base.require_classes(names, path)
  index = {name: i for i, name in enumerate(names)}
  labels = np.array([index[s] for s in label_strings], dtype=np.int64)

  if opts.image_shape is not None:
    height, width, channels = opts.image_shape
    if height * width * channels != len(columns):
      raise CsvError(f"{path}: --image_shape={height},{width},{channels} needs "
                     f"{height * width * channels} pixel columns, the file has {len(columns)}")
    bad = (values != np.round(values)) | (values < 0) | (values > 255)
    if bad.any():
      r, c = np.argwhere(bad)[0]
      raise CsvError(f"{path}:{lines[r]}: column {columns[c]!r}: {cells[r][c]!r} is not an "
                     f"integer pixel value in 0..255")
    spec = fs.image_spec(height, width, channels, names, value_range=(0, 255))
    features = {"image": values.astype(np.uint8).reshape(-1, height, width, channels)}
  else:
    as_float32 = values.astype(np.float32)
    if not np.isfinite(as_float32).all():
      r, c = np.argwhere(~np.isfinite(as_float32))[0]
      raise CsvError(f"{path}:{lines[r]}: column {columns[c]!r}: {cells[r][c]!r} does not "
                     f"fit float32")
    spec = fs.vector_spec(len(columns), names)
    features = {"vector": as_float32}

  split_indices = splits_lib.split_indices(labels, opts.resolved_eval_fraction, opts.seed,
                                           source=path)
  description = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=True),
                 "columns": columns, "counts": {k: len(v) for k, v in split_indices.items()}}
  identity = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=False),
              "content_sha256": hashlib.sha256(raw).hexdigest()}
  return base.ArraySource(spec, features, labels, split_indices, description, identity,
                          record_name=lambda i: f"{path} line {lines[i]}")


FORMAT = base.Format(
    name=NAME, open=open_source,
    options=("input", "label_column", "image_shape", "eval_fraction", "seed"),
    summary="CSV with a header row: --label_column plus numeric columns (or pixels with "
            "--image_shape=H,W,C)")
