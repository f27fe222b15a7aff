"""Analyze phase: exact moments, sampled quantiles, bounded category counts, vocabulary files."""

import json
import math

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from input_fns import analyze
from input_fns import errors


def _numeric(batches, name="x", **options):
  acc = analyze.NumericAccumulator(name, analyze.AnalyzeOptions(**options))
  for batch in batches:
    acc.update(batch)
  return acc


def _categorical(batches, name="c", **options):
  acc = analyze.CategoricalAccumulator(name, analyze.AnalyzeOptions(**options))
  for batch in batches:
    acc.update(batch)
  return acc


def _rank_errors(values, stats, num_quantiles):
  """|share of values <= boundary - k / num_quantiles| for each boundary."""
  ordered = np.sort(values)
  ranks = np.searchsorted(ordered, stats.quantiles, side="right") / len(ordered)
  return np.abs(ranks - np.arange(1, num_quantiles) / num_quantiles)


class OptionsTest(parameterized.TestCase):

  def test_defaults_are_valid_and_errors_are_user_input_errors(self):
    options = analyze.AnalyzeOptions()
    self.assertEqual((options.num_quantiles, options.sample_size), (10, 100_000))
    self.assertTrue(issubclass(analyze.AnalyzeError, errors.UserInputError))

  @parameterized.named_parameters(
      ("one_quantile", {"num_quantiles": 1}, r"num_quantiles must be an int >= 2, got 1"),
      ("no_sample", {"sample_size": 0}, r"sample_size must be an int >= 1, got 0"),
      ("float_sample", {"sample_size": 1.5}, r"sample_size must be an int >= 1, got 1.5"),
      ("negative_top_k", {"vocab_top_k": -1}, r"vocab_top_k must be an int >= 1"),
      ("zero_min_count", {"vocab_min_count": 0}, r"vocab_min_count must be an int >= 1"),
      ("bool_max_tracked", {"max_tracked": True}, r"max_tracked must be an int >= 1, got True"),
      ("negative_seed", {"seed": -1}, r"seed must be an int >= 0, got -1"),
  )
  def test_invalid_option_is_named(self, kwargs, message):
    with self.assertRaisesRegex(analyze.AnalyzeError, "AnalyzeOptions." + message):
      analyze.AnalyzeOptions(**kwargs)


