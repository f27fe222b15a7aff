"""Tests for model_fns/hparams.py: text and JSON overrides, typed by the dataclass fields."""

import dataclasses
import json
from typing import List, Optional, Sequence, Tuple

from absl.testing import absltest
from absl.testing import parameterized

from input_fns import errors
from model_fns import hparams


@dataclasses.dataclass(frozen=True)
class _HP:
  """Attributes:
    units: widths.
    rate: a rate.
    steps: a count.
    flag: a switch.
    name: a name.
    scale: an optional factor.
    names: strings.
    chain: a sequence of names.
    sizes: a list of sizes.
  """
  units: Tuple[int, ...] = (8, 4)
  rate: float = 0.5
  steps: int = 3
  flag: bool = False
  name: str = "relu"
  scale: Optional[float] = None
  names: Tuple[str, ...] = ()
  chain: Sequence[str] = ("scale",)
  sizes: List[int] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    hparams.check(_HP, "rate", self.rate, 0.0 <= self.rate < 1.0, "a rate in [0, 1)")


class OverrideTextTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("int", "steps=7", {"steps": 7}),
      ("float", "rate=0.25", {"rate": 0.25}),
      ("float_from_int_text", "rate=0", {"rate": 0.0}),
      ("bool_true", "flag=true", {"flag": True}),
      ("bool_yes", "flag=Yes", {"flag": True}),
      ("bool_zero", "flag=0", {"flag": False}),
      ("str", "name=tanh", {"name": "tanh"}),
      ("str_quoted", "name='a b'", {"name": "a b"}),
      ("tuple_brackets", "units=[1,2,3]", {"units": (1, 2, 3)}),
      ("tuple_parens_spaces", "units=( 5 , 6 )", {"units": (5, 6)}),
      ("tuple_single", "units=9", {"units": (9,)}),
      ("tuple_empty", "units=[]", {"units": ()}),
      ("str_tuple", "names=[a,b]", {"names": ("a", "b")}),
      ("sequence", "chain=[a,b]", {"chain": ("a", "b")}),
      ("list", "sizes=[3]", {"sizes": (3,)}),
      ("optional_value", "scale=2.5", {"scale": 2.5}),
      ("optional_none", "scale=none", {"scale": None}),
      ("several", " units=[16,8] , steps=2,flag=true,", {"units": (16, 8), "steps": 2, "flag": True}),
  )
  def test_applies(self, text, expected):
    hp = hparams.override(_HP(), text)
    for key, value in expected.items():
      self.assertEqual(getattr(hp, key), value, key)
      self.assertIs(type(getattr(hp, key)), type(value), key)
    untouched = set(f.name for f in dataclasses.fields(_HP)) - set(expected)
    for key in untouched:
      self.assertEqual(getattr(hp, key), getattr(_HP(), key))

  def test_empty_and_none_return_same(self):
    hp = _HP(steps=5)
    self.assertIs(hparams.override(hp, ""), hp)
    self.assertIs(hparams.override(hp, None), hp)

  def test_result_is_frozen(self):
    hp = hparams.override(_HP(), "steps=4")
    with self.assertRaises(dataclasses.FrozenInstanceError):
      hp.steps = 5  # type: ignore[misc]

  @parameterized.named_parameters(
      ("unknown_key", "stepz=3", ["stepz", "unknown key", "valid keys: units, rate, steps"]),
      ("int_not_float", "steps=1.5", ["steps", "'1.5'", "expected int"]),
      ("int_word", "steps=many", ["steps", "'many'", "expected int"]),
      ("float_word", "rate=fast", ["rate", "'fast'", "expected float"]),
      ("bool_word", "flag=maybe", ["flag", "'maybe'", "expected bool"]),
      ("tuple_elem", "units=[1,x]", ["units", "'[1,x]'", "expected tuple of int"]),
      ("optional", "scale=big", ["scale", "expected float or none"]),
      ("twice", "steps=1,steps=2", ["steps", "given twice"]),
      ("own_check", "rate=2.0", ["rate", "2.0", "expected a rate in [0, 1)"]),
  )
  def test_rejects(self, text, needles):
    with self.assertRaises(hparams.HParamsError) as cm:
      hparams.override(_HP(), text)
    self.assertIsInstance(cm.exception, errors.UserInputError)
    for needle in needles:
      self.assertIn(needle, str(cm.exception))

  def test_mistyped_key_suggests_the_nearest_valid_keys(self):
    with self.assertRaises(hparams.HParamsError) as cm:
      hparams.override(_HP(), "stesp=3")
    self.assertIn("hparam stesp='3': unknown key; valid keys: units, rate, steps",
                  str(cm.exception))
    self.assertTrue(str(cm.exception).endswith("; did you mean 'steps' or 'sizes'?"),
                    str(cm.exception))  # nearest first
    with self.assertRaises(hparams.HParamsError) as cm:
      hparams.from_json_dict(_HP, {"zzz": 1})  # nothing near: no suggestion
    self.assertNotIn("did you mean", str(cm.exception))

  @parameterized.named_parameters(
      ("no_equals", "steps"),
      ("empty_key", "=3"),
      ("unbalanced_open", "units=[1,2"),
      ("unbalanced_close", "units=1,2]"),
  )
  def test_malformed(self, text):
    with self.assertRaisesRegex(hparams.HParamsError, "hparams"):
      hparams.split_overrides(text)

  def test_split_keeps_bracketed_commas(self):
    self.assertEqual(hparams.split_overrides("a=[1,2],b=(3,4),c=x"),
                     [("a", "[1,2]"), ("b", "(3,4)"), ("c", "x")])


class JsonTest(parameterized.TestCase):

  def test_round_trip_through_json_text(self):
    hp = _HP(units=(3, 2, 1), rate=0.125, steps=9, flag=True, name="gelu", scale=1.5,
             names=("x",), sizes=(2,))
    d = json.loads(json.dumps(hparams.to_json_dict(hp)))
    self.assertEqual(d["units"], [3, 2, 1])
    self.assertEqual(hparams.from_json_dict(_HP, d), hp)

  def test_partial_dict_keeps_defaults(self):
    self.assertEqual(hparams.from_json_dict(_HP, {"steps": 11}), _HP(steps=11))
    self.assertEqual(hparams.from_json_dict(_HP, {}), _HP())

  def test_json_values_converted(self):
    hp = hparams.override(_HP(), {"rate": 0, "steps": 4.0, "units": 7, "scale": None,
                                  "flag": "true"})
    self.assertEqual(hp, _HP(rate=0.0, steps=4, units=(7,), scale=None, flag=True))
    self.assertIsInstance(hp.rate, float)

  @parameterized.named_parameters(
      ("bool_for_int", {"steps": True}, "expected int"),
      ("float_for_int", {"steps": 2.5}, "expected int"),
      ("number_for_bool", {"flag": 1}, "expected bool"),
      ("number_for_str", {"name": 3}, "expected str"),
      ("bad_elem", {"units": [1, "x"]}, "expected tuple of int"),
      ("unknown", {"nope": 1}, "unknown key"),
  )
  def test_rejects(self, d, needle):
    with self.assertRaisesRegex(hparams.HParamsError, needle):
      hparams.from_json_dict(_HP, d)


class DescribeTest(absltest.TestCase):

  def test_lists_every_field_with_type_and_default(self):
    lines = hparams.describe(_HP)
    self.assertLen(lines, len(dataclasses.fields(_HP)))
    self.assertIn("units: tuple of int like [1,2] = [8, 4]", lines)
    self.assertIn("scale: float or none = None", lines)


if __name__ == "__main__":
  absltest.main()
