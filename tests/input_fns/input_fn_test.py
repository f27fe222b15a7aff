"""The input_fn builder: exact read-back, seeded shuffling, static shapes, caching, mixtures,
per-worker sharding and shard verification, all over datasets written by the real writer."""

import collections
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from input_fns import mixture
from input_fns import writer

_IMAGE = fs.image_spec(4, 3, 1, [str(i) for i in range(5)])
_VECTOR = fs.FeatureSpec(features=(fs.Feature("x", "float32", (3,), "float_list"),),
                         input_key="x", kind=fs.VECTOR, label_names=("a", "b", "c"),
                         value_range=(0, 100))
_TOKENS = fs.FeatureSpec(features=(fs.Feature("tokens", "int64", (5,), "int64_list"),),
                         input_key="tokens", kind=fs.TOKENS, label_names=("a", "b"),
                         vocab_size=1000)
# One example is ~12 bytes + 64 of overhead per _chunk_records: chunks of 3 records, so every
# shard has several chunks and most have a partial last one.
_SMALL_CHUNKS = 3 * (12 + 64)


def _values(spec, i):
  """Example i's values; distinct for every i so examples can be told apart."""
  f = spec.input_feature
  if spec.kind == fs.IMAGE:
    v = np.zeros(f.shape, np.uint8)
    v.flat[:2] = divmod(i, 256)
    v.flat[2:] = (np.arange(f.size - 2) * 7 + i) % 256
    return v
  if spec.kind == fs.VECTOR:
    return np.array([i, i / 2, 100 - i % 100], np.float32)
  return np.arange(i, i + f.size, dtype=np.int64) % 1000


def _read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def _key(spec, value):
  return np.asarray(value).astype(spec.input_feature.dtype).tobytes()


class InputFnTestBase(tf.test.TestCase, parameterized.TestCase):

  def write(self, spec=_IMAGE, n=50, num_shards=3, compression="", split="eval", labels=None):
    """Writes n distinct examples; returns (manifest, {key: label})."""
    d = self.create_tempdir().full_path
    labels = labels if labels is not None else [i % spec.num_classes for i in range(n)]
    examples = [(split, {spec.input_key: _values(spec, i)}, labels[i]) for i in range(n)]
    m = writer.write_dataset(d, spec, examples, num_shards=num_shards,
                             source={"format": "test"}, compression=compression)
    expected = {_key(spec, v[spec.input_key]): label for _, v, label in examples}
    return manifest_lib.read(d), expected

  def read_all(self, input_fn, spec, **kwargs):
    """Every (key, label) the input_fn yields, in order (a finite, evaluation input_fn)."""
    out = []
    for features, labels in input_fn(**kwargs):
      for value, label in zip(features[spec.input_key].numpy(), labels.numpy()):
        out.append((_key(spec, value), int(label)))
    return out

  def take(self, input_fn, n_batches, key="image"):
    """The first n_batches of a training input_fn as arrays."""
    xs, ys = [], []
    for features, labels in input_fn().take(n_batches):
      xs.append(features[key].numpy())
      ys.append(labels.numpy())
    return np.concatenate(xs), np.concatenate(ys)


