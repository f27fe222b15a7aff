"""tensorboard_logs: a real TensorBoard shows each run's hparams with its eval metrics and the
confusion matrix of every full evaluation.

Two tiny runs train with the project's model_fn (so their evaluations report every metric of
model_fns/metrics.py) under train_and_evaluate with ConfusionMatrixImage as an EvalSpec
exporter, after write_hparams as the runner calls it. TensorBoard then runs in this process on
127.0.0.1 (port 0: a free one), loading the logdir once before it serves, and is read back
through its HTTP API: the HParams plugin's experiment and session groups, the Images plugin's
tags, series and image bytes, and the scalar tags of the eval runs.
"""

import dataclasses
import io
import json
import os
import threading
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorboard import program

from estimator_app import config as config_lib
from estimator_app.analysis import tensorboard_logs
from model_fns import model_fn as model_fn_lib
from tests.testing import tiny_model

_SPEC = tiny_model.SPEC  # 3 classes: ant, bee, cat
_METRICS = ("accuracy", "average_loss")
_TRAIN_STEPS = 10
_CHECKPOINT_STEPS = 5
_EVAL_EXAMPLES = 24
# plots.confusion_matrix_png's figure for 3 classes: (5 + 1.2) x 5 inches at 110 dpi.
_IMAGE_SIZE = (682, 550)
_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
# Loopback must never go through an HTTP proxy the environment may set.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _config(model_dir: str, learning_rate: float, batch_size: int) -> config_lib.ExperimentConfig:
  return config_lib.ExperimentConfig(
      model="dnn",
      optimization=dataclasses.replace(config_lib.DEFAULT_OPTIMIZATION,
                                       learning_rate=learning_rate, lr_schedule="constant"),
      data=config_lib.DataConfig(batch_size=batch_size),
      run=config_lib.RunSettings(model_dir=model_dir, train_steps=_TRAIN_STEPS,
                                 save_checkpoints_steps=_CHECKPOINT_STEPS))


def _train(cfg: config_lib.ExperimentConfig):
  """What the runner does with one run, on the tiny model; returns the last eval result."""
  tensorboard_logs.write_hparams(cfg.run.model_dir,
                                 tensorboard_logs.flatten_hparams(cfg.to_json_dict()), _METRICS)
  features, labels = tiny_model.batch(_SPEC, _EVAL_EXAMPLES)

  def train_input_fn():
    return tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(
        cfg.data.batch_size)

  def eval_input_fn():
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)

  estimator = tf.estimator.Estimator(
      model_fn_lib.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(), _SPEC,
                                  cfg.train_config),
      config=tf.estimator.RunConfig(
          model_dir=cfg.run.model_dir, tf_random_seed=cfg.run.seed,
          save_checkpoints_steps=cfg.run.save_checkpoints_steps, save_summary_steps=5,
          log_step_count_steps=None))
  images = tensorboard_logs.ConfusionMatrixImage(_SPEC.label_names)
  result, _ = tf.estimator.train_and_evaluate(
      estimator, tf.estimator.TrainSpec(train_input_fn, max_steps=cfg.run.train_steps),
      tf.estimator.EvalSpec(eval_input_fn, steps=None, start_delay_secs=0, throttle_secs=0,
                            exporters=[images]))
  images.wait()  # the drawing runs beside training
  return result


