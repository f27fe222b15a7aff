"""Writes examples into sharded TFRecord files plus a manifest.

Each shard is written under a temporary name and renamed when complete; the manifest is
written last.
"""

import collections
import os
from typing import Any, Iterable, Mapping, Tuple

import tensorflow as tf

from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib


def shard_name(split: str, index: int, num_shards: int, compression: str) -> str:
  ext = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return f"{split}-{index:05d}-of-{num_shards:05d}{ext}"


def write_dataset(output_dir: str, spec: fs.FeatureSpec,
                  examples: Iterable[Tuple[str, Mapping[str, Any], int]],
                  num_shards: int, source: Mapping[str, Any],
                  compression: str = "") -> manifest_lib.Manifest:
  """Encodes (split, values, label) examples round-robin into `num_shards` shards per split.

  Returns:
    The manifest written to `output_dir`.

  Raises:
    ValueError: num_shards < 1 or no examples.
  """
  if num_shards < 1:
    raise ValueError(f"--num_shards must be >= 1, got {num_shards}")
  by_split = collections.defaultdict(list)
  for split, values, label in examples:
    by_split[split].append(spec.encode(values, label))
  if not by_split:
    raise ValueError("the source has no examples")
  tf.io.gfile.makedirs(output_dir)
  options = tf.io.TFRecordOptions(compression_type=compression or None)
  splits = {}
  for split, records in sorted(by_split.items()):
    shards = []
    for i in range(num_shards):
      name = shard_name(split, i, num_shards, compression)
      path = os.path.join(output_dir, name)
      part = records[i::num_shards]
      with tf.io.TFRecordWriter(path + ".tmp", options) as w:
        for r in part:
          w.write(r)
      tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
      shards.append(manifest_lib.Shard(name=name, count=len(part),
                                       bytes=tf.io.gfile.stat(path).length,
                                       sha256=manifest_lib.file_sha256(path)))
    splits[split] = tuple(shards)
  m = manifest_lib.Manifest(directory=output_dir, spec=spec, splits=splits,
                            compression=compression, source=dict(source))
  manifest_lib.write(m)
  return m