class ReadBackTest(InputFnTestBase):

  @parameterized.named_parameters(
      ("image_fixed_frames", _IMAGE, "", True),
      ("image_tfrecord_reader", _IMAGE, "", False),
      ("image_gzip", _IMAGE, "GZIP", True),
      ("vector", _VECTOR, "", True),
      ("tokens", _TOKENS, "", True),
  )
  def test_eval_reads_every_example_exactly_once(self, spec, compression, verify):
    m, expected = self.write(spec, n=50, num_shards=3, compression=compression)
    cfg = input_fn_lib.InputConfig(batch_size=8, preprocessing=(), read_chunk_bytes=_SMALL_CHUNKS,
                              verify=verify)
    got = self.read_all(input_fn_lib.make_input_fn(m, "eval", cfg, training=False), spec)
    self.assertLen(got, m.count("eval"))
    self.assertEqual(collections.Counter(k for k, _ in got), collections.Counter(list(expected)))
    self.assertEqual(dict(got), expected)

  def test_no_pipeline_runs_the_autotune_optimizer(self):
    # Closing a session over an autotuned pipeline can wait for the optimizer's next wake-up
    # (up to a minute): evaluations close one per checkpoint, training one at the end.
    m, _ = self.write(n=20)
    cfg = input_fn_lib.InputConfig(batch_size=4)
    with tf.Graph().as_default():
      evaluation = input_fn_lib.make_input_fn(m, "eval", cfg, training=False)()
      training = input_fn_lib.make_input_fn(m, "eval", cfg, training=True)()
      self.assertIs(evaluation.options().autotune.enabled, False)
      self.assertIs(training.options().autotune.enabled, False)

  def test_eval_order_is_deterministic(self):
    m, _ = self.write(n=40)
    cfg = input_fn_lib.InputConfig(batch_size=7, read_chunk_bytes=_SMALL_CHUNKS)
    fn = input_fn_lib.make_input_fn(m, "eval", cfg, training=False)
    self.assertEqual(self.read_all(fn, _IMAGE), self.read_all(fn, _IMAGE))

  def test_eval_batches_and_drop_remainder(self):
    m, _ = self.write(n=50)
    ragged = input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(batch_size=8), False)()
    self.assertEqual(ragged.element_spec[0]["image"].shape.as_list(), [None, 4, 3, 1])
    self.assertEqual([len(y) for _, y in ragged], [8] * 6 + [2])
    fixed = input_fn_lib.make_input_fn(
        m, "eval", input_fn_lib.InputConfig(batch_size=8, drop_remainder=True), False)()
    self.assertEqual(fixed.element_spec[0]["image"].shape.as_list(), [8, 4, 3, 1])
    self.assertEqual(fixed.element_spec[1].shape.as_list(), [8])
    self.assertEqual([len(y) for _, y in fixed], [8] * 6)

  def test_preprocessing_is_applied_and_augmentation_off_in_eval(self):
    m, expected = self.write(n=20)
    fn = lambda chain: input_fn_lib.make_input_fn(
        m, "eval", input_fn_lib.InputConfig(batch_size=20, preprocessing=chain), False)()
    (plain, _), = list(fn(()))
    (scaled, _), = list(fn("scale"))
    (augmented, _), = list(fn("random_crop,random_flip,scale"))
    self.assertEqual(scaled["image"].dtype, tf.float32)
    self.assertAllClose(scaled["image"], tf.cast(plain["image"], tf.float32) / 255.0)
    self.assertAllEqual(augmented["image"], scaled["image"])

  def test_graph_mode_as_the_estimator_calls_it(self):
    m, _ = self.write(n=20)
    fn = input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(batch_size=5), False)
    with tf.Graph().as_default():
      features, labels = tf.compat.v1.data.make_one_shot_iterator(fn()).get_next()
      with tf.compat.v1.Session() as sess:
        x, y = sess.run([features["image"], labels])
    self.assertEqual(x.shape, (5, 4, 3, 1))
    self.assertEqual(y.shape, (5,))


