"""Shared test helpers: a real GCS emulator on loopback, IDX files, reading datasets back."""

import contextlib
import gzip
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from input_fns import manifest as manifest_lib

EMULATOR_EXE = "gcp-storage-emulator"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Emulator:
  """gcp-storage-emulator in a subprocess on 127.0.0.1; sets STORAGE_EMULATOR_HOST while up.

  With `data_dir` it stores objects on disk there (so a restart keeps them), else in memory.
  """

  def __init__(self, port: Optional[int] = None, data_dir: Optional[str] = None):
    self.port = port or free_port()
    self.data_dir = data_dir
    self.proc = None
    self.host = f"http://127.0.0.1:{self.port}"

  def _exe(self) -> str:
    local = os.path.join(os.path.dirname(sys.executable), EMULATOR_EXE)
    return local if os.path.exists(local) else EMULATOR_EXE

  def start(self) -> "Emulator":
    cmd = [self._exe(), "start", "--host=127.0.0.1", f"--port={self.port}", "-q"]
    env = dict(os.environ)
    if self.data_dir:
      env["STORAGE_BASE"] = self.data_dir
    else:
      cmd.append("--in-memory")
    log = tempfile.TemporaryFile()
    self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=self.data_dir or None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        log.seek(0)
        raise RuntimeError(f"emulator exited with {self.proc.returncode}: "
                           f"{log.read().decode(errors='replace')[-2000:]}")
      with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", self.port)) == 0:
          break
      time.sleep(0.05)
    else:
      self.stop()
      raise RuntimeError("emulator did not start listening within 30 s")
    os.environ["STORAGE_EMULATOR_HOST"] = self.host
    return self

  def stop(self) -> None:
    if self.proc is not None and self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()
    self.proc = None

  def create_bucket(self, name: str) -> None:
    from google.auth import credentials  # pylint: disable=g-import-not-at-top
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    client = storage.Client(project="test", credentials=credentials.AnonymousCredentials(),
                            client_options={"api_endpoint": self.host})
    client.create_bucket(name)


@contextlib.contextmanager
def emulator(data_dir: Optional[str] = None) -> Iterator[Emulator]:
  emu = Emulator(data_dir=data_dir).start()
  old = os.environ.get("STORAGE_EMULATOR_HOST")
  try:
    yield emu
  finally:
    emu.stop()
    if old is None:
      os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
      os.environ["STORAGE_EMULATOR_HOST"] = old


def write_idx(path: str, array: np.ndarray, gz: bool = False) -> str:
  """Writes a uint8 array as an IDX file (gzipped if `gz`); returns the path."""
  array = np.asarray(array, dtype=np.uint8)
  data = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  data += array.tobytes()
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(data)
  return path


def read_split(m: manifest_lib.Manifest, split: str) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """Every example of a split, read with tf.data.TFRecordDataset + the spec's parser, in file
  order."""
  ds = tf.data.TFRecordDataset(m.files(split), compression_type=m.compression or None)
  features, labels = [], []
  for batch in ds.batch(4096):
    f, l = m.spec.parse_batch(batch)
    features.append({k: v.numpy() for k, v in f.items()})
    labels.append(l.numpy())
  names = [f.name for f in m.spec.features]
  return ({n: np.concatenate([f[n] for f in features]) for n in names},
          np.concatenate(labels))


def dir_snapshot(directory: str) -> Dict[str, Tuple[int, int, bytes]]:
  """name -> (inode, mtime_ns, bytes) of every file directly in `directory`, hidden included."""
  out = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      st = os.stat(path)
      with open(path, "rb") as f:
        out[name] = (st.st_ino, st.st_mtime_ns, f.read())
  return out


def convert(fmt: str, opts, output_dir: str, **write_options) -> manifest_lib.Manifest:
  """Opens a source through the format registry and writes it with the real writer."""
  from input_fns import writer  # pylint: disable=g-import-not-at-top
  from input_fns.formats import registry  # pylint: disable=g-import-not-at-top
  return writer.write(output_dir, registry.open_source(fmt, opts),
                      writer.WriteOptions(**write_options))


def example_keys(values: np.ndarray, labels: np.ndarray):
  """Sorted (value bytes, label) pairs: compares two example collections exactly, any order."""
  return sorted((np.ascontiguousarray(v).tobytes(), int(l)) for v, l in zip(values, labels))
