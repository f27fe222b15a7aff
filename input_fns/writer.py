"""Writes a dataset: sharded TFRecord files plus manifest.json, by parallel worker processes.

A finished dataset directory holds

  {split}-{i:05d}-of-{n:05d}.tfrecord[.gz]   the shards; each appears only when complete
  vocab.txt ...                              the source's assets, if any
  manifest.json                              written last: counts, sizes, sha256s, the spec

While a write is under way, `.writing/` beside them holds its state: `state.json` (the
dataset's fingerprint), a lock, temporary shards, and one sidecar per finished shard (its
count, size and sha256). A worker writes a shard under `.writing/`, fsyncs it, writes the
sidecar, then renames the shard into place, so every visible shard is complete and has a
sidecar. A rerun after a crash (even kill -9) keeps each shard whose file still matches its
sidecar and writes only the others; `.writing/` goes away once the manifest is written.

The fingerprint (sha256 of the writer version, feature spec, the source's identity and the
shard plan) decides what "the same dataset" means: a rerun into a directory that holds the same
fingerprint resumes or is a no-op; any other dataset there is refused, never overwritten.

Workers are forked processes (one per core by default) that take shards from a shared
counter. TensorFlow's runtime is not fork-safe, so workers never call it: they encode and frame
records with input_fns/records.py. Same source, options and seed -> byte-identical shards,
whatever the number of workers.

gs://bucket/prefix output: shards are written in a local staging directory, each uploaded
through google-cloud-storage (input_fns/gcs.py, retried with backoff) as soon as it is
complete, with its fingerprint, count and sha256 as object metadata; assets and then the
manifest are uploaded last. A rerun skips shards already uploaded with the same fingerprint.

A record that cannot be converted (BadRecordError) means this dataset can never be completed
as asked: the writer removes every shard of it (local and uploaded) and its state, leaving the
output location as it was, then raises.
"""

import collections
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import mmap
import multiprocessing
import os
import queue
import re
import shutil
import signal
import struct
import tempfile
import time
import traceback
import zlib
from concurrent import futures
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import files as files_lib
from input_fns import gcs
from input_fns import manifest as manifest_lib
from input_fns import progress as progress_lib
from input_fns import records
from input_fns.formats import base

WRITING_DIR = ".writing"
STATE_FILE = "state.json"
MAX_SHARDS = 99999
COMPRESSIONS = ("", "GZIP")
_SHARD_RE = re.compile(r"^[\w.]+-\d{5}-of-\d{5}\.tfrecord(\.gz)?$")
_CHUNK = 1024  # examples loaded, encoded and reported at a time by a worker...
_CHUNK_BYTES = 16 << 20  # ...or fewer, so that a chunk of big examples stays this small
_UPLOAD_THREADS = 4
_COUNTER = struct.Struct("q")


class WriterError(errors.UserInputError):
  """The output location cannot be written, is in use, or the options are invalid."""


class DifferentDatasetError(WriterError):
  """The output location already holds (part of) a different dataset."""


class BadRecordError(errors.UserInputError):
  """A source record could not be converted; the message names the record."""


@dataclasses.dataclass(frozen=True)
class WriteOptions:
  """How to write a source.

  Attributes:
    num_shards: shards per split (fewer when a split has fewer examples), 1..99999.
    compression: "" or "GZIP" (then shards end in .tfrecord.gz).
    workers: worker processes; 0 means one per available core.
    shuffle_seed: shuffle each split with this seed before sharding; None keeps source order
      (shard i then holds examples i, i + n, i + 2n, ...).
    progress_interval_s: seconds between progress lines.
    staging_dir: gs:// output only: where shards are written before upload; "" means a
      directory under the system temp dir derived from the URL (so a rerun finds it).
    gcs_retry: gs:// output only: retries and timeouts of each GCS call.
  """
  num_shards: int = 1
  compression: str = ""
  workers: int = 0
  shuffle_seed: Optional[int] = None
  progress_interval_s: float = 10.0
  staging_dir: str = ""
  gcs_retry: gcs.RetryPolicy = gcs.RetryPolicy()


