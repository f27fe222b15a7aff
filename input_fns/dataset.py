"""The one input_fn builder for every dataset, driven by its manifest and feature spec.

file list -> parallel interleave -> shuffle (seeded) -> repeat (training) -> batch ->
vectorized parse -> preprocessing chain -> prefetch(AUTOTUNE).
"""

import dataclasses
from typing import Callable, Optional, Sequence

import tensorflow as tf

from input_fns import manifest as manifest_lib
from input_fns import preprocessing


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How to read one split.

  Attributes:
    batch_size: examples per batch.
    preprocessing: preset names applied in order (see input_fns/preprocessing.py).
    shuffle_buffer: examples held for shuffling (training only).
    seed: seed for file order and shuffling; None for nondeterministic.
    drop_remainder: give every batch the same static shape.
  """
  batch_size: int = 64
  preprocessing: Sequence[str] = ("scale",)
  shuffle_buffer: int = 10000
  seed: Optional[int] = None
  drop_remainder: bool = False


def make_input_fn(m: manifest_lib.Manifest, split: str, cfg: InputConfig,
                  training: bool) -> Callable[[], tf.data.Dataset]:
  """Builds an Estimator input_fn over one split of a dataset.

  Args:
    m: the dataset's manifest.
    split: e.g. "train" or "eval".
    cfg: batch size, preprocessing and shuffling.
    training: shuffle and repeat forever (the Estimator stops at max_steps).

  Returns:
    A function returning a dataset of (features, labels) batches.
  """
  files = m.files(split)
  spec = m.spec
  chain = tuple(cfg.preprocessing)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
      ds = ds.shuffle(len(files), seed=cfg.seed)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=m.compression or None),
        cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=cfg.seed is not None or not training)
    if training:
      ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed).repeat()
    ds = ds.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)

    def parse(serialized):
      features, labels = spec.parse_batch(serialized)
      return preprocessing.apply(chain, features, spec, training), labels

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

  return input_fn
