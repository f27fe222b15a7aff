"""Batch inference of a checkpoint over TFRecords or a folder of images, to JSONL or CSV.

What `//scripts:predict` runs. Inputs go through the same preprocessing chain as evaluation;
each output row names its source (record index or image path), the predicted class id and
label name, its probability, the true label when the source has one, and all probabilities.

Images are decoded as the writer decodes them (input_fns/formats/image_dir.py): resized to the
model's input size and converted to its channels. When any had to be, one warning line says
how many, from what and to what, so a folder of the wrong images does not pass unnoticed.
"""

import collections
import csv
import dataclasses
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns.formats import image_dir

FORMATS = ("jsonl", "csv")
SKIPPED_LISTED = 10  # unreadable images named one per line; the rest are counted
_MODES = {1: "L", 3: "RGB"}  # the Pillow mode image_dir decodes to, by channel count
_CHANNEL_NAMES = {1: "grey (L)", 3: "RGB"}


def _rows(predictions: Iterable[Dict[str, Any]], sources: Iterable[Any],
          labels: Iterable[Any], label_names: Sequence[str]) -> Iterator[Dict[str, Any]]:
  for p, source, label in zip(predictions, sources, labels):
    class_id = int(p["class_ids"])
    row = {"source": source, "class_id": class_id, "label_name": label_names[class_id],
           "probability": float(p["probabilities"][class_id])}
    if label is not None:
      row["true_class_id"] = int(label)
    row["probabilities"] = [round(float(x), 7) for x in p["probabilities"]]
    yield row


def predict_records(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest, split: str,
                    checkpoint: str) -> Iterator[Dict[str, Any]]:
  """Rows for every example of a split, in file order; source = "<split>:<index>".

  Raises:
    errors.UserInputError: the dataset's feature spec differs from the one the model was
      trained on (its graph would not build on these features).
  """
  estimator_lib.check_trained_spec(cfg, m)
  estimator = estimator_lib.build_estimator(cfg, m.spec)
  input_fn = estimator_lib.eval_input_fn(cfg, m, split, ordered=True)
  # Read eagerly before predict(): its generator holds a graph context while it yields.
  labels = np.concatenate([batch for _, batch in input_fn().as_numpy_iterator()])
  predictions = estimator.predict(input_fn, checkpoint_path=checkpoint,
                                  yield_single_examples=True)
  sources = (f"{split}:{i}" for i in range(m.count(split)))
  return _rows(predictions, sources, labels, m.spec.label_names)


def list_images(folder: str) -> List[str]:
  """Image files (png/jpg/jpeg) under `folder`, recursively, sorted.

  Raises:
    errors.UserInputError: not a folder, or no images in it.
  """
  if not os.path.isdir(folder):
    raise errors.UserInputError(f"--images {folder} is not a folder")
  paths = sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files
                 if f.lower().endswith(image_dir.EXTENSIONS) and not f.startswith("."))
  if not paths:
    raise errors.UserInputError(f"--images {folder} holds no {'/'.join(image_dir.EXTENSIONS)} files")
  return paths


@dataclasses.dataclass(frozen=True)
class Images:
  """Image files decoded to a model's input.

  Attributes:
    paths: the files read, in the order given.
    pixels: their pixels, [len(paths), H, W, C] in the input feature's dtype.
    skipped: (path, why) of each file that could not be decoded and was skipped.
  """
  paths: Tuple[str, ...]
  pixels: np.ndarray
  skipped: Tuple[Tuple[str, str], ...] = ()


def _counted(counts: collections.Counter, name=str, shown: int = 3) -> str:
  """"16x16 (3), 32x32 (1)": the most common values first."""
  items = [f"{name(value)} ({n})" for value, n in counts.most_common(shown)]
  return ", ".join(items) + (", ..." if len(counts) > shown else "")


def _warn_fitted(sources: Sequence[Tuple[int, int, str]], shape: Tuple[int, int, int]) -> None:
  """One warning line if any image was resized or converted to fit the model's input."""
  height, width, channels = shape
  resized = collections.Counter((h, w) for h, w, _ in sources if (h, w) != (height, width))
  converted = collections.Counter(mode for _, _, mode in sources if mode != _MODES[channels])
  parts = []
  if resized:
    sizes = _counted(resized, name=lambda hw: f"{hw[0]}x{hw[1]}")
    parts.append(f"resized {sum(resized.values())} of {len(sources)} images to the model's "
                 f"{height}x{width} (HxW) from {sizes}")
  if converted:
    parts.append(f"converted {sum(converted.values())} of {len(sources)} images to "
                 f"{_CHANNEL_NAMES[channels]} from {_counted(converted)}")
  if parts:
    logging.warning("--images: %s", "; ".join(parts))


