"""CSV files: a typed table, or with --image_shape rows of pixels.

Without --image_shape the file is a table (input_fns/formats/table.py: numeric, categorical and
text columns, a TABLE spec with statistics and vocabularies; --delimiter, --column_names and
the other table options apply).

With --image_shape=H,W,C the file has a header row, a label column and H*W*C integer pixel
columns in 0..255, row-major, and the example is a uint8 image (kind IMAGE). Label names are
the distinct values of the label column, sorted (numerically when they are all integers).
Blank lines are skipped; everything else is checked before any shard is written, and errors
name the file, line and column. The table options do not apply then.
"""

import csv as csv_lib
import dataclasses
import hashlib
import io
from typing import List, Tuple

import numpy as np

from input_fns import feature_spec as fs
from input_fns import splits as splits_lib
from input_fns.formats import base
from input_fns.formats import table

NAME = "csv"
# What pixel mode reads: its description and identity keep exactly these, as before tables.
_PIXEL_OPTIONS = ("input", "label_column", "image_shape", "eval_fraction", "seed")


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
  """Opens --input as a table, or as pixel rows with --image_shape.

  Raises:
    FormatError: a table option given with --image_shape.
    UserInputError subclasses: see `open_pixels` and table.open_table.
  """
  if opts.image_shape is None:
    return table.open_table(opts, table.CSV, FORMAT)
  defaults = base.SourceOptions()
  for name in FORMAT.options:
    if name not in _PIXEL_OPTIONS and getattr(opts, name) != getattr(defaults, name):
      raise base.FormatError(f"--{name} does not apply to --format=csv with --image_shape "
                             f"(pixel columns; it reads: "
                             f"{', '.join('--' + o for o in _PIXEL_OPTIONS)})")
  return open_pixels(opts)


def open_pixels(opts: base.SourceOptions) -> base.Source:
  """Reads and checks the whole CSV file of pixel rows named by --input (--image_shape set).

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

  split_indices = splits_lib.split_indices(labels, opts.resolved_eval_fraction, opts.seed,
                                           source=path)
  description = {"format": NAME, **base.options_used(_PIXELS, opts, with_paths=True),
                 "columns": columns, "counts": {k: len(v) for k, v in split_indices.items()}}
  identity = {"format": NAME, **base.options_used(_PIXELS, opts, with_paths=False),
              "content_sha256": hashlib.sha256(raw).hexdigest()}
  return base.ArraySource(spec, features, labels, split_indices, description, identity,
                          record_name=lambda i: f"{path} line {lines[i]}")


FORMAT = base.Format(
    name=NAME, open=open_source, options=table.CSV_OPTIONS + ("image_shape",),
    summary="CSV table with a header row (or --column_names): typed numeric, categorical and "
            "text columns plus --label_column, stats and vocabularies (see --columns, --schema, "
            "--describe); or pixel columns with --image_shape=H,W,C")
# Pixel mode's view of the format (not registered): the options it reads.
_PIXELS = dataclasses.replace(FORMAT, open=open_pixels, options=_PIXEL_OPTIONS)
