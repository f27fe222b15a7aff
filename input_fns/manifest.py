"""`manifest.json`: what a dataset directory holds, so nobody iterates a dataset to learn it.

Per split: example count and each shard's file name, count, byte size and sha256; plus the
feature spec, label names, source, assets (files beside the shards, e.g. a vocabulary), the
dataset's fingerprint (what the writer was asked to write; a rerun compares it) and the
writer version. Written last by the writer: a directory without a manifest is not a finished
dataset.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Tuple

import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib

FILENAME = "manifest.json"
WRITER_VERSION = 2


class ManifestError(errors.UserInputError):
  """A dataset directory or its manifest is missing, malformed or does not match its files."""


@dataclasses.dataclass(frozen=True)
class Shard:
  name: str
  count: int
  bytes: int
  sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A parsed manifest; `directory` is where it was read from.

  Attributes:
    directory: the dataset directory (local path or gs:// URL).
    spec: the feature spec every shard was encoded with.
    splits: split name -> its shards, in index order.
    compression: "" or "GZIP".
    source: where the examples came from (format, input paths, options).
    writer_version: WRITER_VERSION of the writer that wrote it.
    fingerprint: sha256 of everything that determines the shards' bytes ("" if unknown).
    assets: role -> file name beside the shards, e.g. {"vocab": "vocab.txt"}.
  """
  directory: str
  spec: fs.FeatureSpec
  splits: Mapping[str, Tuple[Shard, ...]]
  compression: str  # "" or "GZIP"
  source: Mapping[str, Any]
  writer_version: int = WRITER_VERSION
  fingerprint: str = ""
  assets: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def count(self, split: str) -> int:
    return sum(s.count for s in self.shards(split))

  def shards(self, split: str) -> Tuple[Shard, ...]:
    if split not in self.splits:
      raise ManifestError(f"{self.path}: no split {split!r}; it has {sorted(self.splits)}")
    return self.splits[split]

  def files(self, split: str) -> List[str]:
    return [os.path.join(self.directory, s.name) for s in self.shards(split)]

  @property
  def path(self) -> str:
    return os.path.join(self.directory, FILENAME)

  def asset_path(self, role: str) -> str:
    """The path of an asset such as "vocab".

    Raises:
      ManifestError: the dataset has no such asset.
    """
    if role not in self.assets:
      raise ManifestError(f"{self.path}: no {role!r} asset; it has {sorted(self.assets)}")
    return os.path.join(self.directory, self.assets[role])

  def describe(self) -> str:
    """A few lines for people: splits with counts and shards, the features, the assets."""
    lines = [f"dataset: {self.directory}"]
    for split in sorted(self.splits):
      lines.append(f"  {split}: {self.count(split):,} examples in {len(self.shards(split))} shards")
    spec = self.spec
    label = (f"{spec.num_classes} classes" if spec.label_kind != fs.REGRESSION
             else "a regression target")
    if spec.is_table:
      roles = ", ".join(f"{len(spec.columns(r))} {r}" for r in fs.ROLES[1:] if spec.columns(r))
      lines.append(f"  table of {len(spec.features)} columns ({roles}), {spec.label_kind} label: "
                   f"{label}")
    else:
      f = spec.input_feature
      lines.append(f"  {spec.kind} {f.name!r} {f.dtype}{list(f.shape)}, {label}")
    for role, name in sorted(self.assets.items()):
      lines.append(f"  {role}: {name}")
    lines.append(f"  manifest: {self.path}")
    return "\n".join(lines)

  def to_json_dict(self) -> Dict[str, Any]:
    return {
        "writer_version": self.writer_version,
        "fingerprint": self.fingerprint,
        "assets": dict(self.assets),
        "source": dict(self.source),
        "compression": self.compression,
        "feature_spec": self.spec.to_json_dict(),
        "label_names": list(self.spec.label_names),
        "splits": {
            name: {"count": sum(s.count for s in shards),
                   "shards": [dataclasses.asdict(s) for s in shards]}
            for name, shards in self.splits.items()},
    }

  def to_json(self) -> str:
    return json.dumps(self.to_json_dict(), indent=2, sort_keys=True) + "\n"

  def verify(self, split: str) -> None:
    """Checks each shard's size and sha256 against the manifest.

    Raises:
      ManifestError: naming the first shard that is missing, truncated or corrupted.
    """
    for shard in self.shards(split):
      path = os.path.join(self.directory, shard.name)
      if not tf.io.gfile.exists(path):
        raise ManifestError(f"shard {path} listed in {self.path} is missing")
      size = tf.io.gfile.stat(path).length
      if size != shard.bytes:
        raise ManifestError(f"shard {path} is {size} bytes, manifest says {shard.bytes} (truncated or replaced)")
      if file_sha256(path) != shard.sha256:
        raise ManifestError(f"shard {path} is corrupted: its sha256 differs from {self.path}")


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      block = f.read(1 << 20)
      if not block:
        break
      h.update(block)
  return h.hexdigest()


def read(directory: str) -> Manifest:
  """Reads `directory/manifest.json`.

  Raises:
    ManifestError: the directory has no manifest or it is malformed.
  """
  path = os.path.join(directory, FILENAME)
  if not tf.io.gfile.exists(path):
    raise ManifestError(f"{path} not found: {directory} is not a dataset directory "
                        f"(make one with //scripts:make_tfrecords)")
  with tf.io.gfile.GFile(path) as f:
    return parse(f.read(), directory)


def parse(text: str, directory: str) -> Manifest:
  """Parses the text of `directory`'s manifest.json (read by whatever client reached it).

  Raises:
    ManifestError: the text is malformed (the message names the manifest's path).
  """
  path = os.path.join(directory, FILENAME)
  try:
    d = json.loads(text)
    splits = {name: tuple(Shard(**s) for s in v["shards"]) for name, v in d["splits"].items()}
    for name, v in d["splits"].items():
      if sum(s.count for s in splits[name]) != v["count"]:
        raise ManifestError(f"{path}: split {name!r} count {v['count']} != sum of its shards")
    return Manifest(directory=directory, spec=fs.FeatureSpec.from_json_dict(d["feature_spec"],
                                                                     assets_dir=directory),
                    splits=splits, compression=d.get("compression", ""),
                    source=d.get("source", {}), writer_version=d.get("writer_version", 0),
                    fingerprint=d.get("fingerprint", ""), assets=d.get("assets", {}))
  except (json.JSONDecodeError, KeyError, TypeError, AttributeError, fs.SpecError) as e:
    raise ManifestError(f"{path} is malformed: {type(e).__name__}: {e}") from e


def write(m: Manifest) -> None:
  """Writes the manifest atomically and durably (input_fns/files.py), local or gs://."""
  files_lib.write_atomically(m.path, m.to_json())