class TrainingTest(InputFnTestBase):

  def _train_fn(self, m, **kwargs):
    cfg = dict(batch_size=10, preprocessing=(), shuffle_buffer=30, read_chunk_bytes=_SMALL_CHUNKS)
    cfg.update(kwargs)
    return input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(**cfg), training=True)

  def test_training_shuffles_reproducibly_with_a_seed(self):
    m, _ = self.write(n=60)
    a = self.take(self._train_fn(m, seed=3), 12)
    b = self.take(self._train_fn(m, seed=3), 12)
    c = self.take(self._train_fn(m, seed=4), 12)
    self.assertAllEqual(a[0], b[0])
    self.assertAllEqual(a[1], b[1])
    self.assertNotAllEqual(a[0], c[0])
    eval_order = [k for k, _ in self.read_all(
        input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(batch_size=10, preprocessing=(),
                                                             read_chunk_bytes=_SMALL_CHUNKS), False),
        _IMAGE)]
    train_order = [_key(_IMAGE, x) for x in a[0][:60]]
    self.assertNotEqual(train_order, eval_order)

  def test_training_repeats_and_sees_every_example(self):
    m, expected = self.write(n=60)
    x, y = self.take(self._train_fn(m, seed=1), 30)  # 300 examples: 5 epochs
    counts = collections.Counter(_key(_IMAGE, v) for v in x)
    self.assertEqual(set(counts), set(expected))
    self.assertEqual(sum(counts.values()), 300)
    self.assertTrue(all(expected[_key(_IMAGE, v)] == label for v, label in zip(x, y)))

  def test_training_batches_have_static_shape(self):
    m, _ = self.write(n=25)
    ds = self._train_fn(m)()
    self.assertEqual(ds.element_spec[0]["image"].shape.as_list(), [10, 4, 3, 1])
    self.assertEqual(ds.element_spec[1].shape.as_list(), [10])

  def test_training_augments(self):
    m, expected = self.write(n=30)
    x, _ = self.take(self._train_fn(m, seed=2, preprocessing="random_flip"), 6)
    self.assertTrue(any(_key(_IMAGE, v) not in expected for v in x))

  def test_no_shuffle_buffer_keeps_chunks_in_order(self):
    m, _ = self.write(n=30, num_shards=1)
    x, _ = self.take(self._train_fn(m, seed=2, shuffle_buffer=0), 3)
    got = [_key(_IMAGE, v) for v in x]
    self.assertEqual(got, [_key(_IMAGE, _values(_IMAGE, i)) for i in range(30)])

  def test_input_context_sets_the_per_replica_batch(self):
    m, _ = self.write(n=30)
    ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                     num_replicas_in_sync=2)
    ds = self._train_fn(m)(input_context=ctx)
    self.assertEqual(ds.element_spec[1].shape.as_list(), [5])


class CacheTest(InputFnTestBase):

  def test_file_cache_serves_later_reads_without_the_shards(self):
    m, expected = self.write(n=30)
    cache_dir = self.create_tempdir().full_path
    cfg = input_fn_lib.InputConfig(batch_size=7, preprocessing="scale", cache=True,
                              cache_dir=cache_dir, read_chunk_bytes=_SMALL_CHUNKS)
    fn = input_fn_lib.make_input_fn(m, "eval", cfg, training=False)
    first = [(f["image"].numpy(), y.numpy()) for f, y in fn()]
    self.assertNotEmpty(os.listdir(cache_dir))
    for path in m.files("eval"):
      with open(path, "wb") as f:
        f.write(b"")  # from now on only the cache holds the examples
    second = [(f["image"].numpy(), y.numpy()) for f, y in fn()]
    self.assertEqual(len(first), len(second))
    for (x1, y1), (x2, y2) in zip(first, second):
      self.assertAllEqual(x1, x2)
      self.assertAllEqual(y1, y2)
    self.assertEqual(sum(len(y) for _, y in second), len(expected))

  def test_training_cache_keeps_augmentation_random_across_epochs(self):
    m, expected = self.write(n=20, num_shards=2)
    cfg = input_fn_lib.InputConfig(batch_size=10, preprocessing="scale,random_flip", cache=True,
                              shuffle_buffer=20, seed=5, read_chunk_bytes=_SMALL_CHUNKS)
    x, y = self.take(input_fn_lib.make_input_fn(m, "eval", cfg, training=True), 40)
    self.assertEqual(x.dtype, np.float32)
    # 40 epochs of 20 examples: each example appears flipped and unflipped.
    by_key = collections.defaultdict(set)
    raw = {_key(_IMAGE, _values(_IMAGE, i)): _values(_IMAGE, i) for i in range(20)}
    for v in x:
      pixels = np.round(v * 255).astype(np.uint8)
      k = _key(_IMAGE, pixels)
      flipped = k not in raw
      if flipped:
        k = _key(_IMAGE, pixels[:, ::-1])
      by_key[k].add(flipped)
    self.assertEqual(set(by_key), set(expected))
    self.assertTrue(all(v == {True, False} for v in by_key.values()))
    self.assertLen(y, 400)

  def test_cache_files_differ_by_chain(self):
    m, _ = self.write(n=10)
    cache_dir = self.create_tempdir().full_path
    for chain in ("scale", "inception"):
      cfg = input_fn_lib.InputConfig(batch_size=5, preprocessing=chain, cache=True, cache_dir=cache_dir)
      list(input_fn_lib.make_input_fn(m, "eval", cfg, training=False)())
    self.assertLen({f.split(".")[0] for f in os.listdir(cache_dir)}, 2)


