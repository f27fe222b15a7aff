"""TFRecord files of tf.train.Example protos, written and read without TensorFlow.

The writer's worker processes are forked from a parent that may already run TensorFlow, whose
runtime is not fork-safe; so workers encode and frame records with this module alone (numpy,
zlib, hashlib, google_crc32c) and never call into TF. The bytes are the standard format:
`tf.data.TFRecordDataset` and `tf.io.parse_example` read them (tests/input_fns/records_test.py).

TFRecord framing, per record: uint64 length, uint32 masked crc32c of the length, the data,
uint32 masked crc32c of the data (all little-endian). A GZIP file is the framed stream inside
one gzip member. The Example encoding writes map entries sorted by key, so the same example
always gives the same bytes (TF's own serializer does not promise a map order).
"""

import gzip
import hashlib
import os
import struct
import zlib
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import google_crc32c
import numpy as np

from input_fns import errors
from input_fns import input_kinds

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_GZIP_LEVEL = 6  # zlib's default, as TF's writer uses
_LABEL_KEY = "label"  # feature_spec.LABEL_KEY (not imported: that module pulls in TF)
_WEIGHT_KEY = "weight"  # feature_spec.WEIGHT_KEY
# Feature's oneof field tags: bytes_list = 1, float_list = 2, int64_list = 3 (wire type 2).
_BYTES_TAG, _FLOAT_TAG, _INT64_TAG = 0x0A, 0x12, 0x1A


class EncodeError(errors.UserInputError):
  """A value does not match the feature spec it is encoded with."""


class RecordFileError(errors.UserInputError):
  """A TFRecord file is truncated or corrupted."""


