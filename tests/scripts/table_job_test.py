"""Tables end to end as a user runs them: a CSV converted, trained, exported, served raw.

Two jobs: a census-like binary table (strings with stray whitespace, "?" and "NA" as missing,
a label renamed with --label_map) through `wide_deep`, and scikit-learn's diabetes regression
set through `dnn`. Each export is then loaded in a fresh process, as TF Serving would, and asked
through every signature of its kind, with raw strings, an unseen category and a missing value.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from estimator_app import config as config_lib
from estimator_app import runner
from estimator_app.serving import export
from input_fns import feature_spec as fs
from input_fns.formats import base
from tests.testing import data as data_lib

_WORK = ("Private", "Self-emp", "Gov", "Never-worked")
_EDUCATION = ("HS-grad", "Some-college", "Bachelors", "Masters", "Doctorate")

# Runs in a fresh process: loads the export and answers one JSON request per signature.
_CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf
export_dir, requests = sys.argv[1], json.loads(sys.argv[2])
model = tf.saved_model.load(export_dir)
answers = {}
for name, inputs in requests.items():
  fn = model.signatures[name]
  if name == "serving_default":
    feed = {}
    for key, spec in fn.structured_input_signature[1].items():
      feed[key] = tf.constant(np.asarray(inputs[key], dtype=spec.dtype.as_numpy_dtype))
  else:
    feed = {k: tf.constant([bytes.fromhex(x) for x in v]) for k, v in inputs.items()}
  out = fn(**feed)
  answers[name] = {k: v.numpy().tolist() if v.dtype != tf.string else
                   [[c.decode() for c in row] for row in v.numpy()] for k, v in out.items()}
print(json.dumps(answers))
"""


def _write_census(path: str, n: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["age", "workclass", "education", "hours_per_week", "income"])
    for _ in range(n):
      age, work = int(rng.integers(17, 90)), str(rng.choice(_WORK, p=[0.7, 0.12, 0.15, 0.03]))
      edu, hours = int(rng.integers(0, 5)), float(rng.normal(40, 10))
      score = 0.05 * (age - 50) + 0.8 * (edu - 2) + 0.04 * (hours - 40) + (work == "Self-emp")
      row = [age, f" {work} ", _EDUCATION[edu], f"{hours:.1f}",
             ">50K" if score + rng.normal(0, 0.5) > 0 else "<=50K"]
      if rng.random() < 0.05:
        row[1] = "?"
      if rng.random() < 0.03:
        row[3] = "NA"
      w.writerow(row)


def _train(data_dir: str, model_dir: str, model: str, steps: int):
  cfg = config_lib.from_layers([({
      "model": model,
      "data": {"data_dir": data_dir, "batch_size": 32, "eval_batch_size": 64},
      "run": {"model_dir": model_dir, "train_steps": steps, "save_checkpoints_steps": steps,
              "quick_eval_steps": 0, "log_every_steps": steps},
  }, "test")])
  return runner.train(cfg)