class ShardingTest(InputFnTestBase):

  @parameterized.named_parameters(
      ("by_files", 5, 2),
      ("by_records", 2, 3),
      ("one_file_each", 3, 3),
  )
  def test_workers_read_disjoint_parts_that_cover_everything(self, num_shards, workers):
    m, expected = self.write(n=41, num_shards=num_shards)
    parts = []
    for index in range(workers):
      cfg = input_fn_lib.InputConfig(batch_size=4, preprocessing=(), num_workers=workers,
                                worker_index=index, read_chunk_bytes=_SMALL_CHUNKS)
      parts.append([k for k, _ in self.read_all(input_fn_lib.make_input_fn(m, "eval", cfg, False),
                                                _IMAGE)])
    for i in range(workers):
      self.assertNotEmpty(parts[i])
      for j in range(i + 1, workers):
        self.assertEmpty(set(parts[i]) & set(parts[j]))
    self.assertEqual(sorted(k for p in parts for k in p), sorted(expected))

  def test_worker_shard_mode(self):
    files = [f"f{i}" for i in range(4)]
    self.assertEqual(input_fn_lib.worker_shard(files, 2, 1), input_fn_lib.WorkerShard(("f1", "f3"), None))
    self.assertEqual(input_fn_lib.worker_shard(files, 5, 4), input_fn_lib.WorkerShard(tuple(files), (5, 4)))

  def test_input_context_shards_like_workers(self):
    m, expected = self.write(n=30, num_shards=2)
    cfg = input_fn_lib.InputConfig(batch_size=6, preprocessing=())
    fn = input_fn_lib.make_input_fn(m, "eval", cfg, False)
    parts = [set(k for k, _ in self.read_all(fn, _IMAGE, input_context=tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2))) for i in range(2)]
    self.assertEmpty(parts[0] & parts[1])
    self.assertEqual(parts[0] | parts[1], set(expected))

  def test_both_sharding_sources_is_an_error(self):
    m, _ = self.write(n=10)
    fn = input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(num_workers=2), False)
    with self.assertRaisesRegex(input_fn_lib.InputError, "conflicts with the distribution strategy"):
      fn(input_context=tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0))

  @parameterized.named_parameters(
      ("batch", dict(batch_size=0), "batch_size must be >= 1"),
      ("worker", dict(num_workers=2, worker_index=2), r"worker_index must be in \[0, 2\)"),
      ("preset", dict(preprocessing="scale,blur"), "unknown preprocessing preset 'blur'"),
  )
  def test_bad_config(self, kwargs, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      input_fn_lib.InputConfig(**kwargs)


class MixtureTest(InputFnTestBase):

  def test_proportions_follow_weights(self):
    a, _ = self.write(n=40, labels=[0] * 40, split="train")
    b, _ = self.write(n=40, labels=[1] * 40, split="train")
    cfg = input_fn_lib.InputConfig(batch_size=50, preprocessing=(), seed=7, shuffle_buffer=100,
                              read_chunk_bytes=_SMALL_CHUNKS)
    fn = input_fn_lib.make_mixture_input_fn([(a, 0.7), (b, 0.3)], "train", cfg)
    _, y = self.take(fn, 60)
    self.assertAllClose(np.mean(y == 0), 0.7, atol=0.04)
    _, y_again = self.take(fn, 60)
    self.assertAllEqual(y, y_again)
    # Equal weights from unnormalised input.
    _, y_equal = self.take(input_fn_lib.make_mixture_input_fn([(a, 2), (b, 2)], "train", cfg), 60)
    self.assertAllClose(np.mean(y_equal == 0), 0.5, atol=0.04)

  def test_refuses_incompatible_specs(self):
    a, _ = self.write(n=10)
    b, _ = self.write(_VECTOR, n=10)
    with self.assertRaises(mixture.MixtureError) as cm:
      input_fn_lib.make_mixture_input_fn([(a, 1), (b, 1)], "eval", input_fn_lib.InputConfig())
    self.assertIn(a.directory, str(cm.exception))
    self.assertIn(b.directory, str(cm.exception))

  def test_refuses_bad_weight(self):
    a, _ = self.write(n=10)
    with self.assertRaisesRegex(mixture.MixtureError, "must be a positive number"):
      input_fn_lib.make_mixture_input_fn([(a, 0.0)], "eval", input_fn_lib.InputConfig())

  def test_named_eval_input_fns(self):
    a, ea = self.write(n=10)
    b, eb = self.write(n=14)
    fns = input_fn_lib.make_eval_input_fns([("clean", a), ("noisy", b)], "eval",
                                      input_fn_lib.InputConfig(batch_size=4, preprocessing=()))
    self.assertEqual([name for name, _ in fns], ["clean", "noisy"])
    self.assertLen(self.read_all(fns[0][1], _IMAGE), len(ea))
    self.assertLen(self.read_all(fns[1][1], _IMAGE), len(eb))


class VerifyTest(InputFnTestBase):

  def _damage(self, path, how):
    data = bytearray(_read_bytes(path))
    if how == "truncated":
      data = data[:-5]
    else:
      data[len(data) // 2] ^= 0x10
    with open(path, "wb") as f:
      f.write(bytes(data))

  @parameterized.parameters("truncated", "bit_flipped")
  def test_bad_shard_is_caught_before_reading(self, how):
    m, _ = self.write(n=30)
    bad = m.files("eval")[1]
    self._damage(bad, how)
    with self.assertRaisesRegex(manifest_lib.ManifestError, bad) as cm:
      input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(), training=True)
    self.assertIsInstance(cm.exception, errors.UserInputError)

  def test_all_bad_shards_are_counted(self):
    m, _ = self.write(n=30)
    for path in m.files("eval"):
      self._damage(path, "truncated")
    with self.assertRaisesRegex(manifest_lib.ManifestError, r"and 2 more bad shard"):
      input_fn_lib.verify(m, "eval")

  def test_cache_skips_unchanged_shards_and_rechecks_changed_ones(self):
    m, _ = self.write(n=30)
    cache = os.path.join(self.create_tempdir().full_path, "sub", "verified.json")
    names = [s.name for s in m.shards("eval")]
    self.assertEqual(input_fn_lib.verify(m, "eval", cache_path=cache).hashed, tuple(names))
    again = input_fn_lib.verify(m, "eval", cache_path=cache)
    self.assertEqual((again.hashed, again.cached), ((), tuple(names)))
    bad = m.files("eval")[2]
    self._damage(bad, "bit_flipped")
    st = os.stat(bad)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a write always moves mtime
    with self.assertRaisesRegex(manifest_lib.ManifestError, bad):
      input_fn_lib.verify(m, "eval", cache_path=cache)

  def test_verify_only_this_workers_shards(self):
    m, _ = self.write(n=30, num_shards=4)
    self._damage(m.files("eval")[1], "truncated")
    # Worker 0 of 2 reads shards 0 and 2, so it starts; worker 1 is refused.
    input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(num_workers=2, worker_index=0), True)
    with self.assertRaisesRegex(manifest_lib.ManifestError, m.files("eval")[1]):
      input_fn_lib.make_input_fn(m, "eval", input_fn_lib.InputConfig(num_workers=2, worker_index=1), True)

  def test_unknown_split(self):
    m, _ = self.write(n=10)
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no split 'train'"):
      input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(), True)


if __name__ == "__main__":
  tf.test.main()