def masked_crc32c(data: bytes) -> int:
  """The CRC32C of `data`, masked the way TFRecord stores it."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
  """One record in TFRecord framing."""
  length = _LENGTH.pack(len(record))
  return b"".join((length, _CRC.pack(masked_crc32c(length)), record,
                   _CRC.pack(masked_crc32c(record))))


# --- tf.train.Example encoding ---------------------------------------------------------------
# Example{features=1: Features{feature=1: map<string, Feature>}}; a map entry is {key=1, value=2};
# Feature is a oneof {bytes_list=1, float_list=2, int64_list=3}; each list's values are field 1
# (bytes repeated; floats and int64s packed).


def _varint(n: int) -> bytes:
  out = bytearray()
  while n > 0x7F:
    out.append((n & 0x7F) | 0x80)
    n >>= 7
  out.append(n)
  return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
  """A length-delimited field whose tag byte is `tag`."""
  return bytes((tag,)) + _varint(len(payload)) + payload


_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_POSITIONS = np.arange(10)


def packed_varints(values: np.ndarray) -> bytes:
  """Packed int64 varints (negative values take 10 bytes, two's complement), vectorized."""
  v = np.asarray(values, dtype=np.int64).ravel().view(np.uint64)
  groups = (v[:, None] >> _SHIFTS[None, :]) & np.uint64(0x7F)
  used = 1 + np.count_nonzero((v[:, None] >> _SHIFTS[None, 1:]) != 0, axis=1)
  keep = _POSITIONS[None, :] < used[:, None]
  more = _POSITIONS[None, :] < (used[:, None] - 1)
  out = groups.astype(np.uint8) | (more.astype(np.uint8) << 7)
  return out[keep].tobytes()


def table_values(f: Any, value) -> Optional[list]:
  """A TABLE column's value as the list stored in its Example, or None when it is missing.

  Args:
    f: a feature_spec.Feature with a role (NUMERIC, CATEGORICAL or TEXT).
    value: a number or array of the column's shape (NaN or None = missing) for NUMERIC; a
      string or int id (None, "" or b"" = missing) for CATEGORICAL, a list of them when
      multivalent; a string (None = missing) for TEXT.

  Returns:
    floats, ints or UTF-8 bytes; None when the Example should not hold the column (NUMERIC
    values are stored even when NaN: they parse to NaN either way).

  Raises:
    EncodeError: the value does not fit the column (count, dtype, a list for a single value).
  """
  where = f"feature {f.name!r}"
  if f.role == input_kinds.NUMERIC:
    try:
      arr = np.asarray(np.nan if value is None else value, dtype=np.float64)
    except (TypeError, ValueError):
      raise EncodeError(f"{where}: {value!r} is not a number") from None
    size = int(np.prod(f.shape))
    if arr.size != size:
      raise EncodeError(f"{where}: expected {size} number(s), got shape {list(arr.shape)}")
    flat = arr.ravel()
    as32 = flat.astype(np.float32)
    if (np.isinf(as32) & ~np.isinf(flat)).any():
      raise EncodeError(f"{where}: {flat.tolist()} does not fit float32")
    return as32.tolist()
  is_list = isinstance(value, (list, tuple, np.ndarray))
  if is_list and not f.multivalent:
    raise EncodeError(f"{where}: one value expected (the column is not multivalent), got a list")
  out = []
  for item in (value if is_list else [value]):
    if item is None or (f.role == input_kinds.CATEGORICAL and (item == "" or item == b"")):
      continue
    if f.dtype == "string":
      if isinstance(item, bytes):
        out.append(item)
      elif isinstance(item, str):
        out.append(item.encode("utf-8"))
      else:
        raise EncodeError(f"{where}: {item!r} is not a string")
      continue
    try:
      number = int(item)
    except (TypeError, ValueError):
      raise EncodeError(f"{where}: {item!r} is not an integer id") from None
    if number != item or number < 0:
      raise EncodeError(f"{where}: {item!r} is not a non-negative integer id")
    out.append(number)
  if f.multivalent and len(out) > f.shape[0]:
    raise EncodeError(f"{where}: {len(out)} values, the column holds at most {f.shape[0]} "
                      f"(its max_values)")
  if not out and (f.role == input_kinds.CATEGORICAL or value is None):
    return None
  return out


def _list_body(dtype: str, values: list) -> bytes:
  """The body of a Feature's BytesList / FloatList / Int64List (numbers packed)."""
  if dtype == "string":
    return b"".join(b"\x0a" + _varint(len(v)) + v for v in values)
  data = (np.asarray(values, "<f4").tobytes() if dtype == "float32"
          else packed_varints(np.asarray(values, np.int64)))
  return b"\x0a" + _varint(len(data)) + data


def _entry(key: bytes, tag: int, body: bytes) -> bytes:
  """Map entry{key, value=Feature{tag: List(body)}}; `key` is the encoded key field."""
  feature = bytes((tag,)) + _varint(len(body)) + body
  inner = key + b"\x12" + _varint(len(feature)) + feature
  return b"\x0a" + _varint(len(inner)) + inner


_NO_FAST_PATH = object()  # a fast entry function's "take the general path for this value"
_F32 = struct.Struct("<f")
_MAX_CACHED = 200_000  # entries cached per column (categorical and text values repeat)


def _fast_entry(f: Any, key: bytes) -> Callable[[Any], Any]:
  """value -> its map entry bytes (b"" when missing), or _NO_FAST_PATH for `table_values`.

  The general path checks and converts every value with numpy (~25 us a column): scalar
  numerics are packed directly, and the entries of categorical and text values are cached by
  value, which is what repeats. Every result equals the general path's (records_test).
  """
  if f.role == input_kinds.NUMERIC and int(np.prod(f.shape)) == 1:
    header = _entry(key, _FLOAT_TAG, b"\x0a\x04" + b"\0" * 4)[:-4]
    nan = header + _F32.pack(float("nan"))

    def numeric(value):
      if value is None:
        return nan
      if not isinstance(value, (float, int, np.floating, np.integer)) or isinstance(value, bool):
        return _NO_FAST_PATH
      try:
        return header + _F32.pack(value)
      except OverflowError:
        return _NO_FAST_PATH  # the general path names it: does not fit float32
    return numeric

  cache: Dict[Any, bytes] = {}
  dtype = "string" if f.dtype == "string" else "int64"
  tag = _BYTES_TAG if dtype == "string" else _INT64_TAG

  def cached(value):
    if not isinstance(value, (str, bytes, int, np.integer)) and value is not None:
      return _NO_FAST_PATH
    try:
      return cache[value]
    except KeyError:
      pass
    except TypeError:
      return _NO_FAST_PATH
    stored = table_values(f, value)
    entry = b"" if stored is None else _entry(key, tag, _list_body(dtype, stored))
    if len(cache) >= _MAX_CACHED:
      cache.clear()
    cache[value] = entry
    return entry
  return cached


class ExampleEncoder:
  """Encodes (values, label) into serialized tf.train.Example bytes for one feature spec.

  Checks exactly what `FeatureSpec.encode` checks (presence, shape, values fitting the dtype,
  label range) and produces an Example that parses to the same tensors. Every header byte of a
  map entry depends only on the key and the data's length, so headers are cached per length
  and each example costs little more than copying its data.
  """

  def __init__(self, spec: Any):
    """Args:
      spec: a feature_spec.FeatureSpec (read for its features and num_classes only).
    """
    self._num_classes = spec.num_classes
    self._table = spec.kind == input_kinds.TABLE
    self._regression = getattr(spec, "label_kind", "") == input_kinds.REGRESSION
    self._weighted = bool(getattr(spec, "weight_key", ""))
    self._label_key = _field(0x0A, _LABEL_KEY.encode())
    self._labels = {}
    if self._table or self._regression or self._weighted:
      self._columns = sorted(
          [(f.name, f) for f in spec.features] + [(_LABEL_KEY, None)]
          + ([(_WEIGHT_KEY, None)] if self._weighted else []), key=lambda e: e[0])
      self._keys = {name: _field(0x0A, name.encode()) for name, _ in self._columns}
      self._fast = {name: _fast_entry(f, self._keys[name]) for name, f in self._columns
                    if f is not None and f.role and not f.multivalent}
      self._order = None
      return
    order = sorted([(f.name, f) for f in spec.features] + [(_LABEL_KEY, None)],
                   key=lambda e: e[0])
    self._order = []
    for name, f in order:
      if f is None:
        self._order.append(None)
      else:
        tag = {"raw": 0x0A, "float_list": 0x12, "int64_list": 0x1A}[f.encoding]
        self._order.append((name, np.dtype(f.dtype), tuple(f.shape), f.encoding,
                            _field(0x0A, name.encode()), tag, {}))
    self._label_key = _field(0x0A, _LABEL_KEY.encode())
    self._labels = {}

  @staticmethod
  def _prefix(key: bytes, tag: int, data_len: int) -> bytes:
    """Map entry bytes before the data: entry{key, value=Feature{tag: List{1: data}}}."""
    inner = 1 + len(_varint(data_len)) + data_len
    feature = 1 + len(_varint(inner)) + inner
    entry = len(key) + 1 + len(_varint(feature)) + feature
    return b"".join((b"\x0a", _varint(entry), key, b"\x12", _varint(feature), bytes((tag,)),
                     _varint(inner), b"\x0a", _varint(data_len)))

  def _label_entry(self, label: int) -> bytes:
    entry = self._labels.get(label)
    if entry is None:
      data = _varint(label)
      entry = self._labels[label] = self._prefix(self._label_key, 0x1A, len(data)) + data
    return entry

  def encode(self, values: Mapping[str, Any], label: int) -> bytes:
    """Returns one serialized tf.train.Example.

    Raises:
      EncodeError: a feature is missing, has the wrong shape or does not fit its dtype
        exactly, or the label is out of range.
    """
    if self._order is None:
      return self._encode_table(values, label)
    label = int(label)
    if not 0 <= label < self._num_classes:
      raise EncodeError(f"label {label} is out of range [0, {self._num_classes})")
    parts = []
    for item in self._order:
      if item is None:
        parts.append(self._label_entry(label))
        continue
      name, dtype, shape, encoding, key, tag, prefixes = item
      if name not in values:
        raise EncodeError(f"feature {name!r} is missing")
      arr = values[name]
      if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
      if arr.shape != shape:
        raise EncodeError(f"feature {name!r}: expected shape {shape}, got {arr.shape}")
      if arr.dtype != dtype:
        cast = arr.astype(dtype)
        if not np.array_equal(cast, arr):
          raise EncodeError(f"feature {name!r}: values do not fit dtype {dtype} exactly")
        arr = cast
      if encoding == "raw":
        data = arr.tobytes()
      elif encoding == "int64_list":
        data = packed_varints(arr)
      else:
        data = arr.astype("<f4", copy=False).tobytes()
      prefix = prefixes.get(len(data))
      if prefix is None:
        prefix = prefixes[len(data)] = self._prefix(key, tag, len(data))
      parts.append(prefix)
      parts.append(data)
    body = b"".join(parts)
    return b"\x0a" + _varint(len(body)) + body


  def _encode_table(self, values: Mapping[str, Any], label) -> bytes:
    """One Example of a TABLE, REGRESSION or weighted spec (entries sorted by key; missing
    columns left out)."""
    parts = []
    for name, f in self._columns:
      key = self._keys[name]
      if name == _LABEL_KEY:
        if self._regression:
          target = float(label)
          if not np.isfinite(target) or not np.isfinite(np.float32(target)):
            raise EncodeError(f"regression label {label!r} is not a finite float32")
          parts.append(_entry(key, _FLOAT_TAG, _list_body("float32", [target])))
        else:
          label = int(label)
          if not 0 <= label < self._num_classes:
            raise EncodeError(f"label {label} is out of range [0, {self._num_classes})")
          parts.append(self._label_entry(label))
        continue
      if name == _WEIGHT_KEY:
        weight = float(values.get(_WEIGHT_KEY, 1.0))
        if not np.isfinite(weight) or weight < 0:
          raise EncodeError(f"example weight {values.get(_WEIGHT_KEY)!r} is not a finite "
                            f"number >= 0")
        parts.append(_entry(key, _FLOAT_TAG, _list_body("float32", [weight])))
        continue
      if name not in values:
        raise EncodeError(f"feature {name!r} is missing (pass None for a missing value)")
      value = values[name]
      fast = self._fast.get(name)
      if fast is not None:
        entry = fast(value)
        if entry is not _NO_FAST_PATH:
          if entry:
            parts.append(entry)
          continue
      if f.role:
        stored = table_values(f, value)
      else:
        arr = np.asarray(values[name])
        if arr.shape != tuple(f.shape):
          raise EncodeError(f"feature {name!r}: expected shape {tuple(f.shape)}, got {arr.shape}")
        cast = arr.astype(f.dtype)
        if not np.array_equal(cast, arr):
          raise EncodeError(f"feature {name!r}: values do not fit dtype {f.dtype} exactly")
        stored = [cast.tobytes()] if f.encoding == "raw" else cast.ravel().tolist()
      if stored is None:
        continue
      dtype = "string" if f.encoding in ("raw", "bytes_list") else f.dtype
      tag = {"string": _BYTES_TAG, "float32": _FLOAT_TAG, "int64": _INT64_TAG}[dtype]
      parts.append(_entry(key, tag, _list_body(dtype, stored)))
    body = b"".join(parts)
    return b"\x0a" + _varint(len(body)) + body

  def encode_batch(self, values: Mapping[str, Any], labels: np.ndarray) -> Optional[np.ndarray]:
    """Encodes n examples at once, vectorized, when they all serialize to one length L.

    That holds when every feature is "raw" or "float_list" (fixed width) and every label's
    varint has the same length (e.g. all labels < 128). The rows are byte-identical to
    `encode` of each example.

    Args:
      values: feature name -> array [n, *shape].
      labels: int array [n].

    Returns:
      uint8 array [n, L] of serialized examples, or None if the batch does not qualify or a
      value does not fit the spec; then encode each example (which names what is wrong).
    """
    if self._order is None:
      return None
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0 or labels.ndim != 1 or labels.min() < 0 or labels.max() >= self._num_classes:
      return None
    label_bytes = _varint_columns(labels)
    if label_bytes is None:
      return None
    pieces = []  # (constant bytes, None) or (None, uint8 array [n, k])
    for item in self._order:
      if item is None:
        pieces.append((self._prefix(self._label_key, 0x1A, label_bytes.shape[1]), None))
        pieces.append((None, label_bytes))
        continue
      name, dtype, shape, encoding, key, tag, _ = item
      if encoding == "int64_list" or name not in values:
        return None
      arr = np.asarray(values[name])
      if arr.shape != (n,) + shape:
        return None
      if arr.dtype != dtype:
        cast = arr.astype(dtype)
        if not np.array_equal(cast, arr):
          return None
        arr = cast
      if encoding == "float_list":
        arr = arr.astype("<f4", copy=False)
      data = np.ascontiguousarray(arr).reshape(n, -1).view(np.uint8)
      pieces.append((self._prefix(key, tag, data.shape[1]), None))
      pieces.append((None, data))
    body = sum(len(c) if c is not None else a.shape[1] for c, a in pieces)
    pieces.insert(0, (b"\x0a" + _varint(body), None))
    out = np.empty((n, sum(len(c) if c is not None else a.shape[1] for c, a in pieces)), np.uint8)
    at = 0
    for const, arr in pieces:
      if const is not None:
        out[:, at:at + len(const)] = np.frombuffer(const, np.uint8)
        at += len(const)
      else:
        out[:, at:at + arr.shape[1]] = arr
        at += arr.shape[1]
    return out


def _varint_columns(values: np.ndarray) -> Optional[np.ndarray]:
  """Varints of non-negative ints as an [n, k] uint8 array, or None if their lengths differ."""
  v = values.astype(np.uint64)
  used = 1 + np.count_nonzero((v[:, None] >> _SHIFTS[None, 1:]) != 0, axis=1)
  if used.min() != used.max():
    return None
  k = int(used[0])
  groups = ((v[:, None] >> _SHIFTS[None, :k]) & np.uint64(0x7F)).astype(np.uint8)
  groups[:, :k - 1] |= 0x80
  return groups


# --- Files -----------------------------------------------------------------------------------


class ShardWriter:
  """Writes framed records to one file, hashing the bytes on disk as they are written.

  Use as a context manager or call close(); close() returns (count, bytes, sha256 hex) of the
  file and fsyncs it, so a rename afterwards publishes complete, durable bytes.
  """

  def __init__(self, path: str, compression: str = "", buffer_bytes: int = 4 << 20):
    self._file = open(path, "wb")  # pylint: disable=consider-using-with
    self._sha = hashlib.sha256()
    self._zip = (zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                 if compression == "GZIP" else None)
    self._parts = []
    self._heads = {}
    self._buffered = 0
    self._limit = buffer_bytes
    self.count = 0
    self.bytes = 0

  def write(self, record: bytes) -> None:
    head = self._heads.get(len(record))
    if head is None:  # records of a fixed-shape spec mostly share a few lengths
      length = _LENGTH.pack(len(record))
      head = length + _CRC.pack(masked_crc32c(length))
      if len(self._heads) < 4096:
        self._heads[len(record)] = head
    self._parts.append(head)
    self._parts.append(record)
    self._parts.append(_CRC.pack(masked_crc32c(record)))
    self._buffered += len(record) + 16
    self.count += 1
    if self._buffered >= self._limit:
      self._flush()

  def write_rows(self, rows: np.ndarray) -> None:
    """Writes each row of a uint8 array [n, L] as one record (same bytes as write() per row)."""
    n, length = rows.shape
    head = self._heads.get(length)
    if head is None:
      packed = _LENGTH.pack(length)
      head = self._heads[length] = packed + _CRC.pack(masked_crc32c(packed))
    data = rows.tobytes()
    crc = np.fromiter((google_crc32c.value(data[i * length:(i + 1) * length]) for i in range(n)),
                      np.uint32, n)
    masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
    framed = np.empty((n, 12 + length + 4), np.uint8)
    framed[:, :12] = np.frombuffer(head, np.uint8)
    framed[:, 12:12 + length] = rows
    framed[:, 12 + length:] = masked.astype("<u4").view(np.uint8).reshape(n, 4)
    self._flush()
    self._emit(framed)  # through the buffer protocol: no further copy
    self.count += n

  def _flush(self) -> None:
    if self._parts:
      data = b"".join(self._parts)
      self._parts, self._buffered = [], 0
      self._emit(data)

  def _emit(self, data) -> None:
    """Writes and hashes bytes or a C-contiguous uint8 array (compressing first if GZIP)."""
    if self._zip is not None:
      data = self._zip.compress(data)
    self._write(data)

  def _write(self, data) -> None:
    size = memoryview(data).nbytes
    if size:
      self._file.write(data)
      self._sha.update(data)
      self.bytes += size

  def close(self) -> Tuple[int, int, str]:
    if self._file.closed:
      return self.count, self.bytes, self._sha.hexdigest()
    self._flush()
    if self._zip is not None:
      self._write(self._zip.flush())
    self._file.flush()
    os.fsync(self._file.fileno())
    self._file.close()
    return self.count, self.bytes, self._sha.hexdigest()

  def abort(self) -> None:
    """Closes without flushing (the file is about to be removed)."""
    self._file.close()

  def __enter__(self) -> "ShardWriter":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def read_records(path: str, compression: str = "") -> Iterator[bytes]:
  """Yields the records of a local TFRecord file, checking every CRC.

  Raises:
    RecordFileError: naming the file and record index that is truncated or corrupted.
  """
  opener = gzip.open if compression == "GZIP" else open
  try:
    with opener(path, "rb") as f:
      index = 0
      while True:
        head = f.read(12)
        if not head:
          return
        if len(head) < 12:
          raise RecordFileError(f"{path}: record {index} is truncated (header)")
        (length,) = _LENGTH.unpack(head[:8])
        if _CRC.unpack(head[8:])[0] != masked_crc32c(head[:8]):
          raise RecordFileError(f"{path}: record {index} has a corrupted length")
        data = f.read(length)
        crc = f.read(4)
        if len(data) < length or len(crc) < 4:
          raise RecordFileError(f"{path}: record {index} is truncated")
        if _CRC.unpack(crc)[0] != masked_crc32c(data):
          raise RecordFileError(f"{path}: record {index} is corrupted (crc mismatch)")
        yield data
        index += 1
  except (EOFError, OSError, zlib.error) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise RecordFileError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
