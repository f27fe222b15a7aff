"""Every script, fed a bad file, flag or environment: a non-zero exit, one `error:` line naming
what is wrong and where, no traceback, and nothing lost (checkpoints, exports and the dataset
byte-identical before and after)."""

import hashlib
import json
import os
import random
import shutil
import tempfile

import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from tests.reliability import harness

# (case, script, args, extra env, regex the one `error:` line must match). {R} is the fixture
# root: R/digits (dataset), R/run (a trained dnn run), R/exports (its export), R/afile (a
# regular file), R/adir (an empty directory) and the broken inputs made in setUpClass.
_TRAIN = ["--data_dir={R}/digits", "--model_dir={R}/new_run", "--train_steps=5", "--export=false"]
CASES = [
    ("train: data_dir missing", "train",
     ["--data_dir={R}/nosuch", "--model_dir={R}/new_run", "--train_steps=5"], {},
     r"{R}/nosuch/manifest.json not found"),
    ("train: unknown model", "train", _TRAIN + ["--model=nosuch"], {},
     r"unknown model 'nosuch' \(--model\); known models: .*dnn"),
    ("train: unknown optimizer", "train", _TRAIN + ["--optimizer=nosuch"], {},
     r"--optimizer='nosuch' is unknown; known: .*adam"),
    ("train: malformed config JSON", "train", _TRAIN + ["--config={R}/bad.json"], {},
     r"config file {R}/bad.json is not valid JSON: .*line 1, column 2"),
    ("train: config JSON not an object", "train", _TRAIN + ["--config={R}/list.json"], {},
     r"config file {R}/list.json: expected a JSON object"),
    ("train: config file missing", "train", _TRAIN + ["--config={R}/missing.json"], {},
     r"config file {R}/missing.json does not exist"),
    ("train: config path is a directory", "train", _TRAIN + ["--config={R}/adir"], {},
     r"config file {R}/adir is a directory, expected a JSON file"),
    ("train: config holds a Python expression", "train", _TRAIN + ["--config={R}/expr.json"], {},
     r"config file {R}/expr.json \[optimization\]: .*learning_rate=.*expected float"),
    ("train: unknown hparam", "train", _TRAIN + ["--hparams=nosuch=1"], {},
     r"--hparams: unknown key\(s\) \['nosuch'\]"),
    ("train: hparam of the wrong type", "train", _TRAIN + ["--hparams=learning_rate=abc"], {},
     r"--hparams: .*learning_rate='abc': expected float"),
    ("train: TF_CONFIG not JSON", "train", _TRAIN, {"TF_CONFIG": "{bad"},
     r"TF_CONFIG is not valid JSON"),
    ("train: TF_CONFIG without a chief", "train", _TRAIN,
     {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                               "task": {"type": "worker", "index": 3}})},
     r"TF_CONFIG cluster has 0 chief task\(s\)"),
    ("train: model_dir holds another model", "train",
     ["--data_dir={R}/digits", "--model_dir={R}/run", "--model=lenet5", "--train_steps=50",
      "--export=false"], {},
     r"model_dir {R}/run holds checkpoints of a different architecture \(model 'dnn' -> 'lenet5'\)"),
    ("train: model_dir is a file", "train",
     ["--data_dir={R}/digits", "--model_dir={R}/afile", "--train_steps=5"], {},
     r"--model_dir {R}/afile is a file, expected a directory"),
    ("train: model_dir not writable (under a file)", "train",
     ["--data_dir={R}/digits", "--model_dir={R}/afile/run", "--train_steps=5"], {},
     r"{R}/afile is not a directory"),
    ("train: corrupted shard", "train",
     ["--data_dir={R}/corrupt", "--model_dir={R}/new_run", "--train_steps=5"], {},
     r"shard {R}/corrupt/train-00000-of-00002.tfrecord is corrupted: its sha256 differs"),
    ("evaluate: truncated shard", "evaluate",
     ["--model_dir={R}/run", "--data_dir={R}/trunc"], {},
     r"shard {R}/trunc/eval-00000-of-00002.tfrecord is 100 bytes, manifest says \d+"),
    ("evaluate: label out of range", "evaluate",
     ["--model_dir={R}/run", "--data_dir={R}/badlabel"], {},
     r"label is out of range \(labels must be < num_classes=10\)"),
    ("evaluate: wrong feature shape", "evaluate",
     ["--model_dir={R}/run", "--data_dir={R}/small"], {},
     r"{R}/small has a different feature spec from {R}/digits"),
    ("evaluate: model_dir not a run", "evaluate", ["--model_dir={R}/adir"], {},
     r"--model_dir {R}/adir has no config.json"),
    ("evaluate: checkpoint missing", "evaluate",
     ["--model_dir={R}/run", "--checkpoint={R}/run/model.ckpt-999"], {},
     r"checkpoint {R}/run/model.ckpt-999 does not exist"),
    ("predict: wrong feature shape", "predict",
     ["--model_dir={R}/run", "--data_dir={R}/small", "--output={R}/out/p.jsonl"], {},
     r"{R}/small has a different feature spec from {R}/digits"),
    ("predict: images folder missing", "predict",
     ["--model_dir={R}/run", "--images={R}/noimages", "--output={R}/out/p.jsonl"], {},
     r"--images {R}/noimages is not a folder"),
    ("predict: output not writable (under a file)", "predict",
     ["--model_dir={R}/run", "--output={R}/afile/p.jsonl"], {},
     r"{R}/afile is not a directory"),
    ("predict: output extension names no format", "predict",
     ["--model_dir={R}/run", "--output={R}/out/p.xml"], {},
     r"--output {R}/out/p.xml: expected a .jsonl or .csv file"),
    ("export: model_dir missing", "export", ["--model_dir={R}/nosuch_run"], {},
     r"--model_dir {R}/nosuch_run does not exist"),
    ("export: model_dir without checkpoints", "export",
     ["--model_dir={R}/adir", "--model=dnn", "--data_dir={R}/digits",
      "--export_base={R}/exports"], {},
     r"--model_dir '{R}/adir' holds no checkpoint"),
    ("export: export_base is a file", "export",
     ["--model_dir={R}/run", "--export_base={R}/afile"], {},
     r"{R}/afile is not a directory"),
    ("inspect_checkpoint: missing", "inspect_checkpoint", ["--checkpoint={R}/nosuch"], {},
     r"checkpoint {R}/nosuch does not exist"),
    ("inspect_checkpoint: not a checkpoint", "inspect_checkpoint", ["--checkpoint={R}/bad.json"],
     {}, r"{R}/bad.json is not a checkpoint"),
    ("report: run directory missing", "report", ["--runs={R}/nosuch", "--output={R}/c.png"], {},
     r"run directory {R}/nosuch does not exist"),
    ("report: output not writable (under a file)", "report",
     ["--runs={R}/run", "--output={R}/afile/c.png"], {}, r"{R}/afile is not a directory"),
    ("make_tfrecords: input missing", "make_tfrecords",
     ["--format=csv", "--input={R}/nosuch.csv", "--output_dir={R}/ds"], {},
     r"--input={R}/nosuch.csv: no such file"),
    ("make_tfrecords: empty dataset", "make_tfrecords",
     ["--format=csv", "--input={R}/header_only.csv", "--output_dir={R}/ds"], {},
     r"empty source: {R}/header_only.csv has a header but no data rows"),
    ("make_tfrecords: wrong shape", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--image_shape=8,8,1", "--output_dir={R}/ds"], {},
     r"{R}/c16.csv: --image_shape=8,8,1 needs 64 pixel columns, the file has 16"),
    ("make_tfrecords: csv ragged row", "make_tfrecords",
     ["--format=csv", "--input={R}/ragged.csv", "--output_dir={R}/ds"], {},
     r"{R}/ragged.csv:4: 2 fields, but the header has 3 \(ragged row\)"),
    ("make_tfrecords: csv label not in --label_map", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--label_map=c1=a,c2=b", "--output_dir={R}/ds"], {},
     r"{R}/c16.csv:2: column 'label': label 'c0' is not in --label_map \(it maps c1, c2\)"),
    ("make_tfrecords: csv column in --columns missing", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--columns=p100:skip", "--output_dir={R}/ds"], {},
     r"--columns: no column 'p100' in {R}/c16.csv; did you mean 'p10'"),
    ("make_tfrecords: csv malformed --schema", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--schema={R}/bad.json", "--output_dir={R}/ds"], {},
     r"--schema={R}/bad.json: not valid JSON \(line 1, column 2: "),
    ("make_tfrecords: csv table option with --image_shape", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--image_shape=4,4,1", "--missing=?",
      "--output_dir={R}/ds"], {},
     r"--missing does not apply to --format=csv with --image_shape"),
    ("make_tfrecords: corrupt IDX file", "make_tfrecords",
     ["--format=idx", "--images={R}/bad.json", "--labels={R}/bad.json", "--output_dir={R}/ds"],
     {}, r"{R}/bad.json: .*IDX"),
    ("make_tfrecords: text line without TAB", "make_tfrecords",
     ["--format=text", "--input={R}/notab.tsv", "--output_dir={R}/ds"], {},
     r"{R}/notab.tsv:1: expected label<TAB>text, found no TAB"),
    ("make_tfrecords: output dir under a file", "make_tfrecords",
     ["--format=digits", "--output_dir={R}/afile/ds"], {},
     r"cannot create output dir {R}/afile/ds: Not a directory"),
    ("make_tfrecords: output_dir holds another dataset", "make_tfrecords",
     ["--format=csv", "--input={R}/c16.csv", "--image_shape=4,4,1", "--output_dir={R}/digits"],
     {}, r"already holds a different dataset"),
]