def shard_name(split: str, index: int, num_shards: int, compression: str) -> str:
  ext = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return f"{split}-{index:05d}-of-{num_shards:05d}{ext}"


@dataclasses.dataclass(frozen=True)
class _Task:
  """One shard to write: its split, file name and the source records it holds, in order."""
  split: str
  index: int
  name: str
  records: Sequence[Any]


def plan(source: base.Source, options: WriteOptions) -> List[_Task]:
  """Assigns every record to a shard: round robin over the (optionally shuffled) split."""
  tasks = []
  for split in sorted(source.splits):
    recs = source.splits[split]
    n = len(recs)
    if options.shuffle_seed is None:
      order = np.arange(n)
    else:
      rng = np.random.default_rng([options.shuffle_seed, zlib.crc32(split.encode())])
      order = rng.permutation(n)
    k = min(options.num_shards, n)
    for i in range(k):
      idx = order[i::k]
      part = recs[idx] if isinstance(recs, np.ndarray) else [recs[j] for j in idx]
      tasks.append(_Task(split, i, shard_name(split, i, k, options.compression), part))
  return tasks


def fingerprint(source: base.Source, options: WriteOptions, tasks: Sequence[_Task]) -> str:
  """sha256 of everything that determines the shards' bytes (not paths, not worker count)."""
  d = {"writer_version": manifest_lib.WRITER_VERSION,
       "spec": source.spec.to_json_dict(),
       "source": source.identity,
       "compression": options.compression,
       "shuffle_seed": options.shuffle_seed,
       "shards": [[t.name, len(t.records)] for t in tasks]}
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _check(source: base.Source, options: WriteOptions) -> None:
  if not 1 <= options.num_shards <= MAX_SHARDS:
    raise WriterError(f"--num_shards must be in [1, {MAX_SHARDS}], got {options.num_shards}")
  if options.compression not in COMPRESSIONS:
    raise WriterError(f"--compression must be none or GZIP, got {options.compression!r}")
  if options.workers < 0:
    raise WriterError(f"--workers must be >= 0, got {options.workers}")
  if not source.splits:
    raise WriterError(f"empty source: {source.description.get('format', 'the source')} "
                      f"has no examples")


# --- Worker processes ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Job:
  """What forked workers inherit (never pickled: fork shares it)."""
  source: base.Source
  tasks: Sequence[_Task]
  compression: str
  directory: str  # where finished shards are renamed to
  state_dir: str  # temporary shards and sidecars
  fingerprint: str


def _sidecar_path(state_dir: str, name: str) -> str:
  return os.path.join(state_dir, name + ".json")


