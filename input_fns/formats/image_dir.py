"""A folder of class sub-folders of PNG/JPEG images (the ImageNet layout).

  ROOT/cat/001.png, ROOT/cat/002.jpg, ROOT/dog/a.jpeg, ...

Label names are the sub-folder names, sorted; images are the files directly inside them with
a .png/.jpg/.jpeg extension (any case; hidden files skipped). Anything else found there (other
files, folders inside a class folder, files beside the class folders) is left out, and one
warning line says how many and names the first few. Images are decoded with Pillow in
the writer's worker processes (TensorFlow is not fork-safe there), converted to --channels
(1 = grey, 3 = RGB) and, with --image_size=H,W, resized bilinearly; without it every image must
have the size of the first one. A file that cannot be decoded stops the conversion with its
path, and the writer removes what it wrote.

The identity of this source is each file's relative path, size and modification time (hashing
every image up front would read the dataset twice).
"""

import hashlib
import os
from typing import List, Sequence, Tuple

import numpy as np
from absl import logging
from PIL import Image

from input_fns import feature_spec as fs
from input_fns import splits as splits_lib
from input_fns.formats import base

NAME = "image_dir"
EXTENSIONS = (".png", ".jpg", ".jpeg")
_SKIPPED_NAMED = 5  # skipped entries named in the warning; the rest are counted


class ImageDirError(base.SourceError):
  """The image folder is malformed, or an image cannot be decoded; the message names it."""


def _decode(path: str, channels: int) -> Tuple[Image.Image, str]:
  """The image converted to `channels`, and the mode the file holds (e.g. "RGBA", "P")."""
  try:
    with Image.open(path) as img:
      img.load()
      return img.convert("L" if channels == 1 else "RGB"), img.mode
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageDirError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def _header_size(path: str) -> Tuple[int, int]:
  """(height, width) from the image header, without decoding the pixels."""
  try:
    with Image.open(path) as img:
      width, height = img.size
      return height, width
  except (OSError, ValueError, SyntaxError) as e:
    raise ImageDirError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def read_image(path: str, shape: Tuple[int, int, int]) -> np.ndarray:
  """Decodes one image file to uint8 pixels of `shape` (H, W, C), resizing bilinearly if needed.

  The writer and //scripts:predict both use it, so an image is turned into pixels the same way
  at training and at inference.

  Raises:
    ImageDirError: the file cannot be decoded (naming it), or C is not 1 or 3.
  """
  return decode_image(path, shape)[0]


def decode_image(path: str, shape: Tuple[int, int, int]
                 ) -> Tuple[np.ndarray, Tuple[int, int, str]]:
  """`read_image`, and what the file held before it was made to fit: (height, width, mode).

  mode is Pillow's ("L" grey, "RGB", "RGBA", "P" palette, ...); the pixels are "L" for C = 1
  and "RGB" for C = 3, so any other mode was converted.

  Raises:
    ImageDirError: as `read_image`.
  """
  height, width, channels = shape
  if channels not in (1, 3):
    raise ImageDirError(f"{path}: images need 1 or 3 channels, the model expects {channels}")
  img, mode = _decode(path, channels)
  source = (img.size[1], img.size[0], mode)
  if img.size != (width, height):
    img = img.resize((width, height), Image.BILINEAR)
  return np.asarray(img, dtype=np.uint8).reshape(height, width, channels), source


class ImageDirSource(base.Source):
  """Records are (relative path, label); workers decode them."""

  def __init__(self, root: str, shape: Tuple[int, int, int], resize: bool,
               skipped: Sequence[str] = (), **kwargs):
    """Args:
      root: the --input folder.
      shape: (H, W, C) every image is decoded to.
      resize: whether images of another size are resized (--image_size) or refused.
      skipped: what under `root` is not converted (relative paths; folders end in "/").
      **kwargs: see base.Source.
    """
    super().__init__(**kwargs)
    self._root = root
    self._height, self._width, self._channels = shape
    self._resize = resize
    self.skipped = tuple(skipped)

  def load(self, split, record):
    del split
    rel, label = record
    path = os.path.join(self._root, rel)
    shape = (self._height, self._width, self._channels)
    if not self._resize:
      height, width = _header_size(path)
      if (height, width) != shape[:2]:
        raise ImageDirError(f"{path}: image is {height}x{width} (HxW), the first "
                            f"image is {self._height}x{self._width}; pass --image_size=H,W to "
                            f"resize all images to one size")
    return {"image": read_image(path, shape)}, label

  def describe(self, split, record):
    return os.path.join(self._root, record[0])


