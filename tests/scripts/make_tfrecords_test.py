"""//scripts:make_tfrecords: flags -> frozen config, conversion, and the real CLI's exit codes
and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import flagsaver
from absl.testing import parameterized

from input_fns import manifest as manifest_lib
from scripts import make_tfrecords
from scripts import make_tfrecords_flags
from tests.testing import data as test_data


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
             TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "scripts.make_tfrecords", *args], env=env,
                        capture_output=True, text=True, timeout=300)


class MakeTfrecordsTest(tf.test.TestCase, parameterized.TestCase):

  def _idx(self, n=40, gz=True):
    d = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
    labels = (np.arange(n) % 4).astype(np.uint8)
    return (test_data.write_idx(os.path.join(d, "images.gz"), images, gz),
            test_data.write_idx(os.path.join(d, "labels.gz"), labels, gz), images, labels)

  def test_flags_become_a_frozen_config_with_resolved_paths(self):
    root = self.create_tempdir().full_path
    with flagsaver.flagsaver(format="csv", input="data.csv", output_dir="out", num_shards=3,
                             compression="GZIP", shuffle=False, image_shape="2,3,1",
                             label_column="y", eval_fraction=0.3, seed=9):
      os.environ["BUILD_WORKING_DIRECTORY"] = root
      try:
        cfg = make_tfrecords_flags.config_from_flags()
      finally:
        del os.environ["BUILD_WORKING_DIRECTORY"]
    self.assertEqual(cfg.format, "csv")
    self.assertEqual(cfg.output_dir, os.path.join(root, "out"))
    self.assertEqual(cfg.source.input, os.path.join(root, "data.csv"))
    self.assertEqual(cfg.source.image_shape, (2, 3, 1))
    self.assertEqual((cfg.source.label_column, cfg.source.eval_fraction, cfg.source.seed),
                     ("y", 0.3, 9))
    self.assertEqual((cfg.write.num_shards, cfg.write.compression, cfg.write.shuffle_seed),
                     (3, "GZIP", None))
    with self.assertRaises(AttributeError):
      cfg.format = "idx"  # frozen

  def test_table_flags_become_source_options(self):
    root = self.create_tempdir().full_path
    with flagsaver.flagsaver(format="csv", input="t.tsv", output_dir="out", delimiter="tab",
                             column_names=["a", "b", "y"], missing=["?", "NA"],
                             columns=["a:numeric", "b:multi=|"], label_column="y",
                             label_kind="binary", label_map=["<=50K=0", ">50K=1"],
                             weight_column="w", eval_input="e.csv", vocab_top_k=50,
                             vocab_min_count=2, hash_threshold=99, describe=True):
      os.environ["BUILD_WORKING_DIRECTORY"] = root
      try:
        cfg = make_tfrecords_flags.config_from_flags()
      finally:
        del os.environ["BUILD_WORKING_DIRECTORY"]
    src = cfg.source
    self.assertEqual((src.delimiter, src.column_names, src.missing, src.columns),
                     ("\t", ("a", "b", "y"), ("", "?", "NA"), ("a:numeric", "b:multi=|")))
    self.assertEqual((src.label_kind, src.label_map, src.weight_column),
                     ("binary", ("<=50K=0", ">50K=1"), "w"))
    self.assertEqual((src.vocab_top_k, src.vocab_min_count, src.hash_threshold), (50, 2, 99))
    self.assertEqual(src.eval_input, os.path.join(root, "e.csv"))
    self.assertTrue(src.describe)
    self.assertEqual(src.schema, os.path.join(root, "out.schema.json"))  # --describe's default
    with flagsaver.flagsaver(format="csv", input="t.csv", output_dir="out"):
      defaults = make_tfrecords_flags.config_from_flags().source
    self.assertEqual((defaults.missing, defaults.schema, defaults.label_kind, defaults.delimiter),
                     (("", "NA"), "", "", ","))

  @parameterized.named_parameters(
      ("shape", dict(format="csv", output_dir="o", image_shape="28,28"),
       r"--image_shape must be H,W,C \(3 positive integers\), got '28,28'"),
      ("size", dict(format="image_dir", output_dir="o", image_size="0,4"),
       r"--image_size must be H,W"),
      ("no_format", dict(output_dir="o"), "--format is required: one of csv, digits"),
      ("no_output", dict(format="digits"), "--output_dir is required"),
  )
  def test_bad_flags(self, values, message):
    with flagsaver.flagsaver(**values):
      with self.assertRaisesRegex(make_tfrecords_flags.FlagError, message):
        make_tfrecords_flags.config_from_flags()

  def test_convert_idx_then_rerun_is_a_no_op(self):
    images, labels, _, _ = self._idx()
    out = os.path.join(self.create_tempdir().full_path, "ds")
    with flagsaver.flagsaver(format="idx", images=images, labels=labels, output_dir=out,
                             num_shards=2, eval_fraction=0.25):
      cfg = make_tfrecords_flags.config_from_flags()
    m = make_tfrecords.convert(cfg)
    self.assertEqual((m.count("train"), m.count("eval")), (30, 10))
    before = test_data.dir_snapshot(out)
    self.assertEqual(make_tfrecords.convert(cfg), m)
    self.assertEqual(test_data.dir_snapshot(out), before)
    text = m.describe()
    self.assertIn("train: 30 examples in 2 shards", text)
    self.assertIn("image 'image' uint8[4, 4, 1], 4 classes", text)

  def test_cli_writes_a_dataset(self):
    images, labels, src_images, src_labels = self._idx()
    out = os.path.join(self.create_tempdir().full_path, "ds")
    result = _cli("--format=idx", f"--images={images}", f"--labels={labels}",
                  f"--output_dir={out}", "--num_shards=3", "--compression=GZIP",
                  "--eval_fraction=0.25", "--progress_interval=0")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn(f"dataset: {out}", result.stdout)
    self.assertIn("examples/s", result.stderr)  # progress lines
    m = manifest_lib.read(out)
    self.assertEqual(m.compression, "GZIP")
    got = []
    for split in ("train", "eval"):
      features, got_labels = test_data.read_split(m, split)
      got += test_data.example_keys(features["image"], got_labels)
    self.assertEqual(sorted(got), test_data.example_keys(src_images[..., None], src_labels))

  def _adult(self):
    path = os.path.join(self.create_tempdir().full_path, "adult.csv")
    with open(path, "w") as f:
      f.write("age,workclass,income\n" + "".join(
          f"{20 + i % 50}, {['Private', 'State-gov', '?'][i % 3]} ,"
          f"{['<=50K', '>50K'][i % 4 == 0]}\n" for i in range(40)))
    return path

  def test_cli_describe_prints_the_summary_writes_the_schema_and_no_dataset(self):
    path = self._adult()
    out = os.path.join(self.create_tempdir().full_path, "ds")
    result = _cli("--format=csv", f"--input={path}", "--label_column=income", "--missing=?",
                  "--label_map=<=50K=0,>50K=1", f"--output_dir={out}", "--describe")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertRegex(result.stdout, r"age +numeric +int +missing 0.0%")
    self.assertRegex(result.stdout, r"workclass +categorical +missing 33.3%")
    self.assertIn(f"schema written to {out}.schema.json", result.stdout)
    self.assertNotIn("dataset:", result.stdout)
    self.assertFalse(os.path.exists(out))
    with open(out + ".schema.json") as f:
      schema = json.load(f)
    self.assertEqual([(c["name"], c["type"]) for c in schema["columns"]],
                     [("age", "numeric"), ("workclass", "categorical")])
    schema["columns"][0]["type"] = "categorical"
    with open(out + ".schema.json", "w") as f:
      json.dump(schema, f)
    result = _cli("--format=csv", f"--input={path}", "--label_column=income", "--missing=?",
                  "--label_map=<=50K=0,>50K=1", f"--output_dir={out}",
                  f"--schema={out}.schema.json")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertRegex(result.stdout, r"age +categorical")
    self.assertIn(f"dataset: {out}", result.stdout)
    m = manifest_lib.read(out)
    self.assertEqual((m.spec.feature("age").role, m.spec.label_kind), ("categorical", "binary"))
    self.assertEqual(sorted(m.assets), ["vocab/age", "vocab/workclass"])

  def test_cli_table_error_is_one_line(self):
    path = self._adult()
    out = os.path.join(self.create_tempdir().full_path, "ds")
    result = _cli("--format=csv", f"--input={path}", "--label_column=income",
                  "--label_map=<=50K=0", f"--output_dir={out}")
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^error: .*adult.csv:2: column 'income': label '>50K' is not in --label_map")
    self.assertFalse(os.path.exists(out))

  @parameterized.named_parameters(
      ("wrong_magic", "magic", r"wrong magic number 0x00000801"),
      ("no_shards", "shards", r"--num_shards must be in \[1, 99999\], got 0"),
      ("other_dataset", "other", r"already holds a different dataset"),
      ("option_of_another_format", "option", r"--max_length does not apply to --format=idx"),
  )
  def test_cli_errors_are_one_line_with_exit_code_2(self, case, message):
    images, labels, _, _ = self._idx()
    out = os.path.join(self.create_tempdir().full_path, "ds")
    args = [f"--images={images}", f"--labels={labels}", f"--output_dir={out}"]
    if case == "magic":
      args[0] = f"--images={labels}"
    elif case == "shards":
      args.append("--num_shards=0")
    elif case == "option":
      args.append("--max_length=5")
    elif case == "other":
      other_images, other_labels, _, _ = self._idx(n=44)
      with flagsaver.flagsaver(format="idx", images=other_images, labels=other_labels,
                               output_dir=out):
        make_tfrecords.convert(make_tfrecords_flags.config_from_flags())
    before = test_data.dir_snapshot(out) if os.path.exists(out) else None
    result = _cli("--format=idx", *args)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    last = result.stderr.strip().splitlines()[-1]
    self.assertRegex(last, f"^error: .*{message}")
    self.assertNotIn("Traceback", result.stderr)
    if before is None:
      self.assertFalse(os.path.exists(out))
    else:
      self.assertEqual(test_data.dir_snapshot(out), before)


if __name__ == "__main__":
  tf.test.main()
