"""The one input_fn builder for every dataset, driven by its manifest and feature spec.

Training (endless):
  this worker's shard files, shuffled every epoch (seeded) -> parallel interleave over files,
  each read in chunks of ~1k records and parsed per chunk (spec.parse_batch, one op) ->
  [weighted mixture of sources] -> shuffle: a seeded permutation of every window of
  `shuffle_buffer` examples -> batch (static shape) -> preprocessing chain (augmentation on)
  -> prefetch(AUTOTUNE).
Evaluation (one pass, deterministic order):
  shard files in manifest order -> interleave -> parse and chain (augmentation off) per chunk
  -> batch (`drop_remainder` optional) -> prefetch.
With `cache`, parsed chunks (after the chain's leading deterministic presets) are cached before
the shuffle and `repeat`; later epochs neither read nor parse, and chunks are reshuffled every
epoch before the window permutation so batches still differ between epochs.

Why chunks and windows instead of `shuffle(buffer)` and `batch` on single records: every
tf.data element costs a microsecond or more, and a parallel interleave of single records
several (the record-level pipeline gave ~130k examples/s on the 2-core CI box). Here the only
per-record work is in the reader; everything else runs per chunk, window or batch. The
shuffle is as strong as a shuffle buffer of the same size: every window of `shuffle_buffer`
consecutive examples of the interleaved stream is permuted uniformly, and the file order
changes every epoch.

Readers: when every record of a dataset has one serialized size (raw and float-list
features, labels below 128, uncompressed; input_fns/fixed_frames.py), shards are read as
blocks of equal frames and cut and parsed with one op each per block, ~35% less CPU per
example than TFRecordDataset. It skips the frames' CRCs, so it is used only when the shards'
sha256 was verified (InputConfig.verify). Other datasets (GZIP, int64 lists, many classes)
are read by TFRecordDataset in chunks and parsed per chunk.

Sharding for distributed runs: each worker reads a disjoint part: whole shard files when there
are at least as many files as workers, else every num_workers-th record of every file. The
worker comes from the distribution strategy's `input_context` (Estimator passes it) or from
`InputConfig.num_workers` / `worker_index`.

Integrity: when the input_fn is built, every shard this worker will read is checked against
the manifest's byte size and sha256 (`verify`), in parallel threads, so a truncated or
corrupted shard stops the run before training with a message naming it. Hashing runs at
~1 GB/s per core; for large datasets set `InputConfig.verify_cache` (e.g. a file in the
model_dir): shards whose size, mtime, ctime and inode are unchanged since they last passed are
not hashed again (it trusts file metadata: delete the file to re-hash everything).
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import fixed_frames
from input_fns import manifest as manifest_lib
from input_fns import mixture
from input_fns import preprocessing

_AUTOTUNE = tf.data.AUTOTUNE


def _pipeline_options() -> tf.data.Options:
  """No autotune optimizer thread, for every pipeline (training and evaluation).

  On TF 2.15 destroying an iterator waits for that thread's next wake-up, whose period grows
  to a minute: closing a session over an autotuned pipeline took 1-40 s in about half of the
  main job's runs (gdb: DirectSession::~DirectSession -> RootDataset::Iterator::~Iterator ->
  Model::OptimizeLoop); the training session's close at the end of a run stalled the main job
  38 s once in a 94 s run. Without it AUTOTUNE means "all cores" for parallel maps and
  interleaves and prefetch keeps its own buffer tuning: the main job trained its 2000 steps in
  0:42-0:44 either way (2-core machine), and ended without a stall.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return options


_PIPELINE_OPTIONS = _pipeline_options()
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
  with files_lib.atomic_open(path) as f:
    json.dump({"version": 1, "shards": entries}, f, indent=1, sort_keys=True)


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


_no_autograph = tf.autograph.experimental.do_not_convert