def _exit_with_parent(parent_pid: int) -> None:
  """Makes the kernel kill this worker if the parent dies (e.g. kill -9), on Linux."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent_pid:
    os._exit(1)  # pylint: disable=protected-access


def _write_shard(job: _Job, task: _Task, encoder: records.ExampleEncoder, results) -> manifest_lib.Shard:
  tmp = os.path.join(job.state_dir, task.name + ".tmp")
  final = os.path.join(job.directory, task.name)
  source = job.source
  # Strings (table columns) have no fixed size: each counts as 64 bytes for the chunk size.
  example_bytes = sum(f.size * (64 if f.dtype == "string" else np.dtype(f.dtype).itemsize)
                      for f in source.spec.features)
  step = int(max(1, min(_CHUNK, _CHUNK_BYTES // max(example_bytes, 1))))
  writer = records.ShardWriter(tmp, job.compression)
  try:
    for start in range(0, len(task.records), step):
      chunk = task.records[start:start + step]
      batch = source.load_batch(task.split, chunk)
      rows = encoder.encode_batch(*batch) if batch is not None else None
      if rows is not None:
        writer.write_rows(rows)
      else:  # one by one (from the loaded batch if there is one), so that an error names its record
        for i, rec in enumerate(chunk):
          try:
            if batch is None:
              values, label = source.load(task.split, rec)
            else:
              values, label = {k: v[i] for k, v in batch[0].items()}, batch[1][i]
            data = encoder.encode(values, label)
          except errors.UserInputError as e:
            where, message = source.describe(task.split, rec), str(e)
            raise BadRecordError(message if where in message else f"{where}: {message}") from None
          writer.write(data)
      results.put(("progress", len(chunk)))
    count, nbytes, sha256 = writer.close()
  except BaseException:
    writer.abort()
    raise
  shard = manifest_lib.Shard(name=task.name, count=count, bytes=nbytes, sha256=sha256)
  files_lib.write_atomically(_sidecar_path(job.state_dir, task.name), json.dumps(
      {"fingerprint": job.fingerprint, **dataclasses.asdict(shard)}).encode())
  os.replace(tmp, final)
  files_lib.fsync_dir(job.directory)
  return shard


def _worker(job: _Job, next_task, lock, results, parent_pid: int) -> None:
  """Runs in a forked process: writes shards until none are left or one fails."""
  _exit_with_parent(parent_pid)
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
  encoder = records.ExampleEncoder(job.source.spec)
  while True:
    with lock:
      (i,) = _COUNTER.unpack_from(next_task)
      _COUNTER.pack_into(next_task, 0, i + 1)
    if i >= len(job.tasks):
      return
    task = job.tasks[i]
    try:
      results.put(("done", i, _write_shard(job, task, encoder, results)))
    except BadRecordError as e:
      results.put(("bad_record", i, str(e)))
      return
    except errors.UserInputError as e:
      results.put(("error", i, str(e)))
      return
    except OSError as e:
      results.put(("error", i, f"cannot write shard {os.path.join(job.directory, task.name)}: "
                               f"{e.strerror or e}; finished shards are kept, rerun to complete"))
      return
    except BaseException:  # pylint: disable=broad-except
      results.put(("crash", i, traceback.format_exc()))
      return


def _available_cpus() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _run_workers(job: _Job, workers: int, progress: progress_lib.Progress,
                 on_done: Callable[[_Task, manifest_lib.Shard], None]) -> Dict[str, manifest_lib.Shard]:
  """Forks the workers, relays their progress, and returns name -> Shard of every task.

  Raises:
    BadRecordError, WriterError: a worker reported one (the others are stopped).
    RuntimeError: a worker crashed (a bug; carries its traceback).
  """
  ctx = multiprocessing.get_context("fork")
  # The next task's index, in anonymous shared memory (no backing file, unlike ctx.Value).
  next_task = mmap.mmap(-1, 8)
  lock = ctx.Lock()
  results = ctx.Queue()
  procs = [ctx.Process(target=_worker, args=(job, next_task, lock, results, os.getpid()),
                       name=f"shard-writer-{k}", daemon=True) for k in range(workers)]
  for p in procs:
    p.start()
  done = {}
  finished = False
  try:
    while len(done) < len(job.tasks):
      try:
        msg = results.get(timeout=0.5)
      except queue.Empty:
        killed = [p for p in procs if p.exitcode is not None and p.exitcode != 0]
        if killed or all(p.exitcode is not None for p in procs):
          try:
            msg = results.get(timeout=1.0)
          except queue.Empty:
            code = killed[0].exitcode if killed else 0
            raise WriterError(
                f"a shard writer process died (exit code {code}"
                f"{', killed by signal ' + str(-code) if code < 0 else ''}; out of memory?) with "
                f"{len(job.tasks) - len(done)} shards unfinished; finished shards are kept, "
                f"rerun to complete") from None
        else:
          continue
      kind = msg[0]
      if kind == "progress":
        progress.add(msg[1])
      elif kind == "done":
        task = job.tasks[msg[1]]
        done[task.name] = msg[2]
        on_done(task, msg[2])
      elif kind == "bad_record":
        raise BadRecordError(msg[2])
      elif kind == "error":
        raise WriterError(msg[2])
      else:
        raise RuntimeError(f"shard writer crashed writing {job.tasks[msg[1]].name}:\n{msg[2]}")
    finished = True
  finally:
    if not finished:  # stop the others; their temporary files are cleaned up by the caller
      for p in procs:
        if p.is_alive():
          p.terminate()
    for p in procs:
      p.join(timeout=30)
      if p.is_alive():
        p.terminate()
        p.join()
    results.close()
    next_task.close()
  return done


# --- Local directories -----------------------------------------------------------------------


def _file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def existing_dataset(read: Callable[[], manifest_lib.Manifest], where: str,
                     fingerprint: str) -> manifest_lib.Manifest:
  """The manifest already at the output location (local or gs://), if it is this dataset's.

  Both resume paths use it: a rerun may finish or confirm only the dataset it started.

  Raises:
    DifferentDatasetError: the manifest cannot be read, or describes another dataset.
  """
  try:
    m = read()
  except manifest_lib.ManifestError as e:
    raise DifferentDatasetError(f"{where} holds a dataset whose manifest cannot be read ({e}); "
                                f"choose another --output_dir or delete it") from None
  if m.fingerprint != fingerprint:
    raise DifferentDatasetError(
        f"{where} already holds a different dataset (source "
        f"{dict(m.source).get('format', '?')}, {sum(m.count(s) for s in m.splits):,} examples, "
        f"fingerprint {m.fingerprint[:12] or 'none'} vs {fingerprint[:12]} for this one); "
        f"choose another --output_dir or delete it")
  return m


class _LocalDir:
  """A local output (or staging) directory and its `.writing/` state, held under a lock."""

  def __init__(self, directory: str, private: bool = False):
    """Args:
      directory: the directory.
      private: a staging directory owned by the writer: state of another dataset there is
        discarded instead of refused.
    """
    self.directory = directory
    self.state_dir = os.path.join(directory, WRITING_DIR)
    self._private = private
    self._created_dir = False
    self.created_state = False
    self._lock_fd = None

  def acquire(self) -> None:
    """Creates the directory and takes its lock.

    Raises:
      WriterError: the path is a file, cannot be created, or another writer holds the lock.
    """
    d = self.directory
    try:
      if not os.path.isdir(d):
        if os.path.lexists(d):
          raise WriterError(f"output dir {d} exists and is not a directory")
        os.makedirs(d)
        self._created_dir = True
      self.created_state = not os.path.isdir(self.state_dir)
      os.makedirs(self.state_dir, exist_ok=True)
      fd = os.open(os.path.join(self.state_dir, "lock"), os.O_CREAT | os.O_RDWR, 0o666)
    except PermissionError:
      raise WriterError(f"cannot write to output dir {d}: permission denied") from None
    except OSError as e:
      raise WriterError(f"cannot create output dir {d}: {e.strerror or e}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise WriterError(f"another writer is writing to {d} (it holds "
                        f"{os.path.join(self.state_dir, 'lock')})") from None
    self._lock_fd = fd

  def release(self, remove_state: bool) -> None:
    if remove_state:
      shutil.rmtree(self.state_dir, ignore_errors=True)
    if self._lock_fd is not None:
      os.close(self._lock_fd)
      self._lock_fd = None
    if remove_state and (self._created_dir or self._private):
      try:
        os.rmdir(self.directory)  # only if it is empty
      except OSError:
        pass

  def _read_json(self, path: str) -> Optional[Dict[str, Any]]:
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def _reset_state(self) -> None:
    for name in os.listdir(self.state_dir):
      if name != "lock":
        path = os.path.join(self.state_dir, name)
        if os.path.isdir(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.remove(path)

  def existing(self, fp: str, tasks: Sequence[_Task]
               ) -> Tuple[Optional[manifest_lib.Manifest], Dict[str, manifest_lib.Shard]]:
    """Looks at what the directory holds.

    Returns:
      (manifest, candidates): the manifest if the dataset is already complete (else None),
      and shards a previous run of the same dataset finished (to be checked by hash).

    Raises:
      DifferentDatasetError: the directory holds (part of) another dataset.
    """
    d = self.directory
    candidates = {}
    m = None
    if os.path.exists(os.path.join(d, manifest_lib.FILENAME)):
      m = existing_dataset(lambda: manifest_lib.read(d), d, fp)
      expected = {t.name for t in tasks}
      shards = {s.name: s for split in m.splits.values() for s in split}
      complete = set(shards) == expected and all(
          os.path.isfile(os.path.join(d, s.name)) and
          os.path.getsize(os.path.join(d, s.name)) == s.bytes for s in shards.values()) and all(
              os.path.isfile(os.path.join(d, f)) for f in m.assets.values())
      if complete:
        return m, {}
      candidates.update(shards)
    state = self._read_json(os.path.join(self.state_dir, STATE_FILE))
    if state is not None and state.get("fingerprint") != fp:
      if not self._private:
        raise DifferentDatasetError(
            f"{d} holds an unfinished different dataset (an interrupted write with other inputs "
            f"or options, fingerprint {str(state.get('fingerprint'))[:12]} vs {fp[:12]}); "
            f"choose another --output_dir or delete it")
      self._reset_state()
      state = None
    if state is None and m is None and not self._private:
      strays = sorted(f for f in os.listdir(d) if _SHARD_RE.match(f))
      if strays:
        raise DifferentDatasetError(f"{d} holds TFRecord shards that no manifest describes "
                                    f"({strays[0]}, ...); choose another --output_dir or "
                                    f"delete them")
    if state is None:
      files_lib.write_atomically(os.path.join(self.state_dir, STATE_FILE), json.dumps(
          {"fingerprint": fp, "directory": d, "started": time.time()}).encode())
    return None, candidates

  def complete_shards(self, tasks: Sequence[_Task], fp: str,
                      candidates: Mapping[str, manifest_lib.Shard]) -> Dict[str, manifest_lib.Shard]:
    """The tasks whose shard file exists and matches its sidecar (or the manifest) by size
    and sha256; removes stale temporary files and shard files that do not match."""
    for name in os.listdir(self.state_dir):
      if files_lib.is_temporary(name):
        os.remove(os.path.join(self.state_dir, name))
    done = {}
    for t in tasks:
      path = os.path.join(self.directory, t.name)
      side = self._read_json(_sidecar_path(self.state_dir, t.name))
      rec = None
      if side is not None and side.get("fingerprint") == fp:
        rec = manifest_lib.Shard(name=t.name, count=side["count"], bytes=side["bytes"],
                                 sha256=side["sha256"])
      elif t.name in candidates:
        rec = candidates[t.name]
      if (rec is not None and rec.count == len(t.records) and os.path.isfile(path) and
          os.path.getsize(path) == rec.bytes and _file_sha256(path) == rec.sha256):
        done[t.name] = rec
      elif os.path.lexists(path):
        os.remove(path)
    return done

  def remove_dataset(self, tasks: Sequence[_Task]) -> None:
    """Removes every shard, asset and the manifest of the dataset being written."""
    for t in tasks:
      path = os.path.join(self.directory, t.name)
      if os.path.lexists(path):
        os.remove(path)
    path = os.path.join(self.directory, manifest_lib.FILENAME)
    if os.path.lexists(path):
      os.remove(path)

  def remove_temporaries(self) -> None:
    if os.path.isdir(self.state_dir):
      for name in os.listdir(self.state_dir):
        if files_lib.is_temporary(name):
          os.remove(os.path.join(self.state_dir, name))


# --- Writing ---------------------------------------------------------------------------------


def write(output_dir: str, source: base.Source, options: WriteOptions = WriteOptions(),
          folder: Optional[gcs.Folder] = None) -> manifest_lib.Manifest:
  """Writes `source` to `output_dir` (local path or gs://bucket/prefix), or resumes doing so.

  Args:
    output_dir: where the dataset goes.
    source: an opened source (input_fns/formats).
    options: sharding, compression, workers, shuffling.
    folder: gs:// output only: the GCS folder to use (default: one built from output_dir).

  Returns:
    The dataset's manifest (the existing one if the same dataset was already complete).

  Raises:
    WriterError: bad options, empty source, unusable output location.
    DifferentDatasetError: output_dir already holds another dataset.
    BadRecordError: a record could not be converted (nothing of this dataset is left behind).
    gcs.GcsError: GCS unreachable after retries, missing bucket, no permission.
  """
  _check(source, options)
  tasks = plan(source, options)
  fp = fingerprint(source, options, tasks)
  if gcs.is_gcs_path(output_dir):
    return _write_gcs(output_dir, source, options, tasks, fp, folder)
  return _write_local(output_dir, source, options, tasks, fp)


def _manifest(directory: str, source: base.Source, options: WriteOptions, tasks: Sequence[_Task],
              shards: Mapping[str, manifest_lib.Shard], fp: str) -> manifest_lib.Manifest:
  splits = collections.defaultdict(list)
  for t in tasks:
    splits[t.split].append(shards[t.name])
  description = dict(source.description)
  description.update(num_shards=options.num_shards, shuffle_seed=options.shuffle_seed)
  return manifest_lib.Manifest(
      directory=directory, spec=dataclasses.replace(source.spec, assets_dir=directory),
      splits={k: tuple(v) for k, v in splits.items()},
      compression=options.compression, source=description, fingerprint=fp,
      assets={role: name for role, (name, _) in source.assets.items()})


def _write_shards(local: _LocalDir, source: base.Source, options: WriteOptions,
                  tasks: Sequence[_Task], fp: str, done: Mapping[str, manifest_lib.Shard],
                  on_done: Callable[[_Task, manifest_lib.Shard], None],
                  where: str) -> Dict[str, manifest_lib.Shard]:
  """Writes the tasks not in `done` into `local`; returns every task's Shard."""
  todo = [t for t in tasks if t.name not in done]
  total = sum(len(t.records) for t in tasks)
  if done:
    logging.info("%s: %d of %d shards already complete; writing the other %d", where, len(done),
                 len(tasks), len(todo))
  out = dict(done)
  if not todo:
    return out
  workers = min(options.workers or _available_cpus(), len(todo))
  progress = progress_lib.Progress(sum(len(t.records) for t in todo),
                                   label=f"writing {where}", interval_s=options.progress_interval_s)
  job = _Job(source=source, tasks=todo, compression=options.compression,
             directory=local.directory, state_dir=local.state_dir, fingerprint=fp)
  out.update(_run_workers(job, workers, progress, on_done))
  progress.finish()
  logging.info("%s: %d examples in %d shards", where, total, len(tasks))
  return out


def _write_local(output_dir: str, source: base.Source, options: WriteOptions,
                 tasks: Sequence[_Task], fp: str) -> manifest_lib.Manifest:
  local = _LocalDir(output_dir)
  local.acquire()
  finished = False
  try:
    try:
      complete, candidates = local.existing(fp, tasks)
    except DifferentDatasetError:
      finished = local.created_state  # leave another dataset's state exactly as it was
      raise
    if complete is not None:
      logging.info("%s already holds this dataset (fingerprint %s); nothing to do", output_dir,
                   fp[:12])
      finished = True
      return complete
    done = local.complete_shards(tasks, fp, candidates)
    shards = _write_shards(local, source, options, tasks, fp, done, lambda t, s: None, output_dir)
    for name, data in source.assets.values():
      files_lib.write_atomically(os.path.join(output_dir, name), data)
    m = _manifest(output_dir, source, options, tasks, shards, fp)
    manifest_lib.write(m)
    finished = True
    return m
  except BadRecordError:
    local.remove_dataset(tasks)
    finished = True  # nothing of this dataset remains: drop its state too
    raise
  except OSError as e:  # disk full, quota, permissions: finished shards stay for a rerun
    raise WriterError(_os_error_message(output_dir, e)) from None
  finally:
    if not finished:
      local.remove_temporaries()
    local.release(remove_state=finished)


def _os_error_message(where: str, e: OSError) -> str:
  path = f" ({e.filename})" if e.filename else ""
  return (f"cannot write to {where}: {e.strerror or e}{path}; finished shards are kept, rerun "
          f"to complete")


def default_staging_dir(url: str) -> str:
  """A local directory per gs:// URL, stable across runs so a rerun finds its shards."""
  return os.path.join(tempfile.gettempdir(), "make_tfrecords-staging",
                      hashlib.sha256(url.encode()).hexdigest()[:16])


class _Uploader:
  """Uploads finished shards from staging on a few threads; the local copy goes once uploaded."""

  def __init__(self, folder: gcs.Folder, fp: str):
    self._folder = folder
    self._fp = fp
    self._pool = None
    self._futures = []
    self.uploaded = {}

  def submit(self, path: str, shard: manifest_lib.Shard) -> None:
    if self._pool is None:
      self._pool = futures.ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="upload")
    self._futures.append(self._pool.submit(self._upload, path, shard))

  def _upload(self, path: str, shard: manifest_lib.Shard) -> None:
    self._folder.upload_file(path, shard.name, metadata={
        "fingerprint": self._fp, "count": str(shard.count), "bytes": str(shard.bytes),
        "sha256": shard.sha256})
    self.uploaded[shard.name] = shard
    os.remove(path)

  def wait(self) -> None:
    """Raises the first upload's error, after letting the others finish."""
    try:
      for f in self._futures:
        f.result()
    finally:
      self.close()

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None


def _write_gcs(url: str, source: base.Source, options: WriteOptions, tasks: Sequence[_Task],
               fp: str, folder: Optional[gcs.Folder]) -> manifest_lib.Manifest:
  folder = folder or gcs.Folder(url, retry=options.gcs_retry)
  url = folder.url
  objects = folder.list()
  same_manifest = False
  if manifest_lib.FILENAME in objects:
    text = folder.read_text(manifest_lib.FILENAME) or ""
    m = existing_dataset(lambda: manifest_lib.parse(text, url), url, fp)
    complete = all(s.name in objects and objects[s.name].size == s.bytes
                   for split in m.splits.values() for s in split)
    if complete and {s.name for split in m.splits.values() for s in split} == {t.name for t in tasks}:
      logging.info("%s already holds this dataset (fingerprint %s); nothing to do", url, fp[:12])
      return m
    same_manifest = True
  strays = sorted(n for n, o in objects.items()
                  if _SHARD_RE.match(n) and o.metadata.get("fingerprint") != fp)
  if strays and not same_manifest:
    raise DifferentDatasetError(f"{url} holds TFRecord shards of a different dataset "
                                f"({strays[0]}, ...); choose another --output_dir or delete them")
  names = {t.name: t for t in tasks}
  remote = {}
  for n, o in objects.items():
    md = o.metadata
    if n in names and md.get("fingerprint") == fp and str(o.size) == md.get("bytes"):
      remote[n] = manifest_lib.Shard(name=n, count=int(md["count"]), bytes=o.size,
                                     sha256=md["sha256"])
  if remote:
    logging.info("%s: %d of %d shards already uploaded", url, len(remote), len(tasks))

  local = _LocalDir(options.staging_dir or default_staging_dir(url), private=True)
  local.acquire()
  uploader = _Uploader(folder, fp)
  finished = False
  try:
    local.existing(fp, tasks)
    pending = [t for t in tasks if t.name not in remote]
    staged = local.complete_shards(pending, fp, {})
    for name, shard in staged.items():
      uploader.submit(os.path.join(local.directory, name), shard)
    _write_shards(local, source, options, pending, fp, staged,
                  lambda t, s: uploader.submit(os.path.join(local.directory, t.name), s),
                  f"{url} (staged in {local.directory})")
    uploader.wait()
    shards = {**remote, **uploader.uploaded}
    for name, data in source.assets.values():
      folder.upload_bytes(data, name, content_type="text/plain")
    m = _manifest(url, source, options, tasks, shards, fp)
    folder.upload_bytes(m.to_json().encode(), manifest_lib.FILENAME,
                        content_type="application/json")
    finished = True
    return m
  except BadRecordError:
    uploader.close()
    for t in tasks:
      if t.name in remote or t.name in uploader.uploaded:
        folder.delete(t.name)
    finished = True
    raise
  except OSError as e:
    raise WriterError(_os_error_message(f"staging dir {local.directory}", e)) from None
  finally:
    uploader.close()
    if not finished:
      local.remove_temporaries()
    if finished:  # only what this writer put there: --staging_dir may hold other files
      local.remove_dataset(tasks)
    local.release(remove_state=finished)


def write_dataset(output_dir: str, spec: fs.FeatureSpec,
                  examples: Iterable[Tuple[str, Mapping[str, Any], int]],
                  num_shards: int, source: Mapping[str, Any], compression: str = "",
                  assets: Optional[Mapping[str, Tuple[str, bytes]]] = None,
                  **options: Any) -> manifest_lib.Manifest:
  """Writes (split, values, label) examples held in memory; see `write`.

  Args:
    output_dir: local path or gs://bucket/prefix.
    spec: the feature spec the values follow.
    examples: (split, feature name -> array, label) triples.
    num_shards: shards per split.
    source: JSON-able description stored in the manifest (e.g. {"format": "digits"}).
    compression: "" or "GZIP".
    assets: role -> (file name, bytes) written beside the shards (e.g. "vocab/<column>" ->
      the vocabulary a TABLE column's `vocabulary` names).
    **options: further WriteOptions fields (workers, shuffle_seed, ...).

  Returns:
    The manifest written to `output_dir`.

  Raises:
    WriterError: num_shards out of range, no examples, or see `write`.
  """
  by_split = collections.defaultdict(list)
  digest = hashlib.sha256()
  as_label = float if spec.label_kind == fs.REGRESSION else int
  for split, values, label in examples:
    label = as_label(label)
    by_split[split].append((values, label))
    for name in sorted(values):
      value = values[name]
      if isinstance(value, (str, bytes, list, tuple)) or value is None:
        digest.update(f"{split}\0{name}\0{value!r}".encode())  # table values (strings, lists)
        continue
      arr = np.ascontiguousarray(value)
      digest.update(f"{split}\0{name}\0{arr.dtype.str}{arr.shape}".encode())
      digest.update(arr.tobytes())
    digest.update(f"\0{label!r}\n".encode() if isinstance(label, float)
                  else f"\0{label}\n".encode())
  for role, (name, data) in sorted((assets or {}).items()):
    digest.update(f"\0asset {role} {name}\0".encode() + data)
  src = base.ListSource(spec, by_split, description=dict(source),
                        identity={"source": dict(source), "content_sha256": digest.hexdigest()},
                        assets=assets)
  return write(output_dir, src, WriteOptions(num_shards=num_shards, compression=compression,
                                             **options))
