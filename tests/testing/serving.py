"""Fixtures for the export tests: the real digits dataset and models trained a few dozen steps.

Everything is written under a directory the caller owns (a test's or a test class's temp dir).
"""

import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import Sequence, Tuple

import tensorflow as tf

from estimator_app.serving import export
from input_fns import digits
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from input_fns import splits
from input_fns import writer
from model_fns import model_fn as model_fn_lib
from model_fns import registry

# Small widths keep each training and export at a few seconds on a 2-core box.
_SMALL = {
    "dnn": {"hidden_units": (16,)},
    "lenet5": {"filters": (4, 8), "kernel_size": 3, "dense_units": (16,)},
    "rnn": {"units": (16,)},
    "resnet": {},
    "linear": {},
}


def write_digits(directory: str) -> manifest_lib.Manifest:
  """The embedded UCI digits (1,797 real 8x8 images) as 2 shards per split."""
  return writer.write_dataset(directory, digits.SPEC, digits.examples(eval_fraction=0.2, seed=0),
                              num_shards=2, source={"format": digits.NAME})


def small_hparams(model_def):
  defaults = model_def.hparams_cls()
  names = {f.name for f in dataclasses.fields(defaults)}
  return dataclasses.replace(
      defaults, **{k: v for k, v in _SMALL.get(model_def.name, {}).items() if k in names})


def serving_model(name: str, m: manifest_lib.Manifest, preprocessing: Sequence[str] = ("scale",),
                  precision: str = "float32") -> export.ServingModel:
  model_def = registry.get(name)
  return export.ServingModel(model_def, small_hparams(model_def), m.spec, tuple(preprocessing),
                             model_fn_lib.TrainConfig(precision=precision))


def train(model: export.ServingModel, m: manifest_lib.Manifest, model_dir: str,
          steps: int = 30, **run_config) -> Tuple[tf.estimator.Estimator, str]:
  """Trains `model` for `steps`; returns the Estimator and its latest checkpoint.

  Args:
    model: what to train (its model_fn and preprocessing).
    m: the dataset (its train split).
    model_dir: where the checkpoints go.
    steps: global step to train to.
    **run_config: more tf.estimator.RunConfig arguments (a checkpoint cadence, or the training
      session config of distribution.run_config_kwargs).
  """
  est = tf.estimator.Estimator(model.model_fn(), model_dir=model_dir,
                               config=tf.estimator.RunConfig(tf_random_seed=1, **run_config))
  est.train(input_fn_lib.make_input_fn(
      m, splits.TRAIN, input_fn_lib.InputConfig(batch_size=32, preprocessing=model.preprocessing,
                                           seed=1), training=True), max_steps=steps)
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