def _chunks(m: manifest_lib.Manifest, split: str, cfg: InputConfig, training: bool,
            part: WorkerShard, chunk: int, chain: Tuple[str, ...], seed: int) -> tf.data.Dataset:
  """One source's stream of parsed chunks (endless when training)."""
  spec = m.spec
  deterministic = not training or cfg.seed is not None
  # The fixed-frame reader skips TFRecord's per-record CRCs; the sha256 of every shard
  # (verify) is the stronger check, so that reader is used only when it ran.
  stride = None
  if cfg.verify and part.record_shard is None:
    stride = fixed_frames.record_bytes(m, split)

  # Every function handed to tf.data below is plain graph code (no Python control flow on
  # tensors): AutoGraph's conversion of it and of everything it calls (parsing, the presets)
  # added ~2.4 s to each run's set-up, for nothing.
  @_no_autograph
  def preprocess(features, labels):
    if chain:
      features = preprocessing.apply(chain, features, spec, training=False)
    return features, labels

  @_no_autograph
  def parse(serialized):
    return preprocess(*spec.parse_batch(serialized))

  if stride is not None:
    ds, num_readers = fixed_frames.segments(m, split, part.files, stride, chunk)
    read = _no_autograph(
        lambda *segment: fixed_frames.read(segment, stride, chunk, spec).map(preprocess))
  else:
    compression = m.compression or None

    @_no_autograph
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


def _training_batches(ds: tf.data.Dataset, window: int, batch_size: int,
                      chain: Tuple[str, ...], spec: fs.FeatureSpec, seed: int,
                      pipeline_batch: Optional[int] = None) -> tf.data.Dataset:
  """Endless parsed chunks -> shuffled, preprocessed batches of a static shape.

  Each window of `window` examples (rounded up to whole pipeline batches) is permuted with one
  gather and split into batches with a reshape; then `chain` runs per batch. Stateless seeds
  (seed, window or batch index) keep both reproducible under parallel maps.

  `pipeline_batch` is the examples one step takes from this pipeline (batch_size times the
  replicas it feeds; default batch_size). The window follows it, not the per-replica
  batch_size, so R replicas dealt consecutive batches see exactly the examples, in the same
  order, that one device with R times the batch sees (the mirrored run follows the
  single-device run step for step).
  """
  pipeline_batch = pipeline_batch or batch_size
  per_window = max(1, math.ceil(window / pipeline_batch)) if window > 1 else 1
  size = per_window * pipeline_batch if window > 1 else batch_size
  ds = ds.rebatch(size, drop_remainder=True)

  @_no_autograph
  def permute(i, batch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(size), seed=tf.stack([tf.constant(seed, tf.int64), i]))
    return tf.nest.map_structure(
        lambda t: tf.reshape(tf.gather(t, order), [size // batch_size, batch_size, *t.shape[1:]]),
        batch)

  @_no_autograph
  def augment(i, batch):
    features, labels = batch
    step_seed = tf.stack([tf.constant(seed + 7919, tf.int64), i])
    return preprocessing.apply(chain, features, spec, True, step_seed), labels

  if window > 1:
    ds = ds.enumerate().map(permute, num_parallel_calls=_AUTOTUNE).unbatch()
  if chain:
    ds = ds.enumerate().map(augment, num_parallel_calls=_AUTOTUNE)
  return ds


def _input_fn(sources: Sequence[Tuple[manifest_lib.Manifest, float]], split: str,
              cfg: InputConfig, training: bool) -> Callable[..., tf.data.Dataset]:
  """The input_fn behind make_input_fn and make_mixture_input_fn."""
  spec = sources[0][0].spec
  chain = tuple(cfg.preprocessing)
  chunk = min(_chunk_records(m.spec, cfg) for m, _ in sources)
  before_cache, after_cache = _split_chain(chain, training)
  if not cfg.cache and training:
    # Without a cache the whole chain runs per batch, after the shuffle: the shuffle then
    # moves raw (uint8) values, which are cheaper to move than floats.
    before_cache, after_cache = (), chain
  weights = [float(w) for _, w in sources]

  if cfg.verify:
    for m, _ in sources:
      part = worker_shard(m.files(split), cfg.num_workers, cfg.worker_index)
      verify(m, split, [os.path.basename(f) for f in part.files], cfg.verify_cache)

  def input_fn(input_context=None):
    num_workers, index = _workers(cfg, input_context)
    batch_size = pipeline_batch = cfg.batch_size
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)
      pipeline_batch = batch_size * (input_context.num_replicas_in_sync //
                                     input_context.num_input_pipelines)
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
      ds = _training_batches(ds, cfg.shuffle_buffer, batch_size, after_cache, spec, seed,
                             pipeline_batch)
    else:
      ds = ds.rebatch(batch_size, drop_remainder=cfg.drop_remainder)
    ds = ds.with_options(_PIPELINE_OPTIONS)
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
