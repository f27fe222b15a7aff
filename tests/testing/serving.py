"""Fixtures for the export tests: real datasets (digits, a small table) and models trained a few
dozen steps.

Everything is written under a directory the caller owns (a test's or a test class's temp dir).
"""

import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from estimator_app.serving import export
from input_fns import digits
from input_fns import feature_spec as fs
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from input_fns import splits
from input_fns import writer
from input_fns.formats import base as formats_base
from model_fns import model_fn as model_fn_lib
from model_fns import registry

# Small widths keep each training and export at a few seconds on a 2-core box.
_SMALL = {
    "dnn": {"hidden_units": (16,)},
    "lenet5": {"filters": (4, 8), "kernel_size": 3, "dense_units": (16,)},
    "rnn": {"units": (16,)},
    "resnet": {},
    "linear": {},
    "wide_deep": {"hidden_units": (16,)},
}


def write_digits(directory: str) -> manifest_lib.Manifest:
  """The embedded UCI digits (1,797 real 8x8 images) as 2 shards per split."""
  return writer.write_dataset(directory, digits.SPEC, digits.examples(eval_fraction=0.2, seed=0),
                              num_shards=2, source={"format": digits.NAME})


# The small table of write_table: every column role, missing values and two vocabulary files.
TABLE_LABELS = {fs.BINARY: ("no", "yes"), fs.MULTICLASS: ("low", "mid", "high"),
                fs.REGRESSION: ()}
COLORS = ("red", "green", "blue")  # the `color` vocabulary, most frequent first
TAGS = ("a", "b", "c", "d")  # the `tags` vocabulary
TEXT_COLUMN = "note text"
_WORDS = ("good", "bad", "fine", "very", "quite", "item")
_COLOR_EFFECT = {"red": 1.0, "green": 0.0, "blue": -1.0, None: 0.3}


def table_spec(label_kind: str) -> fs.FeatureSpec:
  """The spec of write_table: numeric `age` (NaN = missing), categorical `color` (vocabulary),
  multivalent categorical `tags` (vocabulary), text `note text` (a name that is no TF op name,
  as CSV headers often are), and a `label_kind` label."""
  age_stats = {"count": 400, "missing": 60, "mean": 40.0, "std": 12.0, "min": 18.0,
               "max": 70.0, "quantiles": [30.0, 40.0, 50.0]}
  return fs.table_spec(
      [fs.numeric_column("age", stats=age_stats),
       fs.categorical_column("color", vocabulary="color.vocab"),
       fs.categorical_column("tags", multivalent=True, vocabulary="tags.vocab", max_values=3),
       fs.text_column(TEXT_COLUMN)],
      label_names=TABLE_LABELS[label_kind], label_kind=label_kind)


def table_row(rng: np.random.Generator) -> Dict[str, Any]:
  """One random row of write_table's columns, missing values included."""
  return {
      "age": float("nan") if rng.random() < 0.15 else float(rng.integers(18, 71)),
      "color": None if rng.random() < 0.1 else str(rng.choice(COLORS, p=[0.5, 0.3, 0.2])),
      "tags": [str(t) for t in rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False)],
      TEXT_COLUMN: (None if rng.random() < 0.1 else
                    " ".join(str(w) for w in rng.choice(_WORDS, size=int(rng.integers(1, 5))))),
  }


def table_target(row: Mapping[str, Any], label_kind: str, noise: float) -> Any:
  """The label of a row: a score of every column, thresholded for the classifiers."""
  age, words = row["age"], (row[TEXT_COLUMN] or "").split()
  score = (0.0 if np.isnan(age) else (age - 40.0) / 12.0) + _COLOR_EFFECT[row["color"]]
  score += 0.5 * ("a" in row["tags"]) + 0.7 * ("good" in words) - 0.7 * ("bad" in words) + noise
  if label_kind == fs.REGRESSION:
    return float(score)
  if label_kind == fs.BINARY:
    return int(score > 0.2)
  return int(np.searchsorted([-0.5, 0.8], score))