def load_images(spec: fs.FeatureSpec, paths: Sequence[str], skip_unreadable: bool = False
                ) -> Images:
  """Decodes image files to the model's input shape (as the writer would).

  Says in one warning line how many images were resized or converted, from what to what.

  Args:
    spec: the feature spec the model was trained on.
    paths: the image files.
    skip_unreadable: skip files that cannot be decoded (listed in `Images.skipped`) instead
      of stopping at the first.

  Raises:
    errors.UserInputError: the model does not take images; an image cannot be decoded (unless
      skip_unreadable); or none of them can.
  """
  if spec.kind != fs.IMAGE:
    raise errors.UserInputError(
        f"this model reads {spec.kind} inputs; --images needs a model trained on images")
  feature = spec.input_feature
  read, pixels, sources, skipped = [], [], [], []
  for path in paths:
    try:
      values, source = image_dir.decode_image(path, feature.shape)
    except image_dir.ImageDirError as e:
      if not skip_unreadable:
        raise
      skipped.append((path, str(e)))
      continue
    read.append(path)
    pixels.append(values)
    sources.append(source)
  if not read:
    raise errors.UserInputError(f"--images: none of the {len(paths)} images can be read "
                                f"(first: {skipped[0][1]})")
  _warn_fitted(sources, feature.shape)
  return Images(tuple(read), np.stack(pixels).astype(feature.dtype), tuple(skipped))


def format_skipped(skipped: Sequence[Tuple[str, str]], limit: int = SKIPPED_LISTED) -> str:
  """The skipped images for the end of a run: a count, then one line each, up to `limit`.

  "" when none were skipped.
  """
  if not skipped:
    return ""
  lines = [f"skipped {len(skipped)} unreadable image{'' if len(skipped) == 1 else 's'}:"]
  lines += [f"  {why}" for _, why in skipped[:limit]]
  if len(skipped) > limit:
    lines.append(f"  ... and {len(skipped) - limit} more")
  return "\n".join(lines)


def predict_images(cfg: config_lib.ExperimentConfig, spec: fs.FeatureSpec, images: Images,
                   checkpoint: str) -> Iterator[Dict[str, Any]]:
  """Rows for decoded image files (see `load_images`); source = the file path."""
  chain = tuple(p for p in cfg.data.preprocessing.split(",") if p)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices({spec.input_key: images.pixels})
    return ds.batch(cfg.data.eval_batch_size).map(
        lambda f: preprocessing.apply(chain, f, spec, training=False))

  estimator = estimator_lib.build_estimator(cfg, spec)
  predictions = estimator.predict(input_fn, checkpoint_path=checkpoint)
  return _rows(predictions, images.paths, [None] * len(images.paths), spec.label_names)


def output_format(path: str, requested: str = "") -> str:
  """The output format: --format if given, else from --output's extension.

  Raises:
    errors.UserInputError: an unknown --format, or an extension that names neither format.
  """
  if requested:
    if requested not in FORMATS:
      raise errors.UserInputError(f"--format {requested!r} is not one of {', '.join(FORMATS)}")
    return requested
  ext = os.path.splitext(path)[1].lower().lstrip(".")
  if ext in ("jsonl", "json", "ndjson"):
    return "jsonl"
  if ext == "csv":
    return "csv"
  raise errors.UserInputError(f"--output {path}: expected a .jsonl or .csv file, or give "
                              f"--format={'|'.join(FORMATS)}")


def write_rows(rows: Iterable[Dict[str, Any]], path: str, fmt: str) -> int:
  """Writes rows to `path` all or nothing (input_fns/files.py); returns how many.

  A failed run leaves neither a partial output nor a temporary beside it.
  """
  tf.io.gfile.makedirs(os.path.dirname(path) or ".")
  n = 0
  with files_lib.atomic_open(path) as f:
    writer = None
    for row in rows:
      if fmt == "jsonl":
        f.write(json.dumps(row) + "\n")
      else:
        flat = {k: v for k, v in row.items() if k != "probabilities"}
        flat.update({f"p_{i}": p for i, p in enumerate(row["probabilities"])})
        if writer is None:
          writer = csv.DictWriter(f, fieldnames=list(flat))
          writer.writeheader()
        writer.writerow(flat)
      n += 1
  return n