class FlattenAndValidateTest(tf.test.TestCase):

  def test_flatten_gives_scalars_named_by_section_and_lists_as_hparams_text(self):
    flat = tensorboard_logs.flatten_hparams(config_lib.ExperimentConfig(model="dnn").to_json_dict())
    self.assertEqual(flat["model"], "dnn")
    self.assertEqual(flat["hparams.hidden_units"], "[128,64]")
    self.assertEqual(flat["optimization.boundaries"], "[]")
    self.assertEqual(flat["optimization.learning_rate"], 3e-3)
    self.assertEqual(flat["data.batch_size"], 64)
    self.assertIs(flat["data.cache"], False)
    self.assertEqual(flat["run.train_steps"], 2000)
    self.assertEqual(flat["distribution.strategy"], "default")
    self.assertEqual({type(v) for v in flat.values()}, {str, int, float, bool})
    self.assertEqual(tensorboard_logs.flatten_hparams(
        {"a": {"b": None, "c": (True, 0.5)}, "d": np.int64(3)}),
        {"a.b": "none", "a.c": "[true,0.5]", "d": 3})

  def test_flatten_and_write_reject_values_the_plugin_cannot_show(self):
    with self.assertRaisesRegex(TypeError, r"hparam x\.y=\[\[1\]\]"):
      tensorboard_logs.flatten_hparams({"x": {"y": [[1]]}})
    logdir = self.create_tempdir().full_path
    with self.assertRaisesRegex(TypeError, r"'units': \[1, 2\]"):
      tensorboard_logs.write_hparams(logdir, {"units": [1, 2]}, _METRICS)
    with self.assertRaisesRegex(ValueError, "no hparams"):
      tensorboard_logs.write_hparams(logdir, {}, _METRICS)

  def test_exporter_names_what_the_eval_result_lacks(self):
    with self.assertRaisesRegex(ValueError, "needs the label names"):
      tensorboard_logs.ConfusionMatrixImage([])
    exporter = tensorboard_logs.ConfusionMatrixImage(["a", "b"])
    self.assertEqual(exporter.name, "confusion_matrix_image")
    with self.assertRaisesRegex(ValueError, r"no confusion_matrix \(it has accuracy, global_step"):
      exporter.export(None, "", "", {"accuracy": 1.0, "global_step": 3}, False)
    with self.assertRaisesRegex(ValueError, r"confusion matrix is \(3, 3\), expected 2x2"):
      exporter.export(None, "", "", {"confusion_matrix": np.eye(3), "global_step": 3}, False)


