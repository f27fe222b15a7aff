"""Every source format by its --format name. Adding one: a module here plus one line below."""

import dataclasses
from typing import Tuple

from input_fns.formats import base
from input_fns.formats import csv
from input_fns.formats import digits
from input_fns.formats import idx
from input_fns.formats import image_dir
from input_fns.formats import table
from input_fns.formats import text

_FORMATS = {f.name: f for f in (
    csv.FORMAT,
    digits.FORMAT,
    idx.FORMAT,
    image_dir.FORMAT,
    table.JSONL_FORMAT,
    table.PARQUET_FORMAT,
    table.TSV_FORMAT,
    text.FORMAT,
)}


def names() -> Tuple[str, ...]:
  return tuple(sorted(_FORMATS))


def get(name: str) -> base.Format:
  """Raises FormatError naming the known formats."""
  if name not in _FORMATS:
    raise base.FormatError(f"unknown --format={name!r}; known: {', '.join(names())}")
  return _FORMATS[name]


def open_source(name: str, opts: base.SourceOptions) -> base.Source:
  """Opens a source, first refusing options the format would silently ignore.

  Raises:
    FormatError: unknown format, or an option set that `name` does not read.
    UserInputError subclasses: whatever the format finds wrong with its input.
  """
  fmt = get(name)
  defaults = base.SourceOptions()
  for field in dataclasses.fields(base.SourceOptions):
    if field.name not in fmt.options and getattr(opts, field.name) != getattr(defaults, field.name):
      raise base.FormatError(f"--{field.name} does not apply to --format={name} (it reads: "
                             f"{', '.join('--' + o for o in fmt.options)})")
  return fmt.open(opts)
