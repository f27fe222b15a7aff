"""The format registry: every format is listed, reads only its own options, and refuses others."""

import dataclasses

import tensorflow as tf
from absl.testing import parameterized

from input_fns.formats import base
from input_fns.formats import registry


class RegistryTest(tf.test.TestCase, parameterized.TestCase):

  def test_names(self):
    self.assertEqual(registry.names(), ("csv", "digits", "idx", "image_dir", "jsonl", "parquet",
                                        "text", "tsv"))

  @parameterized.parameters(*registry.names())
  def test_every_format_is_well_formed(self, name):
    fmt = registry.get(name)
    self.assertEqual(fmt.name, name)
    fields = {f.name for f in dataclasses.fields(base.SourceOptions)}
    self.assertContainsSubset(set(fmt.options), fields)
    self.assertIn("seed", fmt.options)
    self.assertTrue(fmt.summary)

  def test_unknown_format(self):
    with self.assertRaisesRegex(base.FormatError,
                                "unknown --format='xlsx'; known: csv, digits, idx"):
      registry.get("xlsx")

  @parameterized.parameters("csv", "tsv", "parquet", "jsonl")
  def test_table_formats_read_the_table_options(self, name):
    options = set(registry.get(name).options)
    self.assertContainsSubset({"input", "label_column", "missing", "columns", "schema",
                               "describe", "label_kind", "label_map", "weight_column",
                               "eval_input", "eval_fraction", "vocab_top_k", "vocab_min_count",
                               "hash_threshold"}, options)
    self.assertEqual("delimiter" in options, name == "csv")
    self.assertEqual("column_names" in options, name in ("csv", "tsv"))

  @parameterized.named_parameters(
      ("csv_flag_on_idx", "idx", {"label_column": "y"}, "--label_column does not apply to --format=idx"),
      ("idx_flag_on_csv", "csv", {"images": "x"}, "--images does not apply to --format=csv"),
      ("text_flag_on_digits", "digits", {"max_length": 3}, "--max_length does not apply"),
      ("image_flag_on_text", "text", {"image_size": (2, 2)}, "--image_size does not apply"),
      ("table_flag_on_idx", "idx", {"label_map": ("a=b",)}, "--label_map does not apply"),
      ("delimiter_on_tsv", "tsv", {"delimiter": ";"}, "--delimiter does not apply to --format=tsv"),
      ("column_names_on_parquet", "parquet", {"column_names": ("a",)},
       "--column_names does not apply to --format=parquet"),
      ("image_shape_on_parquet", "parquet", {"image_shape": (1, 1, 1)},
       "--image_shape does not apply to --format=parquet"),
  )
  def test_options_of_other_formats_are_refused(self, name, kwargs, message):
    with self.assertRaisesRegex(base.FormatError, message):
      registry.open_source(name, base.SourceOptions(**kwargs))

  def test_digits_opens_without_input(self):
    src = registry.open_source("digits", base.SourceOptions())
    self.assertEqual(sum(len(v) for v in src.splits.values()), 1797)
    self.assertEqual(src.count("eval"), round(1797 * base.DEFAULT_EVAL_FRACTION))


if __name__ == "__main__":
  tf.test.main()
