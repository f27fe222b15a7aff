"""CSV: numeric columns become a TABLE and pixel columns an image, both round trip exactly;
malformed files are named to the line (the typed-table cases in depth: table_test.py)."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns.formats import base
from input_fns.formats import registry
from tests.testing import data as test_data


class CsvTest(tf.test.TestCase, parameterized.TestCase):

  def _file(self, text):
    path = os.path.join(self.create_tempdir().full_path, "data.csv")
    with open(path, "w") as f:
      f.write(text)
    return path

  def test_numeric_columns_become_one_table_column_each(self):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((60, 3)) * 100
    species = ["setosa", "virginica", "versicolor"]
    rows = ["a,species,b,c"] + [f"{v[0]!r},{species[i % 3]},{v[1]:.3f},{v[2]:g}"
                                for i, v in enumerate(values)]
    path = self._file("\n".join(rows) + "\n\n")  # a trailing blank line is skipped
    out = self.create_tempdir().full_path
    m = test_data.convert("csv", base.SourceOptions(input=path, label_column="species",
                                                   eval_fraction=0.25), out, num_shards=2)
    self.assertEqual(m.spec.kind, fs.TABLE)
    self.assertEqual([(f.name, f.role, f.dtype, f.shape) for f in m.spec.features],
                     [(n, fs.NUMERIC, "float32", (1,)) for n in ("a", "b", "c")])
    self.assertEqual((m.spec.label_kind, m.spec.label_names),
                     (fs.MULTICLASS, ("setosa", "versicolor", "virginica")))
    self.assertEqual(m.source["column_types"], {"a": "numeric", "b": "numeric", "c": "numeric"})
    self.assertEqual((m.count("train"), m.count("eval")), (45, 15))
    self.assertEqual(m.spec.feature("a").stats["count"], 45)  # the train split only
    expected = np.array([[float(c) for c in r.split(",")[:1] + r.split(",")[2:]] for r in rows[1:]],
                        np.float32)
    labels = np.array([sorted(species).index(species[i % 3]) for i in range(60)])
    got = []
    for split in ("train", "eval"):
      features, got_labels = test_data.read_split(m, split)
      self.assertEqual(features["a"].dtype, np.float32)
      vectors = np.concatenate([features[n] for n in ("a", "b", "c")], axis=1)
      got += test_data.example_keys(vectors, got_labels)
    self.assertEqual(sorted(got), test_data.example_keys(expected, labels))

  def test_empty_and_na_cells_are_missing_numbers(self):
    path = self._file("label,a\n0,1\n1,\n0,NA\n1, 2.5 \n")
    m = test_data.convert("csv", base.SourceOptions(input=path, eval_fraction=0.0),
                          self.create_tempdir().full_path)
    features, _ = test_data.read_split(m, "train")
    self.assertAllEqual(features["a"][:, 0], [1.0, np.nan, np.nan, 2.5])
    self.assertEqual(m.spec.feature("a").stats["missing"], 2)

  def test_pixel_mode_keeps_its_identity_and_description(self):
    path = self._file("label,a,b\n0,1,2\n1,3,4\n")
    src = registry.open_source("csv", base.SourceOptions(input=path, image_shape=(1, 2, 1),
                                                         eval_fraction=0.0))
    self.assertEqual(sorted(src.identity), ["content_sha256", "eval_fraction", "format",
                                            "image_shape", "label_column", "seed"])
    self.assertEqual(src.description["columns"], ["a", "b"])

  def test_pixel_columns_become_an_image(self):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (20, 2 * 3 * 1))
    rows = ["label," + ",".join(f"p{i}" for i in range(6))]
    rows += [f"{i % 2}," + ",".join(str(p) for p in px) for i, px in enumerate(pixels)]
    path = self._file("\r\n".join(rows))
    out = self.create_tempdir().full_path
    m = test_data.convert("csv", base.SourceOptions(input=path, image_shape=(2, 3, 1),
                                                   eval_fraction=0.0), out)
    self.assertEqual(m.spec.kind, fs.IMAGE)
    features, labels = test_data.read_split(m, "train")
    self.assertEqual(test_data.example_keys(features["image"], labels),
                     test_data.example_keys(pixels.astype(np.uint8).reshape(-1, 2, 3, 1),
                                           np.arange(20) % 2))

  def test_integer_labels_sort_numerically(self):
    path = self._file("x,label\n" + "".join(f"{i},{i % 11}\n" for i in range(44)))
    src = registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0))
    self.assertEqual(src.spec.label_names, tuple(str(i) for i in range(11)))

  @parameterized.named_parameters(
      ("missing_label_column", "a,b\n1,2\n", {},
       r"data.csv: no label column 'label' \(columns: a, b\)"),
      ("non_numeric", "label,a,b\n0,1,2\n1,3,x4\n", {"columns": ("b:numeric",)},
       r"data.csv:3: column 'b': 'x4' is not a number"),
      ("not_finite", "label,a\n0,1\n1,nan\n", {}, r"data.csv:3: column 'a': 'nan' is not a finite"),
      ("too_big_for_float32", "label,a\n0,1\n1,1e300\n", {}, r"data.csv:3: column 'a': '1e300' does not fit float32"),
      ("ragged", "label,a,b\n0,1,2\n\n1,3\n", {}, r"data.csv:4: 2 fields, but the header has 3 \(ragged row\)"),
      ("empty_file", "", {}, r"empty source: .*data.csv is empty"),
      ("header_only", "label,a\n", {}, r"empty source: .*data.csv has a header but no data rows"),
      ("no_features", "label\n0\n1\n", {}, "no feature columns besides the label column"),
      ("pixels_not_numbers", "label,a,b\n0,1,2\n1,3,x4\n", {"image_shape": (1, 2, 1)},
       r"data.csv:3: column 'b': 'x4' is not a number"),
      ("shape_mismatch", "label,a,b\n0,1,2\n1,3,4\n", {"image_shape": (2, 2, 1)},
       r"--image_shape=2,2,1 needs 4 pixel columns, the file has 2"),
      ("bad_pixel", "label,a,b\n0,1,2\n1,3,4.5\n", {"image_shape": (1, 2, 1)},
       r"data.csv:3: column 'b': '4.5' is not an integer pixel value in 0..255"),
      ("one_class", "label,a\n0,1\n0,2\n", {}, "has 1 class"),
  )
  def test_malformed_files_are_named_to_the_line(self, text, kwargs, message):
    path = self._file(text)
    with self.assertRaisesRegex(base.SourceError, message):
      registry.open_source("csv", base.SourceOptions(input=path, eval_fraction=0.0, **kwargs))


if __name__ == "__main__":
  tf.test.main()
