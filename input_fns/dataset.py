"""The one input_fn builder for every dataset, driven by its manifest and feature spec.

Training:
  shard files (shuffled per epoch, seeded) -> repeat -> parallel interleave, each shard read in
  chunks of records -> vectorized parse per chunk (spec.parse_batch) -> [weighted mixture of
  sources] -> shuffle (a seeded permutation of each window of `shuffle_buffer` examples) ->
  batch (static shape) -> preprocessing chain -> prefetch(AUTOTUNE).
Evaluation:
  shard files in manifest order -> interleave (deterministic) -> parse per chunk -> chain
  (no augmentation) -> batch (`drop_remainder` optional) -> prefetch.
With `cache`, parsed examples (after the chain's leading deterministic presets) are cached
before the shuffle and `repeat`, so later epochs neither read nor parse.

Why chunks and windows instead of `shuffle(buffer)` and `batch` on single records: every
tf.data element costs about a microsecond, and a record-level parallel interleave costs several
(measured on the 2-core CI box: ~130k examples/s for the record-level pipeline). Reading each
shard as chunks of ~1k records, parsing a chunk in one op and permuting whole windows keeps the
per-record work inside TFRecordDataset itself and everything else per chunk or per batch.
The shuffle is as strong as a shuffle buffer of the same size: every window of
`shuffle_buffer` consecutive examples of the interleaved stream is permuted uniformly, and the
file order changes every epoch.

Sharding for distributed runs: each worker reads a disjoint part: whole shard files when there
are at least as many files as workers, else every num_workers-th record of every file. The
worker comes from the distribution strategy's `input_context` (Estimator passes it) or from
`InputConfig.num_workers` / `worker_index`.

Integrity: before anything is read, every shard the worker will read is checked against the
manifest's byte size and sha256 (`verify`), in parallel threads. Hashing is what costs
(~0.5 GB/s per core), so when `InputConfig.verify_cache` names a file, shards whose
(path, size, mtime) are unchanged since they last passed are not hashed again; a truncated or
rewritten shard changes its size or mtime and is hashed (and refused) again.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import mixture
from input_fns import preprocessing

_AUTOTUNE = tf.data.AUTOTUNE
_MAX_CHUNK_RECORDS = 1024


class InputError(errors.UserInputError):
  """An InputConfig value is invalid or conflicts with the run's distribution setup."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How to read one split.

  Attributes:
    batch_size: examples per batch; with a distribution strategy this is the global batch
      and each replica gets batch_size / num_replicas_in_sync.
    preprocessing: preset steps applied in order (input_fns/preprocessing.py); a string such
      as "random_flip,scale" is parsed.
    shuffle_buffer: examples shuffled together (training); 0 or 1 turns shuffling off.
    seed: seed for file order, shuffling and augmentation; None for nondeterministic.
    drop_remainder: evaluation: drop the last partial batch so every batch has the same static
      shape. Training batches always have a static shape (the stream is endless).
    cycle_length: shard files read concurrently.
    read_chunk_bytes: approximate bytes of records read and parsed as one chunk.
    cache: keep parsed examples after the first epoch (training) or pass (evaluation).
    cache_dir: where cache files go; "" keeps the cache in memory. A file cache survives
      across input_fn calls (e.g. each periodic evaluation).
    num_workers: workers reading disjoint parts (used when no input_context is given).
    worker_index: this worker, in [0, num_workers).
    verify: check shard sizes and sha256 against the manifest when the input_fn is built.
    verify_cache: a JSON file remembering shards that passed; None hashes every time.
  """
  batch_size: int = 64
  preprocessing: Sequence[str] = ("scale",)
  shuffle_buffer: int = 10000
  seed: Optional[int] = None
  drop_remainder: bool = False
  cycle_length: int = 8
  read_chunk_bytes: int = 1 << 20
  cache: bool = False
  cache_dir: str = ""
  num_workers: int = 1
  worker_index: int = 0
  verify: bool = True
  verify_cache: Optional[str] = None

  def __post_init__(self):
    chain = self.preprocessing
    chain = preprocessing.parse_chain(chain) if isinstance(chain, str) else tuple(chain)
    preprocessing.check(chain)
    object.__setattr__(self, "preprocessing", chain)
    for name in ("batch_size", "cycle_length", "read_chunk_bytes", "num_workers"):
      if getattr(self, name) < 1:
        raise InputError(f"InputConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.shuffle_buffer < 0:
      raise InputError(f"InputConfig.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
    if not 0 <= self.worker_index < self.num_workers:
      raise InputError(f"InputConfig.worker_index must be in [0, {self.num_workers}), "
                       f"got {self.worker_index}")


# --- Integrity ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VerifyResult:
  """Shards checked by `verify`: hashed now, or skipped as unchanged since they last passed."""
  hashed: Tuple[str, ...]
  cached: Tuple[str, ...]


def _load_verify_cache(path: Optional[str]) -> Dict[str, Dict]:
  if not path or not tf.io.gfile.exists(path):
    return {}
  try:
    with tf.io.gfile.GFile(path) as f:
      d = json.load(f)
    return dict(d["shards"]) if d.get("version") == 1 else {}
  except (ValueError, KeyError, TypeError, AttributeError):
    return {}  # a damaged cache only costs a re-hash


def _save_verify_cache(path: str, entries: Dict[str, Dict]) -> None:
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = f"{path}.tmp-{os.getpid()}-{random.getrandbits(32):08x}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump({"version": 1, "shards": entries}, f, indent=1, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _stat(path: str) -> Optional[Dict[str, int]]:
  """What a cached verification is keyed on; None if the file is missing."""
  if "://" in path:  # tf.io.gfile's remote stat: size and modification time
    try:
      st = tf.io.gfile.stat(path)
    except tf.errors.NotFoundError:
      return None
    return {"bytes": int(st.length), "mtime_ns": int(st.mtime_nsec)}
  # Locally os.stat has nanosecond times (gfile's are whole seconds); the inode and ctime
  # also change when a file is replaced or rewritten.
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return None
  return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
          "inode": st.st_ino}


def verify(m: manifest_lib.Manifest, split: str, shard_names: Optional[Sequence[str]] = None,
           cache_path: Optional[str] = None, max_workers: Optional[int] = None) -> VerifyResult:
  """Checks shards of `split` against the manifest's sizes and sha256, in parallel.

  Each shard is checked by `Manifest.verify` on a one-shard view of the manifest, so the
  rule and its messages are the manifest's; threads overlap reading and hashing.

  Args:
    m: the dataset's manifest.
    split: the split whose shards to check.
    shard_names: only these shards (e.g. one worker's); None checks all of the split.
    cache_path: JSON file of shards that passed, keyed by path with size and mtime; a shard
      whose size and mtime are unchanged (and whose manifest sha256 is the same) is skipped.
      None hashes every shard.
    max_workers: hashing threads (default: one per CPU, at most 8).

  Returns:
    Which shards were hashed and which were skipped.

  Raises:
    manifest_lib.ManifestError: naming the first bad shard (missing, truncated or corrupted)
      and how many others are bad.
  """
  shards = [s for s in m.shards(split) if shard_names is None or s.name in shard_names]
  cache = _load_verify_cache(cache_path)
  todo, cached = [], []
  for shard in shards:
    path = os.path.join(m.directory, shard.name)
    st = _stat(path)
    if st is not None and cache.get(path) == dict(st, sha256=shard.sha256):
      cached.append(shard.name)
    else:
      todo.append((shard, path, st))

  def check(item):
    shard, _, _ = item
    one = dataclasses.replace(m, splits={split: (shard,)})
    try:
      one.verify(split)
    except manifest_lib.ManifestError as e:
      return e
    return None

  workers = max_workers or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(todo) or 1))) as pool:
    failures = [e for e in pool.map(check, todo) if e is not None]
  if failures:
    more = f" (and {len(failures) - 1} more bad shard(s) in {split!r})" if len(failures) > 1 else ""
    raise manifest_lib.ManifestError(f"{failures[0]}{more}") from failures[0]
  if cache_path and todo:
    for shard, path, st in todo:
      if st is not None:  # stat taken before hashing: a later change forces a new hash
        cache[path] = dict(st, sha256=shard.sha256)
    _save_verify_cache(cache_path, cache)
  return VerifyResult(hashed=tuple(s.name for s, _, _ in todo), cached=tuple(cached))


# --- Sharding -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerShard:
  """This worker's part of a split: whole files, or every num_workers-th record of every file.

  Attributes:
    files: the shard files this worker opens.
    record_shard: (num_workers, worker_index) to apply inside each file, or None.
  """
  files: Tuple[str, ...]
  record_shard: Optional[Tuple[int, int]]


def worker_shard(files: Sequence[str], num_workers: int, worker_index: int) -> WorkerShard:
  """Splits `files` among workers so parts are disjoint and together cover every record.

  By files when there are at least as many files as workers (each file opened by one worker),
  else by records (every worker opens every file and keeps records worker_index,
  worker_index + num_workers, ...).
  """
  if num_workers <= 1:
    return WorkerShard(tuple(files), None)
  if len(files) >= num_workers:
    return WorkerShard(tuple(files[worker_index::num_workers]), None)
  return WorkerShard(tuple(files), (num_workers, worker_index))


def _workers(cfg: InputConfig, input_context) -> Tuple[int, int]:
  if input_context is None or input_context.num_input_pipelines <= 1:
    return cfg.num_workers, cfg.worker_index
  if cfg.num_workers > 1:
    raise InputError(
        f"InputConfig.num_workers={cfg.num_workers} conflicts with the distribution strategy's "
        f"{input_context.num_input_pipelines} input pipelines; set one of them")
  return input_context.num_input_pipelines, input_context.input_pipeline_id


# --- Pipeline -------------------------------------------------------------------------------


def _chunk_records(spec: fs.FeatureSpec, cfg: InputConfig) -> int:
  """Records per read chunk, from the spec's example size (known without reading anything)."""
  example_bytes = sum(f.size * f.tf_dtype.size for f in spec.features) + 64
  return max(1, min(_MAX_CHUNK_RECORDS, cfg.read_chunk_bytes // example_bytes))


def _split_chain(chain: Tuple[str, ...], training: bool) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """(steps that may run per chunk before a cache, the rest): a cache must not freeze
  augmentation, so training keeps everything from the first random step on for later."""
  if not training:
    return chain, ()
  n = 0
  while n < len(chain) and not preprocessing.is_random(chain[n]):
    n += 1
  return chain[:n], chain[n:]


def _cache_file(cfg: InputConfig, m: manifest_lib.Manifest, split: str, part: WorkerShard,
                chain: Tuple[str, ...], chunk: int, training: bool) -> str:
  """A cache file name that changes whenever what would be cached changes."""
  if not cfg.cache_dir:
    return ""
  key = json.dumps({
      "shards": [(s.name, s.sha256) for s in m.shards(split)],
      "files": [os.path.basename(f) for f in part.files], "record_shard": part.record_shard,
      "chain": chain, "chunk": chunk, "training": training,
      "seed": cfg.seed if training else None}, sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  tf.io.gfile.makedirs(cfg.cache_dir)
  return os.path.join(cfg.cache_dir, f"{split}-{digest}")


# TFRecord framing: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC.
_FRAME_HEADER = 12
_FRAME_BYTES = 16
_ONE_BYTE_LABELS = 128  # labels below this are one varint byte, so every record has one size


def fixed_record_bytes(m: manifest_lib.Manifest, split: str) -> Optional[int]:
  """The framed size of every record of `split` when they are all the same, else None.

  Examples encoded by FeatureSpec.encode have one serialized size when every feature is raw
  bytes or a float list (fixed width) and every label is one varint byte. Such shards are a
  sequence of equal frames, which the reader cuts in one op per chunk instead of one tf.data
  element per record. The manifest confirms it: each uncompressed shard must be exactly
  count frames long. The reader still checks every frame's length field as it goes.
  """
  spec = m.spec
  if m.compression or spec.num_classes > _ONE_BYTE_LABELS:
    return None
  if any(f.encoding not in ("raw", "float_list") for f in spec.features):
    return None
  zeros = {f.name: np.zeros(f.shape, f.dtype) for f in spec.features}
  stride = len(spec.encode(zeros, 0)) + _FRAME_BYTES
  if all(s.bytes == s.count * stride for s in m.shards(split)):
    return stride
  return None


def _read_fixed(segment, stride: int, chunk: int) -> tf.data.Dataset:
  """Records of one (path, header, body, footer) byte range of a fixed-frame shard, as
  string tensors of up to `chunk` records; checks each frame's length field."""
  path, header, body, footer = segment
  length = stride - _FRAME_BYTES

  def cut(block):
    n = tf.strings.length(block) // stride
    starts = tf.range(n) * stride
    lengths = tf.io.decode_raw(tf.strings.substr(block, starts, tf.fill([n], 8)), tf.int64,
                               little_endian=True)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(lengths, length)),
        ["TFRecord file", path, f"is not a sequence of {length}-byte records as its manifest "
         "and feature spec imply (rewrite the dataset with //scripts:make_tfrecords)"])
    with tf.control_dependencies([check]):
      return tf.strings.substr(block, starts + _FRAME_HEADER, tf.fill([n], length))

  return tf.data.FixedLengthRecordDataset(
      path, record_bytes=body, header_bytes=header, footer_bytes=footer,
      buffer_size=min(chunk * stride, 4 << 20)).map(cut)


def _fixed_segments(m: manifest_lib.Manifest, split: str, files: Sequence[str], stride: int,
                    chunk: int) -> Tuple[tf.data.Dataset, int]:
  """A dataset of (path, header, body, footer) byte ranges: each file's whole chunks, then its
  remainder (FixedLengthRecordDataset needs a body that is a multiple of its record size);
  and how many there are."""
  counts = {s.name: s.count for s in m.shards(split)}
  cols = ([], [], [], [])
  for path in files:
    n = counts[os.path.basename(path)]
    full, rest = divmod(n, chunk)
    rows = []
    if full:
      rows.append((path, 0, chunk * stride, rest * stride))
    if rest:
      rows.append((path, full * chunk * stride, rest * stride, 0))
    for row in rows:
      for col, v in zip(cols, row):
        col.append(v)
  return (tf.data.Dataset.from_tensor_slices((tf.constant(cols[0], tf.string),
                                              *(tf.constant(c, tf.int64) for c in cols[1:]))),
          len(cols[0]))


def _chunks(m: manifest_lib.Manifest, split: str, cfg: InputConfig, training: bool,
            part: WorkerShard, chunk: int, chain: Tuple[str, ...], seed: int) -> tf.data.Dataset:
  """One source's stream of parsed chunks (endless when training)."""
  spec = m.spec
  deterministic = not training or cfg.seed is not None
  # The fast path skips TFRecord's per-record CRCs; the sha256 of every shard (verify) is
  # the stronger check, so the fast path is taken only when it ran.
  stride = fixed_record_bytes(m, split) if cfg.verify and part.record_shard is None else None

  def parse(serialized):
    features, labels = spec.parse_batch(serialized)
    if chain:
      features = preprocessing.apply(chain, features, spec, training=False)
    return features, labels

  if stride is not None:
    ds, num_readers = _fixed_segments(m, split, part.files, stride, chunk)
    read = lambda *segment: _read_fixed(segment, stride, chunk).map(parse)
  else:
    compression = m.compression or None

    def read(path):
      records = tf.data.TFRecordDataset(path, compression_type=compression)
      if part.record_shard is not None:
        records = records.shard(*part.record_shard)
      return records.batch(chunk).map(parse)

    ds = tf.data.Dataset.from_tensor_slices(list(part.files))
    num_readers = len(part.files)
  if training:
    ds = ds.shuffle(num_readers, seed=seed, reshuffle_each_iteration=True)
    if not cfg.cache:
      ds = ds.repeat()
  # Reading and parsing run inside the interleave, so each shard's reader parses its own
  # chunks on its own thread.
  ds = ds.interleave(read, cycle_length=max(1, min(num_readers, cfg.cycle_length)),
                     block_length=1, num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
  if cfg.cache:
    ds = ds.cache(_cache_file(cfg, m, split, part, chain, chunk, training))
    if training:
      # The cache fixes the first epoch's order; reshuffling chunks changes which examples
      # meet in a shuffle window from one epoch to the next.
      windows = max(1, math.ceil(cfg.shuffle_buffer / chunk))
      ds = ds.shuffle(2 * windows + 1, seed=seed, reshuffle_each_iteration=True).repeat()
  return ds


def _permute_and_augment(ds: tf.data.Dataset, window: int, chain: Tuple[str, ...],
                         spec: fs.FeatureSpec, training: bool, seed: int) -> tf.data.Dataset:
  """Permutes each window of `window` examples (window <= 1: no permutation) and applies
  `chain` to it, one op per window; stateless seeds keep parallel maps reproducible."""
  if window > 1:
    ds = ds.rebatch(window)
  elif not chain:
    return ds

  def permute(i, batch):
    features, labels = batch
    if window > 1:
      order = tf.random.experimental.stateless_shuffle(
          tf.range(tf.shape(labels)[0]), seed=tf.stack([tf.constant(seed, tf.int64), i]))
      features, labels = tf.nest.map_structure(lambda t: tf.gather(t, order), (features, labels))
    if chain:
      step_seed = tf.stack([tf.constant(seed + 7919, tf.int64), i])
      features = preprocessing.apply(chain, features, spec, training, step_seed)
    return features, labels

  return ds.enumerate().map(permute, num_parallel_calls=_AUTOTUNE)


def _input_fn(sources: Sequence[Tuple[manifest_lib.Manifest, float]], split: str,
              cfg: InputConfig, training: bool) -> Callable[..., tf.data.Dataset]:
  """The input_fn behind make_input_fn and make_mixture_input_fn."""
  spec = sources[0][0].spec
  chain = tuple(cfg.preprocessing)
  chunk = min(_chunk_records(m.spec, cfg) for m, _ in sources)
  before_cache, after_cache = _split_chain(chain, training)
  if not cfg.cache and training:
    # Without a cache, apply the whole chain per shuffle window (fewer, larger ops) and
    # permute the raw (uint8) values, which are cheaper to move than floats.
    before_cache, after_cache = (), chain
  weights = [float(w) for _, w in sources]

  if cfg.verify:
    for m, _ in sources:
      part = worker_shard(m.files(split), cfg.num_workers, cfg.worker_index)
      verify(m, split, [os.path.basename(f) for f in part.files], cfg.verify_cache)

  def input_fn(input_context=None):
    num_workers, index = _workers(cfg, input_context)
    batch_size = cfg.batch_size
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)
    seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**31)
    streams = []
    for i, (m, _) in enumerate(sources):
      part = worker_shard(m.files(split), num_workers, index)
      streams.append(_chunks(m, split, cfg, training, part, chunk, before_cache, seed + i))
    if len(streams) == 1:
      ds = streams[0]
    else:
      # Equal-sized chunks make the sampling weights the example proportions.
      streams = [s.rebatch(chunk, drop_remainder=True) for s in streams]
      ds = tf.data.Dataset.sample_from_datasets(streams, weights, seed=seed)
    if training:
      ds = _permute_and_augment(ds, cfg.shuffle_buffer, after_cache, spec, training, seed)
    ds = ds.rebatch(batch_size, drop_remainder=training or cfg.drop_remainder)
    return ds.prefetch(_AUTOTUNE)

  return input_fn


def make_input_fn(m: manifest_lib.Manifest, split: str, cfg: InputConfig,
                  training: bool) -> Callable[..., tf.data.Dataset]:
  """Builds an Estimator input_fn over one split of a dataset.

  Args:
    m: the dataset's manifest.
    split: e.g. "train" or "eval".
    cfg: batching, preprocessing, shuffling, caching, sharding and verification.
    training: shuffle, augment and repeat forever (the Estimator stops at max_steps).

  Returns:
    input_fn(input_context=None) -> dataset of (features, labels) batches; features hold
    every feature of the spec, the input preprocessed by cfg.preprocessing.

  Raises:
    manifest_lib.ManifestError: unknown split, or a shard is missing, truncated or corrupted.
  """
  m.shards(split)
  return _input_fn([(m, 1.0)], split, cfg, training)


def make_mixture_input_fn(sources: Sequence[Tuple[manifest_lib.Manifest, float]], split: str,
                          cfg: InputConfig) -> Callable[..., tf.data.Dataset]:
  """Builds a training input_fn sampling examples from several datasets by weight.

  Args:
    sources: (manifest, weight) pairs, e.g. from mixture.read_sources; weights need not sum
      to 1 (they are normalised).
    split: the split read from every source.
    cfg: as for make_input_fn; cfg.seed also seeds the sampling.

  Returns:
    A training input_fn (endless, shuffled) whose examples come from source i with
    probability weight_i / sum(weights).

  Raises:
    mixture.MixtureError: no sources, a weight that is not positive, or feature specs differ.
    manifest_lib.ManifestError: a source lacks the split, or a shard is bad.
  """
  if not sources:
    raise mixture.MixtureError("a mixture needs at least one source")
  for m, w in sources:
    if not (math.isfinite(w) and w > 0):
      raise mixture.MixtureError(f"weight of {m.directory} must be a positive number, got {w}")
    m.shards(split)
  mixture.check_compatible([m for m, _ in sources])
  total = sum(w for _, w in sources)
  return _input_fn([(m, w / total) for m, w in sources], split, cfg, training=True)


def make_eval_input_fns(eval_sets: Sequence[Tuple[str, manifest_lib.Manifest]], split: str,
                        cfg: InputConfig) -> List[Tuple[str, Callable[..., tf.data.Dataset]]]:
  """One evaluation input_fn per named dataset: [(name, input_fn), ...] in the given order."""
  return [(name, make_input_fn(m, split, cfg, training=False)) for name, m in eval_sets]
