"""Batch inference of a checkpoint over TFRecords or a folder of images, to JSONL or CSV.

What `//scripts:predict` runs. Inputs go through the same preprocessing chain as evaluation;
each output row names its source (record index or image path), the predicted class id and
label name, its probability, the true label when the source has one, and all probabilities.
"""

import csv
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Sequence

import numpy as np
import tensorflow as tf

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import manifest as manifest_lib
from input_fns import preprocessing
from input_fns.formats import image_dir

FORMATS = ("jsonl", "csv")


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


def predict_images(cfg: config_lib.ExperimentConfig, spec: fs.FeatureSpec, paths: Sequence[str],
                   checkpoint: str) -> Iterator[Dict[str, Any]]:
  """Rows for image files, resized to the model's input shape; source = the file path.

  Raises:
    errors.UserInputError: the model does not take images, or an image cannot be read.
  """
  if spec.kind != fs.IMAGE:
    raise errors.UserInputError(
        f"this model reads {spec.kind} inputs; --images needs a model trained on images")
  feature = spec.input_feature
  images = np.stack([image_dir.read_image(p, feature.shape) for p in paths]).astype(feature.dtype)
  chain = tuple(p for p in cfg.data.preprocessing.split(",") if p)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices({spec.input_key: images})
    return ds.batch(cfg.data.eval_batch_size).map(
        lambda f: preprocessing.apply(chain, f, spec, training=False))

  estimator = estimator_lib.build_estimator(cfg, spec)
  predictions = estimator.predict(input_fn, checkpoint_path=checkpoint)
  return _rows(predictions, paths, [None] * len(paths), spec.label_names)


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