class NumericTest(parameterized.TestCase):

  def test_moments_match_numpy_ignoring_nans(self):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, 10_000)
    x[rng.random(len(x)) < 0.1] = np.nan
    stats = _numeric(np.array_split(x, 7)).result()
    present = x[~np.isnan(x)]
    self.assertEqual(stats.count, len(present))
    self.assertEqual(stats.missing, len(x) - len(present))
    self.assertAlmostEqual(stats.mean, np.mean(present), places=12)
    self.assertAlmostEqual(stats.std, np.std(present), places=12)
    self.assertEqual(stats.min, np.min(present))
    self.assertEqual(stats.max, np.max(present))
    self.assertFalse(stats.is_integer)
    self.assertAlmostEqual(stats.missing_fraction, np.mean(np.isnan(x)))

  def test_column_near_1e9_with_small_spread_keeps_its_precision(self):
    rng = np.random.default_rng(1)
    offset = 1e9
    x = offset + rng.normal(0.0, 1e-3, 200_000)
    stats = _numeric(np.array_split(x, 400)).result()
    # Subtracting the offset is exact for values this close to it, so this is the true answer.
    self.assertAlmostEqual(stats.mean, offset + np.mean(x - offset), delta=np.spacing(offset))
    self.assertAlmostEqual(stats.std / np.std(x - offset), 1.0, delta=1e-6)

  def test_merge_equals_one_accumulator_over_the_concatenation(self):
    rng = np.random.default_rng(2)
    a = rng.exponential(2.0, 3000)
    b = np.concatenate([rng.normal(-4.0, 1.0, 5000), [np.nan] * 20])
    left = _numeric(np.array_split(a, 3))
    right = _numeric([b])
    left.merge(right)
    merged, whole = left.result(), _numeric([np.concatenate([a, b])]).result()
    self.assertEqual((merged.count, merged.missing), (whole.count, whole.missing))
    self.assertEqual((merged.min, merged.max), (whole.min, whole.max))
    self.assertAlmostEqual(merged.mean, whole.mean, places=12)
    self.assertAlmostEqual(merged.std, whole.std, places=12)
    # Both hold every value (8000 <= sample_size), so the boundaries are the exact ones.
    np.testing.assert_array_equal(merged.quantiles, whole.quantiles)
    self.assertEqual(right.result().count, 5000)  # merge leaves its argument alone

  def test_merged_sample_weights_each_side_by_the_values_it_saw(self):
    rng = np.random.default_rng(3)
    low, high = rng.random(90_000), 10.0 + rng.random(10_000)
    left = _numeric([low], sample_size=2000, seed=1)
    left.merge(_numeric([high], sample_size=2000, seed=2))
    stats = left.result()
    # Weighting the two 2000-value samples equally would put the median among `high`.
    self.assertLess(stats.quantiles[4], 1.0)
    self.assertLess(_rank_errors(np.concatenate([low, high]), stats, 10).max(), 0.03)

  def test_small_column_quantiles_are_exact_and_deduplicated(self):
    x = np.random.default_rng(4).gamma(2.0, size=999)
    stats = _numeric([x[:500], x[500:]], num_quantiles=4).result()
    np.testing.assert_array_equal(stats.quantiles, np.quantile(x, [0.25, 0.5, 0.75]))
    few_values = np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 2])
    few = _numeric([few_values]).result()
    self.assertEqual(few.quantiles, (1.0, np.quantile(few_values, 0.7), 2.0))

  def test_large_column_quantiles_within_one_percent_rank_error(self):
    x = np.random.default_rng(5).lognormal(0.0, 1.0, 1_000_000)
    stats = _numeric(np.array_split(x, 10), sample_size=10_000).result()
    self.assertLen(stats.quantiles, 9)
    self.assertLessEqual(_rank_errors(x, stats, 10).max(), 0.01)

  def test_same_seed_same_sample_whatever_the_batches_other_seed_other_sample(self):
    x = np.random.default_rng(6).normal(size=50_000)
    a = _numeric(np.array_split(x, 5), sample_size=500, seed=7).result()
    b = _numeric(np.array_split(x, 37), sample_size=500, seed=7).result()
    c = _numeric(np.array_split(x, 5), sample_size=500, seed=8).result()
    self.assertEqual(a.quantiles, b.quantiles)
    self.assertNotEqual(a.quantiles, c.quantiles)

  @parameterized.named_parameters(
      ("int_dtype", np.array([3, -1, 7], np.int64), True),
      ("integral_floats", np.array([3.0, np.nan, -1e12]), True),
      ("fraction", np.array([3.0, 2.5]), False),
      ("all_missing", np.array([np.nan, np.nan]), False),
  )
  def test_is_integer(self, values, expected):
    self.assertEqual(_numeric([values]).result().is_integer, expected)

  def test_constant_column_has_exact_mean_and_zero_std(self):
    stats = _numeric([np.full(1001, 0.1), np.full(7, 0.1)]).result()
    self.assertEqual((stats.mean, stats.std, stats.quantiles), (0.1, 0.0, (0.1,)))

  @parameterized.named_parameters(("inf", np.inf, "inf"), ("minus_inf", -np.inf, "-inf"))
  def test_infinite_value_names_the_column_and_leaves_the_accumulator_unchanged(self, bad, text):
    acc = _numeric([np.array([1.0, 2.0])], name="income")
    before = acc.result()
    with self.assertRaisesRegex(analyze.AnalyzeError,
                                rf"column 'income': value {text} is not finite \(row 4 "):
      acc.update(np.array([np.nan, 5.0, bad]))
    self.assertEqual(acc.result(), before)

  def test_strings_are_not_numbers(self):
    with self.assertRaisesRegex(analyze.AnalyzeError, "column 'x': values are not numbers"):
      _numeric([np.array(["1.5", "2"])])

  def test_all_missing_column_has_no_range_and_stores_nulls(self):
    stats = _numeric([np.array([np.nan] * 3), np.array([], np.float64)]).result()
    self.assertEqual((stats.count, stats.missing, stats.quantiles), (0, 3, ()))
    self.assertTrue(math.isnan(stats.min))
    d = json.loads(json.dumps(stats.to_json_dict(), allow_nan=False))
    self.assertIsNone(d["min"])
    self.assertEqual(analyze.NumericStats.from_json_dict(d).to_json_dict(), d)

  def test_json_round_trip(self):
    stats = _numeric([np.arange(100.0)]).result()
    d = json.loads(json.dumps(stats.to_json_dict()))
    self.assertEqual(analyze.NumericStats.from_json_dict(d), stats)

  @parameterized.named_parameters(
      ("missing_key", lambda d: d.pop("std"), "KeyError"),
      ("string_count", lambda d: d.update(count="5"), "count must be an int"),
      ("bool_count", lambda d: d.update(count=True), "count must be an int"),
      ("unsorted_quantiles", lambda d: d.update(quantiles=[2.0, 1.0]), "strictly increasing"),
      ("bad_flag", lambda d: d.update(is_integer=1), "is_integer must be true or false"),
  )
  def test_malformed_json_raises(self, spoil, message):
    d = _numeric([np.arange(10.0)]).result().to_json_dict()
    spoil(d)
    with self.assertRaisesRegex(analyze.AnalyzeError, message):
      analyze.NumericStats.from_json_dict(d)