def _example(spec: fs.FeatureSpec, values) -> str:
  """A serialized tf.Example of raw column values (absent keys left out), hex for JSON."""
  feats = {}
  for f in spec.features:
    if f.name not in values:
      continue
    v = values[f.name]
    if f.dtype == "string":
      feats[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
    else:
      feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString().hex()


def _ask(export_dir: str, requests):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CONFIG",))}
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  proc = subprocess.run([sys.executable, "-c", _CHILD, export_dir, json.dumps(requests)],
                        env=env, capture_output=True, text=True, timeout=300, check=False)
  if proc.returncode != 0:
    raise AssertionError(proc.stderr[-3000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


class TableJobTest(tf.test.TestCase):

  def test_census_csv_to_wide_deep_to_raw_string_requests(self):
    root = self.create_tempdir().full_path
    _write_census(os.path.join(root, "adult.csv"), 1500, seed=0)
    m = data_lib.convert("csv", base.SourceOptions(
        input=os.path.join(root, "adult.csv"), label_column="income", missing=("NA", "?"),
        label_map=("<=50K=no", ">50K=yes")), os.path.join(root, "adult"))
    spec = m.spec
    self.assertEqual((spec.kind, spec.label_kind, spec.label_names),
                     (fs.TABLE, fs.BINARY, ("no", "yes")))
    roles = {f.name: f.role for f in spec.features}
    self.assertEqual(roles, {"age": fs.NUMERIC, "workclass": fs.CATEGORICAL,
                             "education": fs.CATEGORICAL, "hours_per_week": fs.NUMERIC})
    result = _train(m.directory, os.path.join(root, "run"), "wide_deep", 300)
    self.assertGreater(result.primary["auc"], 0.8)
    final = result.exports[runner.FINAL_EXPORT]
    with open(os.path.join(final, "assets.extra", export.METADATA_FILE)) as f:
      self.assertEqual(set(json.load(f)["signatures"]), set(export.signatures_for(spec)))

    rows = [{"age": 45.0, "workclass": "Self-emp", "education": "Masters",
             "hours_per_week": 50.0},
            {"age": 30.0, "workclass": "Astronaut", "education": "HS-grad",  # unseen category
             "hours_per_week": 20.0},
            {"age": 60.0, "education": "Doctorate", "hours_per_week": 40.0}]  # no workclass
    raw = {f.name: [[r.get(f.name, f.missing_value if f.dtype != "string" else "")]
                    for r in rows] for f in spec.features}
    answers = _ask(final, {
        "serving_default": raw,
        "classification": {"inputs": [_example(spec, r) for r in rows]}})
    probabilities = np.array(answers["serving_default"]["probabilities"])
    scores = np.array(answers["classification"]["scores"])
    self.assertEqual(probabilities.shape, (3, 2))
    self.assertTrue(np.isfinite(probabilities).all())
    self.assertAllClose(scores, probabilities, atol=1e-5)  # same model through both doors
    self.assertEqual(answers["classification"]["classes"], [["no", "yes"]] * 3)
    self.assertGreater(probabilities[0, 1], probabilities[1, 1])  # learned, not constant

  def test_diabetes_regression_through_the_regress_signature(self):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    root = self.create_tempdir().full_path
    d = datasets.load_diabetes()
    names = list(d.feature_names)
    path = os.path.join(root, "diabetes.csv")
    with open(path, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(names + ["progression"])
      for x, y in zip(d.data, d.target):
        w.writerow([f"{v:.6f}" for v in x] + [f"{y:.1f}"])
    m = data_lib.convert("csv", base.SourceOptions(input=path, label_column="progression"),
                         os.path.join(root, "diabetes"))
    self.assertEqual(m.spec.label_kind, fs.REGRESSION)
    result = _train(m.directory, os.path.join(root, "run"), "dnn", 800)
    std = float(np.std(d.target))
    self.assertLess(result.primary["rmse"], 0.9 * std)  # better than predicting the mean
    final = result.exports[runner.FINAL_EXPORT]
    self.assertEqual(export.signatures_for(m.spec),
                     ("serving_default", "regression", "predict_examples"))
    rows = [dict(zip(names, map(float, x))) for x in d.data[:4]]
    del rows[3]["bmi"]  # a missing value: the train mean stands in
    raw = {f.name: [[r.get(f.name, float("nan"))] for r in rows] for f in m.spec.features}
    answers = _ask(final, {"serving_default": raw,
                           "regression": {"inputs": [_example(m.spec, r) for r in rows]}})
    predictions = np.array(answers["serving_default"]["predictions"])[:, 0]
    regressed = np.array(answers["regression"]["outputs"])
    self.assertEqual(regressed.shape, (4,))
    self.assertTrue(np.isfinite(predictions).all())
    self.assertAllClose(regressed, predictions, rtol=1e-5, atol=1e-3)


if __name__ == "__main__":
  tf.test.main()