def _fill(text: str, root: str) -> str:
  return text.replace("{R}", root)


def _rewrite_label(data_dir: str, split: str, index: int, label: int) -> None:
  """Sets one record's label and updates the manifest's size and sha256 of its shard, so only
  the label is wrong (the shard check passes)."""
  path = os.path.join(data_dir, "manifest.json")
  with open(path) as f:
    manifest = json.load(f)
  shard = manifest["splits"][split]["shards"][0]
  shard_path = os.path.join(data_dir, shard["name"])
  records = []
  for i, raw in enumerate(tf.data.TFRecordDataset(shard_path).as_numpy_iterator()):
    example = tf.train.Example.FromString(raw)
    if i == index:
      example.features.feature["label"].int64_list.value[:] = [label]
    records.append(example.SerializeToString())
  with tf.io.TFRecordWriter(shard_path) as w:
    for raw in records:
      w.write(raw)
  with open(shard_path, "rb") as f:
    data = f.read()
  shard["bytes"], shard["sha256"] = len(data), hashlib.sha256(data).hexdigest()
  with open(path, "w") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)


def _csv(path: str, pixels: int, rows: int, classes: int) -> None:
  rng = random.Random(0)
  lines = [",".join(f"p{i}" for i in range(pixels)) + ",label"]
  lines += [",".join(str(rng.randint(0, 16)) for _ in range(pixels)) + f",c{r % classes}"
            for r in range(rows)]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


class BadInputTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.table = harness.Table("bad input")
    cls.root = root = tempfile.mkdtemp(dir=absltest.TEST_TMPDIR.value)
    steps = [
        ("make_tfrecords", ["--format=digits", f"--output_dir={root}/digits", "--num_shards=2"]),
        ("train", [f"--data_dir={root}/digits", f"--model_dir={root}/run", "--model=dnn",
                   "--train_steps=20", "--save_checkpoints_steps=10", "--export=false"]),
        ("export", [f"--model_dir={root}/run", f"--export_base={root}/exports"]),
    ]
    for name, args in steps:
      result = harness.run_script(name, args)
      assert result.returncode == 0, result.stderr[-3000:]
    for name in ("corrupt", "trunc", "badlabel"):
      shutil.copytree(f"{root}/digits", f"{root}/{name}")
    shard = f"{root}/corrupt/train-00000-of-00002.tfrecord"
    with open(shard, "r+b") as f:
      f.seek(200)
      byte = f.read(1)
      f.seek(200)
      f.write(bytes([byte[0] ^ 0xFF]))
    os.truncate(f"{root}/trunc/eval-00000-of-00002.tfrecord", 100)
    _rewrite_label(f"{root}/badlabel", "eval", 3, 42)
    _csv(f"{root}/c16.csv", 16, 30, 3)
    _csv(f"{root}/header_only.csv", 64, 0, 1)
    result = harness.run_script("make_tfrecords", [
        "--format=csv", f"--input={root}/c16.csv", "--image_shape=4,4,1",
        f"--output_dir={root}/small", "--num_shards=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    files = {"bad.json": "{bad", "list.json": "[1]", "afile": "a regular file\n",
             "notab.tsv": "positive great film\n",
             "ragged.csv": "a,b,label\n1,2,x\n\n3,y\n",
             # A string that would create a file if anything evaluated it.
             "expr.json": json.dumps({"optimization": {
                 "learning_rate": f"__import__('os').system('touch {root}/pwned') or 0.1"}})}
    for name, text in files.items():
      with open(os.path.join(root, name), "w") as f:
        f.write(text)
    os.mkdir(f"{root}/adir")

  @classmethod
  def tearDownClass(cls):
    cls.table.write()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _protected(self):
    return {
        "run": harness.tree_hashes(f"{self.root}/run", skip=lambda r: not harness.checkpoint_files(r)),
        "exports": harness.tree_hashes(f"{self.root}/exports"),
        "digits": harness.tree_hashes(f"{self.root}/digits"),
        "adir": sorted(os.listdir(f"{self.root}/adir")),
        "afile": harness.tree_hashes(f"{self.root}/afile"),
    }

  @parameterized.named_parameters(
      (case.replace(":", "").replace(" ", "_").replace("(", "").replace(")", ""), case, script,
       args, env, regex)
      for case, script, args, env, regex in CASES)
  def test_case(self, case, script, args, env, regex):
    root = self.root
    before = self._protected()
    result = harness.run_script(script, [_fill(a, root) for a in args],
                                env=harness.child_env(**env), cwd=root)
    lines = harness.error_lines(result.stderr)
    shown = lines[-1].replace(root, "$R")[:160] if lines else "NO error: line"
    observed = f"exit {result.returncode}: {shown}"
    self.table.add(f"{script}: {case.split(': ', 1)[1]}", "exit 2, one `error:` line, "
                   "nothing changed", observed)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertLen(lines, 1, result.stderr[-3000:])
    self.assertEqual(result.stderr.strip().splitlines()[-1], lines[0])
    self.assertRegex(lines[0], "^error: .*" + _fill(regex, root))
    self.assertNotIn("Traceback", result.stderr)
    self.assertEqual(self._protected(), before)
    self.assertFalse(os.path.exists(f"{root}/pwned"), "a config value was executed")
    self.assertFalse(os.path.exists(f"{root}/ds"), "a failed conversion left a dataset dir")
    self.assertFalse(os.path.exists(f"{root}/new_run/checkpoint"))
    out = f"{root}/out"  # no temporary file of an atomic write left behind (.p.jsonl.<id>.tmp)
    self.assertEqual([n for n in (os.listdir(out) if os.path.isdir(out) else [])
                      if n.endswith(".tmp")], [], out)

  def test_there_are_at_least_25_cases_across_every_script(self):
    self.assertGreaterEqual(len(CASES), 25)
    self.assertEqual({c[1] for c in CASES}, {"train", "evaluate", "predict", "export",
                                             "inspect_checkpoint", "report", "make_tfrecords"})


if __name__ == "__main__":
  absltest.main()
