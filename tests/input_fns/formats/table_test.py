"""Typed tables (csv, tsv, parquet, jsonl): written with the real writer, read back exactly through
the spec's parser; inferred and overridden types, labels, weights, splits, the analyze phase's
stats and vocabularies, --describe schemas, the streamed spill, and every error named to the
file, line and column."""

import collections
import dataclasses
import gc
import json
import os
import tempfile
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.ipc  # pylint: disable=unused-import
import pyarrow.parquet as pq
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import writer
from input_fns.formats import base
from input_fns.formats import registry
from input_fns.formats import table
from tests.testing import data as test_data

_WORKCLASS = ["Private", "Self-emp", "State-gov", "Federal-gov"]
_MARKERS = ["", "NA", "?"]
_ADULT = dict(label_column="income", missing=("", "NA", "?"), label_map=("<=50K=0", ">50K=1"),
              weight_column="fnlwgt")


def _adult_rows(n, seed=0):
  """Adult-census-like rows: None is a missing value."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    rows.append({
        "age": int(rng.integers(17, 90)) if i % 7 else None,
        "workclass": _WORKCLASS[min(int(rng.exponential(1.0)), 3)] if i % 9 else None,
        "hours": round(float(rng.uniform(1, 99)), 2) if i % 5 else None,
        "fnlwgt": 1000 + i,
        "income": "<=50K" if rng.random() < 0.7 else ">50K",
    })
  return rows


def _adult_csv(rows, header=True):
  """CSV text with whitespace around values and the three missing markers in turn."""
  lines = ["age, workclass ,hours,fnlwgt,income"] if header else []
  for i, r in enumerate(rows):
    marker = _MARKERS[i % 3]
    cells = [marker if r["age"] is None else str(r["age"]),
             marker if r["workclass"] is None else f"  {r['workclass']} ",
             marker if r["hours"] is None else f"{r['hours']:.2f}", str(r["fnlwgt"]),
             f" {r['income']}"]
    lines.append(",".join(cells))
  return "\n".join(lines) + "\n"


def _read(m, split):
  """(features, labels) of a split as numpy, in shard order, weights under fs.WEIGHT_KEY."""
  ds = tf.data.TFRecordDataset(m.files(split), compression_type=m.compression or None)
  parts, labels = collections.defaultdict(list), []
  for batch in ds.batch(1 << 20):
    features, batch_labels = m.spec.parse_batch(batch)
    for k, v in features.items():
      parts[k].append(v.numpy())
    labels.append(batch_labels.numpy())
  return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(labels)


def _by_weight(m):
  """fnlwgt -> (split, features of that row, label)."""
  out = {}
  for split in m.splits:
    features, labels = _read(m, split)
    for i, w in enumerate(features[fs.WEIGHT_KEY]):
      out[int(w)] = (split, {k: v[i] for k, v in features.items()}, labels[i])
  return out


class TableTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # Spill directories go here, so a test sees every one this process leaves behind.
    self.tmp = self.create_tempdir("tmp").full_path
    patcher = mock.patch.object(tempfile, "tempdir", self.tmp)
    patcher.start()
    self.addCleanup(patcher.stop)
    self.dir = self.create_tempdir("in").full_path

  def _file(self, name, text):
    path = os.path.join(self.dir, name)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    return path

  def _convert(self, fmt, num_shards=1, workers=1, **opts):
    """Opens, writes and closes a source; returns (manifest, source)."""
    out = os.path.join(self.create_tempdir().full_path, "ds")
    src = registry.open_source(fmt, base.SourceOptions(**opts))
    with src:
      m = writer.write(out, src, writer.WriteOptions(num_shards=num_shards, workers=workers))
    self.assertEqual(os.listdir(self.tmp), [], "a spill directory was left behind")
    return manifest_lib.read(out), src

  def test_adult_census_csv_round_trips_exactly(self):
    rows = _adult_rows(200)
    path = self._file("adult.csv", _adult_csv(rows))
    m, src = self._convert("csv", num_shards=2, input=path, eval_fraction=0.25, **_ADULT)
    spec = m.spec
    self.assertEqual(spec.kind, fs.TABLE)
    self.assertEqual([(f.name, f.role, f.dtype) for f in spec.features],
                     [("age", fs.NUMERIC, "float32"), ("workclass", fs.CATEGORICAL, "string"),
                      ("hours", fs.NUMERIC, "float32")])
    self.assertEqual((spec.label_kind, spec.label_names, spec.weight_key),
                     (fs.BINARY, ("0", "1"), "fnlwgt"))
    self.assertEqual(spec.feature("workclass").vocabulary, "vocab.workclass.txt")
    self.assertEqual(m.assets, {"vocab/workclass": "vocab.workclass.txt"})
    self.assertEqual((m.count("train"), m.count("eval")), (150, 50))
    self.assertEqual(m.source["column_types"],
                     {"age": "numeric", "workclass": "categorical", "hours": "numeric"})
    self.assertCountEqual(os.listdir(m.directory), [
        "manifest.json", "vocab.workclass.txt", "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord", "eval-00000-of-00002.tfrecord",
        "eval-00001-of-00002.tfrecord"])

    got = _by_weight(m)
    self.assertEqual(sorted(got), [r["fnlwgt"] for r in rows])
    for r in rows:
      split, features, label = got[r["fnlwgt"]]
      if r["age"] is None:
        self.assertTrue(np.isnan(features["age"][0]))
      else:
        self.assertEqual(features["age"][0], np.float32(r["age"]))
      if r["hours"] is None:
        self.assertTrue(np.isnan(features["hours"][0]))
      else:
        self.assertEqual(features["hours"][0], np.float32(f"{r['hours']:.2f}"))
      self.assertEqual(features["workclass"][0], (r["workclass"] or "").encode())
      self.assertEqual(label, 0 if r["income"] == "<=50K" else 1)

    train = [r for r in rows if got[r["fnlwgt"]][0] == "train"]
    counts = collections.Counter(r["workclass"] for r in train if r["workclass"])
    vocab = sorted(counts, key=lambda v: (-counts[v], v))
    with open(os.path.join(m.directory, "vocab.workclass.txt"), encoding="utf-8") as f:
      self.assertEqual(f.read(), "".join(v + "\n" for v in vocab))
    ages = np.array([r["age"] for r in train if r["age"] is not None], np.float64)
    stats = spec.feature("age").stats
    self.assertEqual((stats["count"], stats["missing"]), (len(ages), len(train) - len(ages)))
    self.assertAlmostEqual(stats["mean"], ages.mean(), places=4)
    self.assertEqual((stats["min"], stats["max"], stats["is_integer"]),
                     (ages.min(), ages.max(), True))
    wc = spec.feature("workclass").stats
    self.assertEqual((wc["count"], wc["distinct"], wc["top"][0]),
                     (sum(counts.values()), len(counts), [vocab[0], counts[vocab[0]]]))
    self.assertIn("workclass      categorical", src.summary())
    self.assertIn("label income: binary, 2 classes", src.summary())

  def test_rerunning_the_same_conversion_is_a_no_op_and_other_options_are_refused(self):
    path = self._file("adult.csv", _adult_csv(_adult_rows(90)))
    out = os.path.join(self.create_tempdir().full_path, "ds")
    opts = base.SourceOptions(input=path, **_ADULT)
    with registry.open_source("csv", opts) as src:
      first = writer.write(out, src, writer.WriteOptions(num_shards=2, shuffle_seed=3))
    before = test_data.dir_snapshot(out)
    with registry.open_source("csv", opts) as src:
      self.assertEqual(writer.write(out, src, writer.WriteOptions(num_shards=2, shuffle_seed=3)),
                       first)
    self.assertEqual(test_data.dir_snapshot(out), before)
    other = dataclasses.replace(opts, vocab_min_count=5)
    with registry.open_source("csv", other) as src:
      with self.assertRaisesRegex(writer.DifferentDatasetError, "already holds a different"):
        writer.write(out, src, writer.WriteOptions(num_shards=2, shuffle_seed=3))
    self.assertEqual(test_data.dir_snapshot(out), before)

  @parameterized.parameters("parquet", "jsonl")
  def test_typed_files_give_the_csv_dataset(self, fmt):
    rows = _adult_rows(120, seed=3)
    csv_m, _ = self._convert("csv", input=self._file("adult.csv", _adult_csv(rows)),
                             eval_fraction=0.2, **_ADULT)
    typed = [dict(r, workclass=f" {r['workclass']} " if r["workclass"] else "?") for r in rows]
    if fmt == "parquet":
      path = os.path.join(self.dir, "adult.parquet")
      pq.write_table(pa.Table.from_pylist(typed), path, row_group_size=50)
    else:
      # Missing numbers as null or as an absent key (columns come in the order keys are first
      # seen, so the first object has them all); blank lines between objects are skipped.
      lines = [json.dumps({k: v for k, v in r.items() if v is not None or i % 2 == 0})
               for i, r in enumerate(typed)]
      path = self._file("adult.jsonl", "\n\n".join(lines) + "\n")
    m, _ = self._convert(fmt, input=path, eval_fraction=0.2, **_ADULT)
    self.assertEqual(m.spec, csv_m.spec)
    for a, b in zip(m.spec.features, csv_m.spec.features):
      self.assertEqual(a.stats, b.stats, a.name)
    for split in ("train", "eval"):
      (f1, l1), (f2, l2) = _read(m, split), _read(csv_m, split)
      self.assertAllEqual(l1, l2)
      for k in f2:
        self.assertAllEqual(f1[k], f2[k])
    with open(m.asset_path("vocab/workclass"), "rb") as a, open(
        csv_m.asset_path("vocab/workclass"), "rb") as b:
      self.assertEqual(a.read(), b.read())

  def test_tsv_has_no_quoting(self):
    path = self._file("reviews.tsv", "stars\tquote\tlabel\n5\tsays \"great\", twice\tpos\n"
                      "1\t\"awful\tneg\n3\tmeh\tpos\n")
    m, _ = self._convert("tsv", input=path, eval_fraction=0.0)
    features, labels = _read(m, "train")
    self.assertEqual(m.spec.label_names, ("neg", "pos"))
    self.assertAllEqual(features["stars"][:, 0], [5, 1, 3])
    self.assertAllEqual(features["quote"][:, 0], [b'says "great", twice', b'"awful', b"meh"])
    self.assertAllEqual(labels, [1, 0, 1])

  def test_headerless_file_with_column_names_equals_the_file_with_a_header(self):
    rows = _adult_rows(60)
    names = ("age", "workclass", "hours", "fnlwgt", "income")
    with_header, _ = self._convert("csv", input=self._file("a.csv", _adult_csv(rows)),
                                   eval_fraction=0.0, **_ADULT)
    without, _ = self._convert("csv", input=self._file("b.csv", _adult_csv(rows, header=False)),
                               column_names=names, eval_fraction=0.0, **_ADULT)
    self.assertEqual(without.spec, with_header.spec)
    self.assertAllEqual(_read(without, "train")[0]["age"], _read(with_header, "train")[0]["age"])

  def test_semicolon_delimiter(self):
    path = self._file("d.csv", "x;y;label\n1,5;a;p\n2;b;q\n")
    m, _ = self._convert("csv", input=path, delimiter=";", eval_fraction=0.0)
    features, _ = _read(m, "train")
    self.assertEqual(m.spec.feature("x").role, fs.CATEGORICAL)  # "1,5" is not a number
    self.assertAllEqual(features["x"][:, 0], [b"1,5", b"2"])

  def test_column_overrides_skip_hash_multi_categorical_and_text(self):
    text = "row_id,city,tags,rating,title,label\n"
    for i in range(30):
      text += f"{i},c{i % 6},{'a|b' if i % 3 else ' c | | a '},{1 + i % 4},t{i},{'yn'[i % 2]}\n"
    path = self._file("o.csv", text)
    m, _ = self._convert("csv", input=path, eval_fraction=0.0, columns=(
        "row_id:skip", "city:hash=8", "tags:multi=|", "rating:categorical", "title:text"))
    spec = m.spec
    self.assertEqual([f.name for f in spec.features], ["city", "tags", "rating", "title"])
    self.assertEqual((spec.feature("city").hash_buckets, spec.feature("city").vocabulary), (8, ""))
    tags, rating = spec.feature("tags"), spec.feature("rating")
    self.assertEqual((tags.multivalent, tags.shape), (True, (2,)))  # the most values in a cell
    self.assertEqual((rating.dtype, rating.vocabulary), ("int64", "vocab.rating.txt"))
    self.assertEqual(spec.feature("title").role, fs.TEXT)
    self.assertEqual(sorted(m.assets), ["vocab/rating", "vocab/tags"])
    with open(m.asset_path("vocab/tags"), encoding="utf-8") as f:
      self.assertEqual(f.read(), "a\nb\nc\n")  # a: 30, b: 20, c: 10
    features, labels = _read(m, "train")
    self.assertAllEqual(features["tags"][:3], [[b"c", b"a"], [b"a", b"b"], [b"a", b"b"]])
    self.assertAllEqual(features["rating"][:5, 0], [1, 2, 3, 4, 1])
    self.assertAllEqual(features["city"][:2, 0], [b"c0", b"c1"])
    self.assertAllEqual(labels[:3], [1, 0, 1])

  def test_list_columns_are_multivalent_as_wide_as_their_widest_cell(self):
    path = os.path.join(self.dir, "l.parquet")
    pq.write_table(pa.table({
        "tags": [["a", "b"], [], None, ["c", " a ", "", "b"]],
        "codes": pa.array([[1, 2], [3], None, [4]], pa.list_(pa.int64())),
        "label": ["p", "q", "p", "q"]}), path)
    m, _ = self._convert("parquet", input=path, eval_fraction=0.0)
    tags, codes = m.spec.feature("tags"), m.spec.feature("codes")
    self.assertEqual((tags.multivalent, tags.dtype, tags.shape), (True, "string", (3,)))
    self.assertEqual((codes.multivalent, codes.dtype, codes.shape), (True, "int64", (2,)))
    features, _ = _read(m, "train")
    self.assertAllEqual(features["tags"], [[b"a", b"b", b""], [b"", b"", b""], [b"", b"", b""],
                                           [b"c", b"a", b"b"]])
    self.assertAllEqual(features["codes"], [[1, 2], [3, -1], [-1, -1], [4, -1]])
    with open(m.asset_path("vocab/codes"), encoding="utf-8") as f:
      self.assertEqual(f.read(), "1\n2\n3\n4\n")

  def test_vocabulary_keeps_the_top_k_values_seen_min_count_times(self):
    cells = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 1 + ["e"] * 3
    path = self._file("v.csv", "k,label\n" + "".join(f"{c},{i % 2}\n" for i, c in enumerate(cells)))
    top, _ = self._convert("csv", input=path, eval_fraction=0.0, vocab_top_k=3)
    common, _ = self._convert("csv", input=path, eval_fraction=0.0, vocab_min_count=3)
    for m, expected in ((top, "a\nb\nc\n"), (common, "a\nb\nc\ne\n")):
      with open(m.asset_path("vocab/k"), encoding="utf-8") as f:
        self.assertEqual(f.read(), expected)
    self.assertEqual(top.spec.feature("k").stats["distinct"], 5)

  def test_many_distinct_values_are_hashed_into_a_power_of_two(self):
    path = self._file("h.csv", "k,label\n" + "".join(f"v{i % 20},{i % 2}\n" for i in range(60)))
    m, _ = self._convert("csv", input=path, eval_fraction=0.0, hash_threshold=5)
    self.assertEqual(m.spec.feature("k").hash_buckets, 64)  # 2 * 20 -> 64
    self.assertEqual(m.assets, {})

  def test_inferred_types_bools_ids_text_and_integers(self):
    long = "a sentence that is surely longer than thirty-two characters"
    text = "flag,user_id,count,score,note,label\n"
    text += "".join(f"{'TRUE' if i % 2 else 'false'},{i},{i * 3},{i / 4},{long} {i},x{i % 3}\n"
                    for i in range(12))
    m, _ = self._convert("csv", input=self._file("i.csv", text), eval_fraction=0.0)
    kinds = {f.name: (f.role, f.dtype) for f in m.spec.features}
    self.assertEqual(kinds, {"flag": (fs.CATEGORICAL, "string"),
                             "user_id": (fs.CATEGORICAL, "int64"),
                             "count": (fs.NUMERIC, "float32"), "score": (fs.NUMERIC, "float32"),
                             "note": (fs.TEXT, "string")})
    self.assertEqual((m.spec.label_kind, m.spec.num_classes), (fs.MULTICLASS, 3))
    features, _ = _read(m, "train")
    self.assertAllEqual(features["flag"][:2, 0], [b"false", b"true"])
    self.assertEqual(m.spec.feature("count").stats["is_integer"], True)
    self.assertEqual(m.spec.feature("note").stats["min"], len(long) + 2)

  def test_eval_input_uses_the_train_files_types_and_labels(self):
    rows = _adult_rows(80)
    eval_rows = _adult_rows(20, seed=9)
    for i, r in enumerate(eval_rows):
      r["fnlwgt"] = 5000 + i
    m, _ = self._convert("csv", input=self._file("train.csv", _adult_csv(rows)),
                         eval_input=self._file("eval.csv", _adult_csv(eval_rows)), **_ADULT)
    self.assertEqual((m.count("train"), m.count("eval")), (80, 20))
    self.assertEqual(m.spec.feature("age").stats["count"],
                     sum(r["age"] is not None for r in rows))
    got = _by_weight(m)
    for r in eval_rows:
      split, features, label = got[r["fnlwgt"]]
      self.assertEqual(split, "eval")
      self.assertEqual(features["workclass"][0], (r["workclass"] or "").encode())
      self.assertEqual(label, int(r["income"] == ">50K"))

  def test_fractional_numeric_label_is_a_regression_target(self):
    rng = np.random.default_rng(0)
    prices = np.round(rng.uniform(0, 100, 40), 3)
    path = self._file("r.csv", "x,price\n" + "".join(f"{i},{p}\n" for i, p in enumerate(prices)))
    m, _ = self._convert("csv", input=path, label_column="price", eval_fraction=0.0)
    self.assertEqual((m.spec.label_kind, m.spec.label_names), (fs.REGRESSION, ()))
    self.assertAlmostEqual(m.spec.label_stats["mean"], prices.mean(), places=3)
    features, labels = _read(m, "train")
    self.assertEqual(labels.dtype, np.float32)
    self.assertAllEqual(labels, prices.astype(np.float32))
    self.assertAllEqual(features["x"][:, 0], np.arange(40))

  def test_two_integer_labels_are_binary_and_label_kind_forces_multiclass(self):
    path = self._file("b.csv", "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(10)))
    src = registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0))
    self.assertEqual((src.spec.label_kind, src.spec.label_names), (fs.BINARY, ("0", "1")))
    src.close()
    src = registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0,
                                                         label_kind="multiclass"))
    self.assertEqual(src.spec.label_kind, fs.MULTICLASS)
    src.close()

  def test_describe_writes_an_editable_schema_and_no_shards(self):
    rows = _adult_rows(50)
    path = self._file("adult.csv", _adult_csv(rows))
    schema = os.path.join(self.dir, "adult.schema.json")
    src = registry.open_source("csv", base.SourceOptions(input=path, schema=schema,
                                                         describe=True, **_ADULT))
    self.assertTrue(src.describe_only)
    self.assertEqual((src.splits, src.spill_dir), ({}, ""))
    self.assertIn(f"schema written to {schema}", src.summary())
    self.assertEqual(os.listdir(self.tmp), [])
    self.assertCountEqual(os.listdir(self.dir), ["adult.csv", "adult.schema.json"])
    with open(schema, encoding="utf-8") as f:
      doc = json.load(f)
    self.assertEqual((doc["label_column"], doc["label_kind"], doc["weight_column"]),
                     ("income", "binary", "fnlwgt"))
    self.assertEqual([(c["name"], c["type"]) for c in doc["columns"]],
                     [("age", "numeric"), ("workclass", "categorical"), ("hours", "numeric")])
    self.assertRegex(doc["columns"][0]["summary"], r"^age +numeric +int +missing")

    inferred, _ = self._convert("csv", input=path, eval_fraction=0.0, **_ADULT)
    same, _ = self._convert("csv", input=path, schema=schema, eval_fraction=0.0, **_ADULT)
    self.assertEqual(same.spec, inferred.spec)
    doc["columns"][0] = {"name": "age", "type": "categorical"}
    doc["columns"][2]["type"] = "skip"
    with open(schema, "w", encoding="utf-8") as f:
      json.dump(doc, f)
    edited, _ = self._convert("csv", input=path, schema=schema, eval_fraction=0.0, **_ADULT)
    self.assertEqual([(f.name, f.role, f.dtype) for f in edited.spec.features],
                     [("age", fs.CATEGORICAL, "int64"), ("workclass", fs.CATEGORICAL, "string")])
    self.assertIn("vocab/age", edited.assets)
    self.assertNotEqual(edited.fingerprint, same.fingerprint)

  def test_a_large_csv_streams_through_a_memory_mapped_spill(self):
    n = 200_000
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal(n), 4)
    k = rng.integers(0, 20, n)
    y = rng.integers(0, 3, n)
    path = os.path.join(self.dir, "big.csv")
    with open(path, "w", encoding="utf-8") as f:
      f.write("x,k,n,label\n")
      f.writelines(f"{a},k{b},{i},{c}\n" for i, (a, b, c) in enumerate(zip(x, k, y)))
    size = os.path.getsize(path)
    out = os.path.join(self.create_tempdir().full_path, "ds")
    with mock.patch.object(table, "_BLOCK_BYTES", 1 << 18):  # ~20 batches
      src = registry.open_source("csv", base.SourceOptions(input=path))
    spill = src.spill_dir
    self.assertEqual(os.path.dirname(spill), self.tmp)
    files = os.listdir(spill)
    self.assertEqual(files, ["input.arrow"])
    with pa.memory_map(os.path.join(spill, "input.arrow")) as mm:
      self.assertGreater(pa.ipc.open_file(mm).num_record_batches, 10)
    # The typed rows are mapped from the spill file, not held in Arrow's memory pool.
    self.assertLess(pa.total_allocated_bytes(), size // 10)
    m = writer.write(out, src, writer.WriteOptions(num_shards=3, workers=2, shuffle_seed=1))
    self.assertTrue(os.path.isdir(spill))  # still open
    src.close()
    self.assertFalse(os.path.exists(spill))
    self.assertEqual(os.listdir(self.tmp), [])
    self.assertCountEqual(os.listdir(out), ["manifest.json", "vocab.k.txt"] + [
        writer.shard_name(s, i, 3, "") for s in ("train", "eval") for i in range(3)])
    self.assertEqual((m.count("train"), m.count("eval")), (180_000, 20_000))
    counts = np.zeros(3, np.int64)
    total = 0.0
    rows = set()
    for split in ("train", "eval"):
      features, labels = _read(manifest_lib.read(out), split)
      counts += np.bincount(labels, minlength=3)
      total += float(features["x"].astype(np.float64).sum())
      rows.update(features["n"][:, 0].astype(np.int64).tolist())
    self.assertAllEqual(counts, np.bincount(y, minlength=3))
    self.assertAlmostEqual(total, float(x.astype(np.float32).astype(np.float64).sum()), places=2)
    self.assertEqual(len(rows), n)

  def test_a_garbage_collected_source_removes_its_spill(self):
    path = self._file("g.csv", "x,label\n1,a\n2,b\n")
    src = registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0))
    spill = src.spill_dir
    self.assertTrue(os.path.isdir(spill))
    del src
    gc.collect()
    self.assertFalse(os.path.exists(spill))

  def test_writer_encodes_rows_from_the_loaded_batch_and_names_a_bad_row(self):
    path = self._file("w.csv", "a,label\n1,x\n\n2,y\n3,x\n")

    def no_load(self, split, record):
      raise AssertionError("the writer should encode the rows of load_batch")

    with mock.patch.object(table.TableSource, "load", no_load):
      m, _ = self._convert("csv", input=path, eval_fraction=0.0)
      self.assertAllEqual(_read(m, "train")[0]["a"][:, 0], [1, 2, 3])
      real = table.TableSource.load_batch

      def bad_batch(self, split, records):
        values, labels = real(self, split, records)
        values["a"] = ["x" if r == 1 else v for r, v in zip(records, values["a"])]
        return values, labels

      src = registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0))
      out = os.path.join(self.create_tempdir().full_path, "ds")
      with src, mock.patch.object(table.TableSource, "load_batch", bad_batch):
        with self.assertRaisesRegex(writer.BadRecordError,
                                    r"w.csv:4: feature 'a': 'x' is not a number"):
          writer.write(out, src, writer.WriteOptions(workers=1))
    self.assertFalse(os.path.exists(os.path.join(out, "manifest.json")))

  def test_image_shape_refuses_table_options(self):
    path = self._file("p.csv", "label,a,b\n0,1,2\n1,3,4\n")
    with self.assertRaisesRegex(base.FormatError,
                                "--label_map does not apply to --format=csv with --image_shape"):
      registry.open_source("csv", base.SourceOptions(input=path, image_shape=(1, 2, 1),
                                                     label_map=("0=a",)))

  @parameterized.named_parameters(
      ("missing_file", "csv", {}, {"input": "{d}/nosuch.csv"},
       r"--input=.*nosuch.csv: no such file"),
      ("empty_file", "csv", {"data.csv": ""}, {},
       r"empty source: .*data.csv is empty \(expected a header row\)"),
      ("header_only", "csv", {"data.csv": "a,label\n"}, {},
       r"empty source: .*data.csv has a header but no data rows"),
      ("no_label_column", "csv", {"data.csv": "a,b\n1,2\n"}, {},
       r"data.csv: no label column 'label' \(columns: a, b\); name it with --label_column"),
      ("ragged_row", "csv", {"data.csv": "a,b,label\n1,2,x\n\n3,y\n"}, {},
       r"data.csv:4: 2 fields, but the header has 3 \(ragged row\)"),
      ("ragged_headerless", "csv", {"data.csv": "1,2,x\n3,y\n"},
       {"column_names": ("a", "b", "label")}, r"data.csv:2: 2 fields, but --column_names names 3"),
      ("not_a_number_by_columns", "csv", {"data.csv": "a,b,label\n1,2,x\n\n3, x4 ,y\n"},
       {"columns": ("b:numeric",)},
       r"data.csv:4: column 'b': 'x4' is not a number \(the column is numeric by --columns\)"),
      ("not_an_id_by_schema", "csv", {"data.csv": "a,label\n1,x\nq,y\n", "s.json":
                                      '{"columns": [{"name": "a", "type": "categorical", '
                                      '"dtype": "int64"}]}'}, {"schema": "{d}/s.json"},
       r"data.csv:3: column 'a': 'q' is not an integer id \(the column is categorical by "
       r"--schema=.*s.json\)"),
      ("not_finite", "csv", {"data.csv": "a,label\n1,x\ninf,y\n"}, {},
       r"data.csv:3: column 'a': 'inf' is not a finite number"),
      ("too_big_for_float32", "csv", {"data.csv": "a,label\n1,x\n1e300,y\n"}, {},
       r"data.csv:3: column 'a': '1e300' does not fit float32"),
      ("missing_label", "csv", {"data.csv": "a,label\n1,x\n2,?\n"}, {"missing": ("?",)},
       r"data.csv:3: column 'label': missing label"),
      ("label_not_in_map", "csv", {"data.csv": "a,label\n1,<=50K\n2,>60K\n"},
       {"label_map": ("<=50K=0", ">50K=1")},
       r"data.csv:3: column 'label': label '>60K' is not in --label_map \(it maps <=50K, >50K\)"),
      ("regression_label_not_a_number", "csv", {"data.csv": "a,label\n1,1.5\n2,abc\n"},
       {"label_kind": "regression"},
       r"data.csv:3: column 'label': label 'abc' is not a number"),
      ("binary_with_three_classes", "csv", {"data.csv": "a,label\n1,x\n2,y\n3,z\n"},
       {"label_kind": "binary"}, r"a binary label has 2 classes, column 'label' has 3"),
      ("unknown_column_in_columns", "csv", {"data.csv": "age,label\n1,x\n2,y\n"},
       {"columns": ("agee:numeric",)},
       r"--columns: no column 'agee' in .*data.csv; did you mean 'age'\?"),
      ("bad_columns_entry", "csv", {"data.csv": "age,label\n1,x\n"}, {"columns": ("age:nuemric",)},
       r"--columns: 'age:nuemric' is not name:TYPE"),
      ("unknown_column_in_schema", "csv", {"data.csv": "age,label\n1,x\n2,y\n", "s.json":
                                           '{"columns": [{"name": "agee", "type": "numeric"}]}'},
       {"schema": "{d}/s.json"}, r"--schema=.*s.json: no column 'agee' .*did you mean 'age'\?"),
      ("schema_misses_a_column", "csv", {"data.csv": "a,b,label\n1,2,x\n", "s.json":
                                         '{"columns": [{"name": "a", "type": "numeric"}]}'},
       {"schema": "{d}/s.json"}, r"s.json does not list column\(s\) 'b' of .*data.csv"),
      ("schema_not_json", "csv",
       {"data.csv": "a,label\n1,x\n", "s.json": '{"columns": [\n{"a" 1}]}'},
       {"schema": "{d}/s.json"}, r"--schema=.*s.json: not valid JSON \(line 2, column 6: "),
      ("schema_unknown_type", "csv", {"data.csv": "a,label\n1,x\n", "s.json":
                                      '{"columns": [{"name": "a", "type": "nuemric"}]}'},
       {"schema": "{d}/s.json"},
       r"columns\[0\] \('a'\): type 'nuemric' is not one of .*did you mean 'numeric'\?"),
      ("eval_label_unseen", "csv", {"data.csv": "a,label\n1,x\n2,y\n", "eval.csv":
                                    "a,label\n1,x\n2,z\n"}, {"eval_input": "{d}/eval.csv"},
       r"eval.csv:3: column 'label': label 'z' is not among the labels of --input"),
      ("eval_value_of_the_wrong_type", "csv", {"data.csv": "a,label\n1,x\n2,y\n", "eval.csv":
                                               "a,label\n1,x\nabc,y\n"},
       {"eval_input": "{d}/eval.csv"}, r"eval.csv:3: column 'a': 'abc' is not a number"),
      ("eval_misses_a_column", "csv", {"data.csv": "a,b,label\n1,2,x\n2,3,y\n", "eval.csv":
                                       "a,label\n1,x\n"}, {"eval_input": "{d}/eval.csv"},
       r"--eval_input=.*eval.csv: no column\(s\) 'b' of --input"),
      ("eval_fraction_with_eval_input", "csv", {"data.csv": "a,label\n1,x\n"},
       {"eval_input": "{d}/data.csv", "eval_fraction": 0.1},
       r"--eval_fraction does not apply with --eval_input"),
      ("missing_weight", "csv", {"data.csv": "a,w,label\n1,1,x\n2,,y\n"}, {"weight_column": "w"},
       r"data.csv:3: column 'w': missing weight"),
      ("reserved_column_name", "csv", {"data.csv": "a,weight,label\n1,1,x\n2,2,y\n"}, {},
       r"column 'weight' has a name the dataset keeps for the weight"),
      ("column_without_values", "csv", {"data.csv": "a,b,label\n1,NA,x\n2,,y\n"}, {},
       r"column 'b' has no value in the train split .*--columns=b:skip"),
      ("describe_without_schema", "csv", {"data.csv": "a,label\n1,x\n"}, {"describe": True},
       r"--describe needs --schema"),
      ("bad_delimiter", "csv", {"data.csv": "a,label\n1,x\n"}, {"delimiter": ";;"},
       r"--delimiter must be one character"),
      ("bad_label_map", "csv", {"data.csv": "a,label\n1,x\n"}, {"label_map": ("x",)},
       r"--label_map: 'x' is not raw=name"),
      ("not_utf8", "csv", {"data.csv": b"a,label\n1,x\n2,\xff\n"}, {},
       r"data.csv:3: not UTF-8 text"),
      ("jsonl_bad_line", "jsonl", {"data.jsonl": '{"a": 1, "label": "x"}\n\n{"a": 2,\n'}, {},
       r"data.jsonl:3: not valid JSON"),
      ("jsonl_type_change", "jsonl", {"data.jsonl": '{"a": 1, "label": "x"}\n'
                                                    '{"a": "b", "label": "y"}\n'}, {},
       r"data.jsonl:2: key 'a' changed from number to string"),
      ("jsonl_missing_label_line", "jsonl", {"data.jsonl": '{"a": 1, "label": "x"}\n\n'
                                                           '{"a": 2}\n'}, {},
       r"data.jsonl:3: column 'label': missing label"),
      ("parquet_value_row", "parquet", {"data.parquet": {"b": ["1", "x"], "label": ["p", "q"]}},
       {"columns": ("b:numeric",)}, r"data.parquet row 2: column 'b': 'x' is not a number"),
      ("parquet_unsupported_type", "parquet",
       {"data.parquet": {"t": pa.array([0, 1], pa.timestamp("s")), "a": [1, 2],
                         "label": ["p", "q"]}}, {},
       r"column 't' holds timestamp\[\w+\], .*drop it with --columns=t:skip"),
      ("not_parquet", "parquet", {"data.parquet": "a,label\n"}, {}, r"not a readable Parquet file"),
  )
  def test_errors_name_the_file_line_and_column(self, fmt, files, kwargs, message):
    for name, content in files.items():
      path = os.path.join(self.dir, name)
      if isinstance(content, dict):
        pq.write_table(pa.table(content), path)
      else:
        with open(path, "wb") as f:
          f.write(content if isinstance(content, bytes) else content.encode())
    opts = {"input": os.path.join(self.dir, "data." + fmt), "eval_fraction": 0.0}
    opts.update({k: v.replace("{d}", self.dir) if isinstance(v, str) else v
                 for k, v in kwargs.items()})
    if "eval_input" in kwargs and "eval_fraction" not in kwargs:
      del opts["eval_fraction"]
    before = sorted(os.listdir(self.dir))
    with self.assertRaisesRegex(base.SourceError, message):
      registry.open_source(fmt, base.SourceOptions(**opts))
    self.assertEqual(os.listdir(self.tmp), [], "a failed open left its spill behind")
    self.assertEqual(sorted(os.listdir(self.dir)), before)

  def test_parse_columns_combines_entries_and_refuses_conflicts(self):
    got = table.parse_columns(["tags:multi=|", "tags:hash=64", "a:b:numeric", "s:multi=:"])
    self.assertEqual(got["tags"], table.ColumnOverride(type="categorical", multi="|",
                                                       hash_buckets=64))
    self.assertEqual(got["a:b"].type, "numeric")
    self.assertEqual(got["s"].multi, ":")
    with self.assertRaisesRegex(table.TableError, "'x:hash=4' conflicts with an earlier entry"):
      table.parse_columns(["x:numeric", "x:hash=4"])
    with self.assertRaisesRegex(table.TableError, "hash=N needs a bucket count N >= 1"):
      table.parse_columns(["x:hash=0"])

  def test_parse_label_map_splits_at_the_last_equals_sign(self):
    self.assertEqual(table.parse_label_map(["<=50K=0", " >50K = 1 "]), {"<=50K": "0", ">50K": "1"})
    with self.assertRaisesRegex(table.TableError, "'a' is mapped to both '0' and '1'"):
      table.parse_label_map(["a=0", "a=1"])


if __name__ == "__main__":
  tf.test.main()