def _warn_skipped(root: str, skipped: List[str]) -> None:
  """One warning line for everything under `root` that is not converted (hidden files aside)."""
  if not skipped:
    return
  named = ", ".join(skipped[:_SKIPPED_NAMED])
  more = f" and {len(skipped) - _SKIPPED_NAMED} more" if len(skipped) > _SKIPPED_NAMED else ""
  logging.warning("%s: skipped %d %s (only %s files inside class folders are read): %s%s",
                  root, len(skipped), "entry" if len(skipped) == 1 else "entries",
                  "/".join(EXTENSIONS), named, more)


def open_source(opts: base.SourceOptions) -> base.Source:
  """Lists the class folders and images under --input.

  Raises:
    ImageDirError / SourceError / SplitError: no such folder, no class folders, a class folder
      without images, an unreadable first image, bad --channels or --image_size.
  """
  root = opts.input
  if not root:
    raise base.SourceError("--input is required (the folder of class sub-folders)")
  if not os.path.isdir(root):
    raise ImageDirError(f"--input={root} is not a folder" if os.path.exists(root)
                        else f"--input={root}: no such folder")
  if opts.channels not in (1, 3):
    raise ImageDirError(f"--channels must be 1 or 3, got {opts.channels}")
  entries = sorted(d for d in os.listdir(root) if not d.startswith("."))
  classes = [d for d in entries if os.path.isdir(os.path.join(root, d))]
  skipped = [d for d in entries if d not in classes]
  if not classes:
    raise ImageDirError(f"{root}: no class folders (expected {root}/<class name>/<image>"
                        f"{'|'.join(EXTENSIONS)})")
  base.require_classes(classes, root)
  records, labels, listing = [], [], hashlib.sha256()
  for label, name in enumerate(classes):
    folder = os.path.join(root, name)
    files = []
    for f in sorted(os.listdir(folder)):
      if f.startswith("."):
        continue
      if f.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, f)):
        files.append(f)
      else:
        is_dir = os.path.isdir(os.path.join(folder, f))
        skipped.append(os.path.join(name, f) + ("/" if is_dir else ""))
    if not files:
      raise ImageDirError(f"{folder}: class folder holds no {'/'.join(EXTENSIONS)} images")
    for f in files:
      rel = os.path.join(name, f)
      st = os.stat(os.path.join(root, rel))
      listing.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
      records.append((rel, label))
      labels.append(label)
  _warn_skipped(root, skipped)
  labels = np.array(labels, dtype=np.int64)
  if opts.image_size is not None:
    height, width = opts.image_size
    if height < 1 or width < 1:
      raise ImageDirError(f"--image_size must be positive, got {height},{width}")
  else:
    height, width = _header_size(os.path.join(root, records[0][0]))
  shape = (height, width, opts.channels)
  split_indices = splits_lib.split_indices(labels, opts.resolved_eval_fraction, opts.seed,
                                           source=root)
  by_split = {split: [records[i] for i in idx] for split, idx in split_indices.items()}
  description = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=True),
                 "counts": {k: len(v) for k, v in by_split.items()}}
  identity = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=False),
              "image_shape": list(shape), "listing_sha256": listing.hexdigest()}
  return ImageDirSource(
      root, shape, resize=opts.image_size is not None, skipped=skipped,
      spec=fs.image_spec(height, width, opts.channels, classes, value_range=(0, 255)),
      splits=by_split, description=description, identity=identity)


FORMAT = base.Format(
    name=NAME, open=open_source,
    options=("input", "image_size", "channels", "eval_fraction", "seed"),
    summary="a folder of class sub-folders of PNG/JPEG images (--input, --image_size=H,W, "
            "--channels)")