class _TableSource(formats_base.ListSource):
  """A ListSource with the table's vocabulary files as assets (write_dataset writes none)."""

  def __init__(self, spec, examples, identity):
    super().__init__(spec, examples, description={"format": "serving_test_table"},
                     identity=identity)
    self.assets = {"color_vocabulary": ("color.vocab", "".join(f"{c}\n" for c in COLORS).encode()),
                   "tags_vocabulary": ("tags.vocab", "".join(f"{t}\n" for t in TAGS).encode())}


def write_table(directory: str, label_kind: str, num_train: int = 400, num_eval: int = 64,
                seed: int = 0) -> manifest_lib.Manifest:
  """A small table dataset with its vocabulary files, read back so its spec knows its assets.

  input_fns.writer.write_dataset takes class-id labels only and writes no assets, so the rows
  go through the writer's own `write` as a ListSource with assets (one shard per split).
  """
  rng = np.random.default_rng(seed)
  examples: Dict[str, List[Tuple[Dict[str, Any], Any]]] = {"train": [], "eval": []}
  for split, count in (("train", num_train), ("eval", num_eval)):
    for _ in range(count):
      row = table_row(rng)
      examples[split].append((row, table_target(row, label_kind, float(rng.normal(0, 0.1)))))
  identity = {"label_kind": label_kind, "num_train": num_train, "num_eval": num_eval,
              "seed": seed}
  writer.write(directory, _TableSource(table_spec(label_kind), examples, identity),
               writer.WriteOptions(num_shards=1, workers=1))
  return manifest_lib.read(directory)


def small_hparams(model_def):
  defaults = model_def.hparams_cls()
  names = {f.name for f in dataclasses.fields(defaults)}
  return dataclasses.replace(
      defaults, **{k: v for k, v in _SMALL.get(model_def.name, {}).items() if k in names})


def serving_model(name: str, m: manifest_lib.Manifest, preprocessing: Sequence[str] = ("scale",),
                  precision: str = "float32", **train_cfg) -> export.ServingModel:
  model_def = registry.get(name)
  return export.ServingModel(model_def, small_hparams(model_def), m.spec, tuple(preprocessing),
                             model_fn_lib.TrainConfig(precision=precision, **train_cfg))


def train(model: export.ServingModel, m: manifest_lib.Manifest, model_dir: str,
          steps: int = 30, shuffle_buffer: int = 10000,
          **run_config) -> Tuple[tf.estimator.Estimator, str]:
  """Trains `model` for `steps`; returns the Estimator and its latest checkpoint.

  Args:
    model: what to train (its model_fn and preprocessing).
    m: the dataset (its train split).
    model_dir: where the checkpoints go.
    steps: global step to train to.
    shuffle_buffer: InputConfig.shuffle_buffer of the training input (0: no shuffle).
    **run_config: more tf.estimator.RunConfig arguments (a checkpoint cadence, or the training
      session config of distribution.run_config_kwargs).
  """
  est = tf.estimator.Estimator(model.model_fn(), model_dir=model_dir,
                               config=tf.estimator.RunConfig(tf_random_seed=1, **run_config))
  est.train(input_fn_lib.make_input_fn(
      m, splits.TRAIN, input_fn_lib.InputConfig(batch_size=32, preprocessing=model.preprocessing,
                                                shuffle_buffer=shuffle_buffer, seed=1),
      training=True), max_steps=steps)
  return est, tf.train.latest_checkpoint(model_dir)


def eval_input_fn(m: manifest_lib.Manifest, model: export.ServingModel):
  return input_fn_lib.make_input_fn(
      m, splits.EVAL, input_fn_lib.InputConfig(batch_size=128, preprocessing=model.preprocessing),
      training=False)


def child_env() -> dict:
  """Environment for a child Python process that must import this tree like we do."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return env


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class GcsEmulator:
  """A real gcp-storage-emulator server on 127.0.0.1 (in memory), as a context manager."""

  def __init__(self):
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._proc = None

  def __enter__(self):
    self._proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1",
         f"--port={self.port}", "--in-memory"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    deadline = time.time() + 60
    while time.time() < deadline:
      if self._proc.poll() is not None:
        raise RuntimeError(f"gcp-storage-emulator exited with {self._proc.returncode}")
      try:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
          return self
      except OSError:
        time.sleep(0.1)
    self.__exit__()
    raise RuntimeError("gcp-storage-emulator did not start listening within 60 s")

  def __exit__(self, *exc):
    if self._proc is not None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