class TensorBoardTest(tf.test.TestCase):

  def _start_tensorboard(self, logdir: str) -> str:
    """Serves logdir on 127.0.0.1 after loading it once; returns the base URL. Always stopped."""
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", "0",
                       "--load_fast=false", "--reload_interval=0", "--reload_task=blocking"])
    # launch() would do this in a thread too, but keeps no handle to stop the server.
    server = tb._make_server()  # pylint: disable=protected-access
    serving = threading.Thread(target=server.serve_forever, name="TensorBoard", daemon=True)
    serving.start()
    self.addCleanup(serving.join, 10)
    self.addCleanup(server.server_close)
    self.addCleanup(server.shutdown)
    url = server.get_url().rstrip("/")
    self.assertStartsWith(url, "http://127.0.0.1:")
    return url

  def _get(self, url: str, body=None):
    request = urllib.request.Request(url)
    if body is not None:  # a POST; as form data (urllib's default type) the plugin sees none
      request.data = json.dumps(body).encode("utf-8")
      request.add_header("Content-Type", "application/json")
    with _OPENER.open(request, timeout=30) as response:
      return response.read()

  def _json(self, url: str, body=None):
    return json.loads(self._get(url, body).decode("utf-8"))

  def test_hparams_tab_and_confusion_matrix_images_of_two_runs(self):
    logdir = self.create_tempdir("runs").full_path
    configs = {"fast": _config(os.path.join(logdir, "fast"), learning_rate=0.1, batch_size=8),
               "slow": _config(os.path.join(logdir, "slow"), learning_rate=0.003,
                               batch_size=4)}
    results = {name: _train(cfg) for name, cfg in configs.items()}
    # The runs must differ for the per-run checks below to tell them apart.
    self.assertNotAlmostEqual(results["fast"]["average_loss"], results["slow"]["average_loss"],
                              places=4)
    base = self._start_tensorboard(logdir)

    # The experiment: every flattened config field as a column, the two eval metrics.
    experiment = self._json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    flat = {name: tensorboard_logs.flatten_hparams(cfg.to_json_dict())
            for name, cfg in configs.items()}
    self.assertEqual([h["name"] for h in experiment["hparamInfos"]], sorted(flat["fast"]))
    types = {h["name"]: h["type"] for h in experiment["hparamInfos"]}
    self.assertEqual((types["optimization.learning_rate"], types["model"], types["data.cache"]),
                     ("DATA_TYPE_FLOAT64", "DATA_TYPE_STRING", "DATA_TYPE_BOOL"))
    self.assertEqual([m["name"] for m in experiment["metricInfos"]],
                     [{"group": "eval", "tag": "accuracy"},
                      {"group": "eval", "tag": "average_loss"}])

    # One session group per run: its own hparam values and its own final eval metrics.
    groups = self._json(f"{base}/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": _STATUSES, "startIndex": 0, "sliceSize": 10,
        "aggregationType": "AGGREGATION_AVG",
        "colParams": [{"hparam": "optimization.learning_rate", "order": "ORDER_DESC"}]})
    self.assertEqual(groups["totalSize"], 2)
    self.assertEqual([g["name"] for g in groups["sessionGroups"]], ["fast", "slow"])
    for group in groups["sessionGroups"]:
      name, result = group["name"], results[group["name"]]
      with self.subTest(run=name):
        self.assertEqual(group["hparams"], flat[name])
        self.assertEqual([s["name"] for s in group["sessions"]], [name])
        values = {m["name"]["tag"]: m for m in group["sessions"][0]["metricValues"]}
        self.assertCountEqual(values, _METRICS)
        for tag in _METRICS:
          self.assertAllClose(values[tag]["value"], result[tag], rtol=1e-6)
          self.assertEqual(values[tag]["trainingStep"], _TRAIN_STEPS)
          self.assertEqual(values[tag]["name"]["group"], "eval")

    # The per-class scalars fold into one "per_class" group of each eval run.
    scalar_tags = self._json(f"{base}/data/plugin/scalars/tags")
    eval_tags = scalar_tags["fast/eval"]
    self.assertEqual({t.split("/")[0] for t in eval_tags},
                     {"accuracy", "average_loss", "loss", "top_2_accuracy", "per_class"})
    self.assertCountEqual([t for t in eval_tags if t.startswith("per_class/")],
                          [f"per_class/{m}_{c}" for m in ("precision", "recall")
                           for c in ("ant", "bee", "cat")])

    # Images: the confusion matrix of every full evaluation, in the eval runs (the training
    # runs have the model_fn's input images).
    image_tags = self._json(f"{base}/data/plugin/images/tags")
    self.assertEqual({run: list(tags) for run, tags in image_tags.items()
                      if "confusion_matrix/image" in tags or run.endswith("eval")},
                     {"fast/eval": ["confusion_matrix/image"],
                      "slow/eval": ["confusion_matrix/image"]})
    eval_steps = [p[1] for p in self._json(
        f"{base}/data/plugin/scalars/scalars?run=slow%2Feval&tag=accuracy")]
    self.assertEqual(eval_steps, [_CHECKPOINT_STEPS, _TRAIN_STEPS])  # every full evaluation
    query = urllib.parse.urlencode({"run": "slow/eval", "tag": "confusion_matrix/image",
                                    "sample": 0})
    images = self._json(f"{base}/data/plugin/images/images?{query}")
    self.assertEqual([i["step"] for i in images], eval_steps)
    final = images[-1]
    png = self._get(f"{base}/data/plugin/images/individualImage?{final['query']}")
    decoded = Image.open(io.BytesIO(png))
    self.assertEqual((decoded.format, decoded.size), ("PNG", _IMAGE_SIZE))
    # The very picture of this run's last confusion matrix (24 examples), not another's.
    matrix = results["slow"]["confusion_matrix"]
    self.assertEqual(int(matrix.sum()), _EVAL_EXAMPLES)
    self.assertEqual(png, tensorboard_logs.confusion_matrix_png(matrix, _SPEC.label_names,
                                                                _TRAIN_STEPS))
    if not np.array_equal(results["fast"]["confusion_matrix"], matrix):
      self.assertNotEqual(png, tensorboard_logs.confusion_matrix_png(
          results["fast"]["confusion_matrix"], _SPEC.label_names, _TRAIN_STEPS))


if __name__ == "__main__":
  tf.test.main()
