"""Text classification files: one example per line, `label<TAB>text`.

Text is tokenized by `tokenize` (lower-cased words and single punctuation marks). The
vocabulary is built from the TRAIN split only, so eval text never leaks into it: tokens sorted
by falling count, then alphabetically, cut to --max_vocab entries including id 0 = <pad> and
id 1 = <unk>. It is written beside the shards as vocab.txt (line i holds the token of id i) and
named in the manifest's assets. Each example is its first --max_length token ids, padded with
0 (kind TOKENS, feature "tokens"). Blank lines are skipped; a line without a TAB, without a
label or without text is an error naming the line.
"""

import collections
import hashlib
import re
from typing import Dict, List, Sequence

import numpy as np

from input_fns import feature_spec as fs
from input_fns import splits as splits_lib
from input_fns.formats import base

NAME = "text"
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_FILE = "vocab.txt"
VOCAB_ASSET = "vocab"

_TOKEN = re.compile(r"\w+|[^\w\s]")


class TextError(base.SourceError):
  """A text file is malformed; the message names the file and line."""


def tokenize(text: str) -> List[str]:
  """Lower-cased words (runs of letters, digits, _) and single punctuation marks."""
  return _TOKEN.findall(text.lower())


def build_vocab(token_lists: Sequence[Sequence[str]], max_vocab: int) -> List[str]:
  """<pad>, <unk>, then the most frequent tokens (ties alphabetical), max_vocab in all."""
  counts = collections.Counter(t for tokens in token_lists for t in tokens)
  ranked = sorted(counts, key=lambda t: (-counts[t], t))
  return [PAD, UNK] + ranked[:max_vocab - 2]


def encode(tokens: Sequence[str], ids: Dict[str, int], max_length: int) -> np.ndarray:
  """Token ids [max_length]: unknown tokens -> UNK_ID, truncated, padded with PAD_ID."""
  out = np.full(max_length, PAD_ID, dtype=np.int64)
  row = [ids.get(t, UNK_ID) for t in tokens[:max_length]]
  out[:len(row)] = row
  return out


def open_source(opts: base.SourceOptions) -> base.Source:
  """Reads the whole --input file, builds the vocabulary and encodes every line.

  Raises:
    TextError / SourceError / SplitError: missing file, a line that is not label<TAB>text,
      no examples, fewer than 2 classes, bad --max_length / --max_vocab.
  """
  path = opts.input
  if opts.max_length < 1:
    raise TextError(f"--max_length must be >= 1, got {opts.max_length}")
  if opts.max_vocab < 3:
    raise TextError(f"--max_vocab must be >= 3 (<pad>, <unk> and one token), got {opts.max_vocab}")
  raw = base.read_input(path, "input")
  label_strings, token_lists, lines = [], [], []
  for number, line in enumerate(raw.split(b"\n"), start=1):
    try:
      line = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as e:
      raise TextError(f"{path}:{number}: not UTF-8 text (byte {e.start})") from None
    if not line.strip():
      continue
    label, tab, text = line.partition("\t")
    if not tab:
      raise TextError(f"{path}:{number}: expected label<TAB>text, found no TAB")
    if not label.strip():
      raise TextError(f"{path}:{number}: empty label before the TAB")
    tokens = tokenize(text)
    if not tokens:
      raise TextError(f"{path}:{number}: no text after the TAB")
    label_strings.append(label.strip())
    token_lists.append(tokens)
    lines.append(number)
  if not lines:
    raise TextError(f"empty source: {path} holds no label<TAB>text lines")
  names = base.label_names(label_strings)
  base.require_classes(names, path)
  index = {name: i for i, name in enumerate(names)}
  labels = np.array([index[s] for s in label_strings], dtype=np.int64)
  split_indices = splits_lib.split_indices(labels, opts.resolved_eval_fraction, opts.seed,
                                           source=path)
  vocab = build_vocab([token_lists[i] for i in split_indices[splits_lib.TRAIN]], opts.max_vocab)
  ids = {t: i for i, t in enumerate(vocab)}
  tokens = np.stack([encode(t, ids, opts.max_length) for t in token_lists])
  spec = fs.token_spec(opts.max_length, len(vocab), names)
  vocab_bytes = ("\n".join(vocab) + "\n").encode("utf-8")
  description = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=True),
                 "vocab_size": len(vocab), "counts": {k: len(v) for k, v in split_indices.items()},
                 "truncated": int(sum(len(t) > opts.max_length for t in token_lists))}
  identity = {"format": NAME, **base.options_used(FORMAT, opts, with_paths=False),
              "content_sha256": hashlib.sha256(raw).hexdigest()}
  return base.ArraySource(spec, {"tokens": tokens}, labels, split_indices, description, identity,
                          assets={VOCAB_ASSET: (VOCAB_FILE, vocab_bytes)},
                          record_name=lambda i: f"{path} line {lines[i]}")


def read_vocab(data: bytes) -> List[str]:
  """Parses a vocab.txt written by this format (line i = token of id i)."""
  return data.decode("utf-8").split("\n")[:-1]


FORMAT = base.Format(
    name=NAME, open=open_source,
    options=("input", "max_length", "max_vocab", "eval_fraction", "seed"),
    summary="label<TAB>text lines; vocabulary from the train split written as vocab.txt "
            "(--input, --max_length, --max_vocab)")
