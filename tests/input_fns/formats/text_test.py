"""text: label<TAB>text lines -> token ids with a train-only vocabulary written beside the
shards; malformed lines are named."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns.formats import base
from input_fns.formats import registry
from input_fns.formats import text
from tests.testing import data as test_data


class TextTest(tf.test.TestCase, parameterized.TestCase):

  def _file(self, content: str):
    path = os.path.join(self.create_tempdir().full_path, "reviews.tsv")
    with open(path, "w", encoding="utf-8") as f:
      f.write(content)
    return path

  def test_tokenize_and_vocab(self):
    self.assertEqual(text.tokenize("Don't STOP, now!  über"),
                     ["don", "'", "t", "stop", ",", "now", "!", "über"])
    vocab = text.build_vocab([["b", "a", "b"], ["c", "a", "b"]], max_vocab=4)
    self.assertEqual(vocab, ["<pad>", "<unk>", "b", "a"])  # by count, then alphabetically
    ids = {t: i for i, t in enumerate(vocab)}
    np.testing.assert_array_equal(text.encode(["a", "zzz", "b"], ids, 5), [3, 1, 2, 0, 0])
    np.testing.assert_array_equal(text.encode(["a", "b", "a"], ids, 2), [3, 2])

  def test_round_trip_with_train_only_vocabulary(self):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    lines = []
    for i in range(80):
      n = int(rng.integers(1, 12))
      lines.append((["neg", "pos"][i % 2], " ".join(rng.choice(words, n))))
    path = self._file("".join(f"{label}\t{t}\n" for label, t in lines) + "\n")
    out = self.create_tempdir().full_path
    m = test_data.convert("text", base.SourceOptions(input=path, max_length=8, max_vocab=25,
                                                    eval_fraction=0.25, seed=2), out, num_shards=2)
    self.assertEqual(m.spec.kind, fs.TOKENS)
    self.assertEqual(m.spec.label_names, ("neg", "pos"))
    self.assertEqual((m.count("train"), m.count("eval")), (60, 20))
    vocab = text.read_vocab(open(m.asset_path("vocab"), "rb").read())
    self.assertEqual(m.spec.vocab_size, len(vocab))
    self.assertLen(vocab, 25)
    self.assertEqual(manifest_lib.read(out).assets, {"vocab": "vocab.txt"})
    ids = {t: i for i, t in enumerate(vocab)}
    expected = [text.encode(text.tokenize(t), ids, 8) for _, t in lines]
    labels = [("neg", "pos").index(label) for label, _ in lines]
    got = []
    for split in ("train", "eval"):
      features, got_labels = test_data.read_split(m, split)
      self.assertEqual(features["tokens"].dtype, np.int64)
      got += test_data.example_keys(features["tokens"], got_labels)
    self.assertEqual(sorted(got), test_data.example_keys(np.stack(expected), labels))

  def test_eval_text_does_not_reach_the_vocabulary(self):
    # Each class has 4 lines; with eval_fraction=0.25 one line per class goes to eval.
    lines = [f"{c}\tcommon word{i}{c}" for c in "ab" for i in range(4)]
    path = self._file("\n".join(lines))
    src = registry.open_source("text", base.SourceOptions(input=path, eval_fraction=0.25))
    vocab = set(text.read_vocab(src.assets["vocab"][1]))
    eval_lines = [lines[i] for i in src.splits["eval"]]
    self.assertLen(eval_lines, 2)
    for line in eval_lines:
      self.assertNotIn(line.split()[-1], vocab)
    self.assertIn("common", vocab)

  @parameterized.named_parameters(
      ("no_tab", "pos\tgood\nneg bad\n", r"reviews.tsv:2: expected label<TAB>text, found no TAB"),
      ("empty_label", "pos\tgood\n\tbad\n", r"reviews.tsv:2: empty label before the TAB"),
      ("no_text", "pos\tgood\n\n\nneg\t  \n", r"reviews.tsv:4: no text after the TAB"),
      ("empty", "\n\n", r"empty source: .*reviews.tsv holds no label<TAB>text lines"),
      ("not_utf8", "pos\tgood\n", r"reviews.tsv:3: not UTF-8 text"),
  )
  def test_malformed_lines_are_named(self, content, message):
    path = self._file(content)
    if "not UTF-8" in message:
      open(path, "ab").write(b"neg\tbad\n\xff\xfe\n")
    with self.assertRaisesRegex(text.TextError, message):
      registry.open_source("text", base.SourceOptions(input=path, eval_fraction=0.0))

  def test_bad_options(self):
    path = self._file("a\tx\nb\ty\n")
    with self.assertRaisesRegex(text.TextError, "--max_length must be >= 1, got 0"):
      registry.open_source("text", base.SourceOptions(input=path, max_length=0))
    with self.assertRaisesRegex(text.TextError, "--max_vocab must be >= 3"):
      registry.open_source("text", base.SourceOptions(input=path, max_vocab=2))


if __name__ == "__main__":
  tf.test.main()
