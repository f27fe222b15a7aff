"""IDX files of the MNIST family (MNIST, Fashion-MNIST, EMNIST, KMNIST), plain or gzipped.

An IDX file is a big-endian header (magic 0x00000803 for [N, H, W] unsigned-byte images,
0x00000801 for [N] unsigned-byte labels, then one uint32 per dimension) followed by the data.
Label names are "0" .. str(max label). Without --eval_images/--eval_labels the eval split is a
seeded stratified --eval_fraction of the training file.
"""

import gzip
import struct
import zlib
from typing import Tuple

import numpy as np

from input_fns import feature_spec as fs
from input_fns import splits as splits_lib
from input_fns.formats import base

NAME = "idx"
_UNSIGNED_BYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(base.SourceError):
  """An IDX file is malformed, truncated, or does not match its partner file."""


def _decompressed(path: str, raw: bytes) -> bytes:
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    return gzip.decompress(raw)
  except (EOFError, OSError, zlib.error) as e:
    raise IdxError(f"{path}: truncated or corrupt gzip data ({e})") from None


def parse(path: str, data: bytes, ndim: int, what: str) -> np.ndarray:
  """Parses one (decompressed) IDX file of unsigned bytes with `ndim` dimensions.

  Raises:
    IdxError: wrong magic number, or the data does not have the size the header says.
  """
  expected = (_UNSIGNED_BYTE << 8) | ndim
  if len(data) < 4:
    raise IdxError(f"{path}: {len(data)} bytes is too short for an IDX header")
  (magic,) = struct.unpack(">I", data[:4])
  if magic != expected:
    raise IdxError(f"{path}: wrong magic number 0x{magic:08X}; an IDX {what} file starts with "
                   f"0x{expected:08X} (unsigned bytes, {ndim} dimensions)")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise IdxError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
  dims = struct.unpack(f">{ndim}I", data[4:header])
  need = int(np.prod(dims, dtype=np.int64))
  have = len(data) - header
  if have != need:
    shape = " x ".join(str(d) for d in dims)
    raise IdxError(f"{path}: header says {shape} = {need:,} bytes of data but the file has "
                   f"{have:,} (truncated or not an IDX file)")
  return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_pair(images_path: str, labels_path: str, images_flag: str,
              labels_flag: str) -> Tuple[np.ndarray, np.ndarray, str]:
  """Reads matching images [N, H, W, 1] and labels [N], plus a digest of both files.

  Raises:
    IdxError / SourceError: a file is missing, malformed, empty, or their counts differ.
  """
  raw_images = base.read_input(images_path, images_flag)
  raw_labels = base.read_input(labels_path, labels_flag)
  images = parse(images_path, _decompressed(images_path, raw_images), 3, "images")
  labels = parse(labels_path, _decompressed(labels_path, raw_labels), 1, "labels")
  if len(images) != len(labels):
    raise IdxError(f"{images_path} holds {len(images):,} images but {labels_path} holds "
                   f"{len(labels):,} labels; they must pair up one to one")
  if not len(images):
    raise IdxError(f"empty source: {images_path} holds no images")
  return images[..., np.newaxis], labels.astype(np.int64), base.digest_arrays(images, labels)


def open_source(opts: base.SourceOptions) -> base.Source:
  """Reads and checks the IDX files named by --images/--labels (and --eval_*).

  Raises:
    IdxError / SourceError / SplitError: see read_pair; eval files with a different image
      shape; a single class; --eval_fraction given together with eval files.
  """
  images, labels, digest = read_pair(opts.images, opts.labels, "images", "labels")
  n_train = len(images)
  digests = {"train": digest}
  if opts.eval_images or opts.eval_labels:
    if opts.eval_fraction is not None:
      raise base.FormatError("--eval_fraction splits a source without an eval split; drop it "
                             "when passing --eval_images/--eval_labels")
    eval_images, eval_labels, digests["eval"] = read_pair(
        opts.eval_images, opts.eval_labels, "eval_images", "eval_labels")
    if eval_images.shape[1:] != images.shape[1:]:
      raise IdxError(f"{opts.eval_images} images are {eval_images.shape[1:3]}, but "
                     f"{opts.images} images are {images.shape[1:3]}")
    images = np.concatenate([images, eval_images])
    labels = np.concatenate([labels, eval_labels])
    split_indices = {splits_lib.TRAIN: np.arange(n_train),
                     splits_lib.EVAL: np.arange(n_train, len(images))}
  else:
    split_indices = splits_lib.split_indices(labels[:n_train], opts.resolved_eval_fraction,
                                             opts.seed, source=opts.images)
  names = tuple(str(i) for i in range(int(labels.max()) + 1))
  base.require_classes(names, opts.images)
  _, height, width, _ = images.shape
  spec = fs.image_spec(height, width, 1, names, value_range=(0, 255))

  def record_name(i: int) -> str:
    if i < n_train:
      return f"{opts.images} image {i}"
    return f"{opts.eval_images} image {i - n_train}"

  description = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=True),
                 "counts": {k: len(v) for k, v in split_indices.items()}}
  identity = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=False),
              "content_sha256": digests}
  if opts.eval_images:
    description["eval_fraction"] = identity["eval_fraction"] = None
  return base.ArraySource(spec, {"image": images}, labels, split_indices, description, identity,
                          record_name=record_name)


FORMAT = base.Format(
    name=NAME, open=open_source,
    options=("images", "labels", "eval_images", "eval_labels", "eval_fraction", "seed"),
    summary="MNIST-family IDX files (--images, --labels, optional --eval_images/--eval_labels)")