class CategoricalTest(parameterized.TestCase):

  def test_counts_order_and_ties_broken_by_value(self):
    # "ba" comes first but ties are ordered by value, whatever the input order.
    stats = _categorical([["ba", "b", "a", None], np.array(["a", "b", "", "ab", "b"], object)]
                         ).result()
    self.assertEqual(stats.vocabulary, ("b", "a", "ab", "ba"))
    self.assertEqual(stats.counts, (3, 2, 1, 1))
    self.assertEqual((stats.count, stats.missing, stats.distinct), (7, 2, 4))
    self.assertFalse(stats.approximate)
    self.assertEqual(stats.top(2), [("b", 3), ("a", 2)])

  def test_ints_are_decimal_strings_and_the_same_category_as_their_strings(self):
    stats = _categorical([np.array([9, 10, 10, 9], np.int64), ["9", 10], np.array([np.nan, 3.0])]
                         ).result()
    # Ties are broken comparing strings: "10" < "9".
    self.assertEqual(stats.vocabulary, ("10", "9", "3"))
    self.assertEqual(stats.counts, (3, 3, 1))
    self.assertEqual(stats.missing, 1)

  def test_non_integral_float_is_not_a_category(self):
    with self.assertRaisesRegex(analyze.AnalyzeError, r"column 'c': value 2.5 is not a category"):
      _categorical([np.array([1.0, 2.5])])
    with self.assertRaisesRegex(analyze.AnalyzeError, r"column 'c': value 2.5 is not a category"):
      _categorical([["a", 2.5]])

  def test_fixed_width_string_and_bytes_arrays(self):
    stats = _categorical([np.array(["x", "y", "x", ""]), np.array([b"x", "ü".encode()])]).result()
    self.assertEqual(stats.top(3), [("x", 3), ("y", 1), ("ü", 1)])
    self.assertEqual(stats.missing, 1)

  def test_min_count_and_top_k(self):
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 4 + ["d"] * 2 + ["e"]
    self.assertEqual(_categorical([values], vocab_min_count=2).result().vocabulary,
                     ("a", "b", "c", "d"))
    stats = _categorical([values], vocab_top_k=2).result()
    self.assertEqual((stats.vocabulary, stats.counts, stats.distinct), (("a", "b"), (5, 4), 5))

  def test_multi_valued_cells_count_items_and_empty_cells_are_missing(self):
    stats = _categorical([[["a", "b"], ["a"], [], None, ["", None], "c",
                           np.array(["a"], object)]]).result()
    self.assertEqual(stats.top(3), [("a", 3), ("b", 1), ("c", 1)])
    self.assertEqual((stats.count, stats.missing, stats.cells), (5, 3, 4))
    self.assertAlmostEqual(stats.missing_fraction, 3 / 7)

  def test_merge_equals_one_accumulator_over_the_concatenation(self):
    rng = np.random.default_rng(0)
    a = [f"v{i}" for i in rng.zipf(1.5, 2000) % 300]
    b = [f"v{i}" for i in rng.zipf(1.5, 3000) % 300] + [None] * 5
    left = _categorical([a[:1000], a[1000:]])
    left.merge(_categorical([b]))
    self.assertEqual(left.result(), _categorical([a + b]).result())

  def test_exactly_max_tracked_distinct_values_is_exact(self):
    stats = _categorical([[str(i) for i in range(10)] * 2], max_tracked=10).result()
    self.assertFalse(stats.approximate)
    self.assertEqual((stats.distinct, len(stats.vocabulary)), (10, 10))

  def test_past_max_tracked_keeps_the_heavy_hitter_and_flags_approximate(self):
    k = 10
    rng = np.random.default_rng(1)
    values = np.array([f"rare{i}" for i in range(1000)] + ["heavy"] * 300, object)
    rng.shuffle(values)
    acc = _categorical(np.array_split(values, 26), max_tracked=k)
    stats = acc.result()
    self.assertTrue(stats.approximate)
    self.assertEqual(stats.vocabulary[0], "heavy")
    self.assertLessEqual(len(stats.vocabulary), k)
    # Misra-Gries: a lower bound, off by at most (N - kept) / (k + 1).
    self.assertLessEqual(stats.counts[0], 300)
    self.assertGreaterEqual(stats.counts[0], 300 - (1300 - sum(stats.counts)) / (k + 1))
    self.assertBetween(stats.distinct, int(k * 1.5), 1001)
    self.assertEqual((stats.count, stats.missing), (1300, 0))
    self.assertLessEqual(len(acc._counts), k + k // 2)  # memory stays bounded

  def test_just_past_max_tracked_is_approximate_even_before_a_cut(self):
    stats = _categorical([["a"] * 5 + ["b", "c", "d"]], max_tracked=2).result()
    self.assertTrue(stats.approximate)
    self.assertEqual(stats.vocabulary, ("a",))
    self.assertEqual(stats.distinct, 4)

  def test_merging_approximate_summaries_keeps_the_heavy_hitter(self):
    parts = [[f"w{w}-{i}" for i in range(400)] + ["heavy"] * 100 for w in range(3)]
    acc = _categorical([parts[0]], max_tracked=20)
    for part in parts[1:]:
      acc.merge(_categorical([part], max_tracked=20))
    stats = acc.result()
    self.assertTrue(stats.approximate)
    self.assertEqual(stats.vocabulary[0], "heavy")
    self.assertEqual(stats.count, 1500)

  def test_merge_rejects_other_options(self):
    with self.assertRaisesRegex(ValueError, "different options"):
      _categorical([["a"]]).merge(_categorical([["a"]], vocab_top_k=3))
    with self.assertRaises(TypeError):
      _categorical([["a"]]).merge(_numeric([np.ones(2)]))

  def test_json_leaves_out_the_vocabulary_and_round_trips(self):
    values = [f"v{i:02d}" for i in range(30) for _ in range(i + 1)] + [None]
    stats = _categorical([values]).result()
    d = json.loads(json.dumps(stats.to_json_dict()))
    self.assertNotIn("vocabulary", d)
    self.assertEqual((d["vocab_size"], d["distinct"], d["missing"]), (30, 30, 1))
    self.assertEqual(d["top"][:2], [["v29", 30], ["v28", 29]])
    self.assertLen(d["top"], analyze.SUMMARY_TOP)
    back = analyze.CategoricalStats.from_json_dict(d)
    self.assertEqual(back.to_json_dict(), d)
    self.assertEqual(back.top(3), stats.top(3))
    self.assertFalse(back.complete)
    with self.assertRaisesRegex(analyze.AnalyzeError, "hold 10 of the 30 vocabulary values"):
      analyze.write_vocabulary(back)

  @parameterized.named_parameters(
      ("missing_key", lambda d: d.pop("distinct"), "KeyError"),
      ("bad_top", lambda d: d.update(top=[["a"]]), "top must be a list of"),
      ("bad_count", lambda d: d.update(top=[["a", "1"]]), r"top entry \['a', '1'\]"),
      ("short_vocab", lambda d: d.update(vocab_size=0), "vocab_size 0 is smaller"),
  )
  def test_malformed_json_raises(self, spoil, message):
    d = _categorical([["a", "a", "b"]]).result().to_json_dict()
    spoil(d)
    with self.assertRaisesRegex(analyze.AnalyzeError, message):
      analyze.CategoricalStats.from_json_dict(d)


class VocabularyFileTest(absltest.TestCase):

  def test_round_trip_keeps_order_and_non_ascii(self):
    stats = _categorical([["München"] * 3 + ["日本"] * 2 + ["a b", "😀"]]).result()
    data = analyze.write_vocabulary(stats)
    self.assertEqual(data, "München\n日本\na b\n😀\n".encode("utf-8"))
    self.assertEqual(analyze.read_vocabulary(data), stats.vocabulary)

  def test_empty_vocabulary_is_an_empty_file(self):
    stats = _categorical([[None, ""]]).result()
    self.assertEqual(analyze.write_vocabulary(stats), b"")
    self.assertEqual(analyze.read_vocabulary(b""), ())

  def test_read_accepts_a_missing_last_newline_and_crlf(self):
    self.assertEqual(analyze.read_vocabulary(b"a\r\nb\nc"), ("a", "b", "c"))
    with self.assertRaisesRegex(analyze.AnalyzeError, "not UTF-8"):
      analyze.read_vocabulary(b"\xff\n")

  def test_value_with_a_line_break_is_rejected_naming_it(self):
    for bad in ("two\nlines", "ends\r"):
      stats = _categorical([["ok", bad]]).result()
      with self.assertRaisesRegex(analyze.AnalyzeError,
                                  rf"column 'notes': vocabulary value {bad!r} contains a "
                                  rf"line break".replace("\\", "\\\\")):
        analyze.write_vocabulary(stats, name="notes")


class SummaryLineTest(absltest.TestCase):

  def test_numeric_and_categorical_lines_align_and_say_what_matters(self):
    age = _numeric([np.array([17, 90, 30, 40], np.int64)]).result()
    workclass = _categorical([["Private"] * 7 + ["Self-emp"] * 2 + [None]]).result()
    num_line = analyze.summary_line("age", "numeric", age)
    cat_line = analyze.summary_line("workclass", "categorical", workclass)
    self.assertRegex(num_line, r"^age +numeric +int +missing 0\.0% +mean 44\.25 std 27\.\d+ "
                               r"range \[17, 90\]$")
    self.assertRegex(cat_line, r"^workclass +categorical +missing 10\.0% +2 distinct: "
                               r"Private 77\.8%, Self-emp 22\.2%$")
    self.assertEqual(num_line.index("missing"), cat_line.index("missing"))
    self.assertEqual(num_line.index("mean"), cat_line.index("2 distinct"))

  def test_float_column_and_empty_column(self):
    line = analyze.summary_line("ratio", "numeric", _numeric([np.array([0.5, 1.25])]).result())
    self.assertIn(" float ", line)
    self.assertIn("range [0.5, 1.25]", line)
    empty = analyze.summary_line("e", "numeric", _numeric([np.array([np.nan])]).result())
    self.assertRegex(empty, r"missing 100\.0% +no values$")

  def test_long_lines_are_cut_at_110_characters_and_end_with_an_ellipsis(self):
    values = [f"cat-{i}" for i in range(40) for _ in range(40 - i)]
    line = analyze.summary_line("a_column_name_far_longer_than_thirty_characters",
                                "categorical", _categorical([values]).result())
    self.assertLessEqual(len(line), 110)
    self.assertTrue(line.startswith("a_column_name_far_longer_th... categorical "))
    self.assertIn(" 40 distinct: cat-0 4.9%, cat-1 4.8%, ", line)
    self.assertTrue(line.endswith(", ..."))
    # Past max_tracked the distinct count is a lower bound.
    approximate = _categorical([values], max_tracked=30).result()
    self.assertIn(" 40+ distinct: ", analyze.summary_line("c", "categorical", approximate))

  def test_other_stats_are_a_type_error(self):
    with self.assertRaises(TypeError):
      analyze.summary_line("x", "numeric", {"count": 1})


if __name__ == "__main__":
  absltest.main()
