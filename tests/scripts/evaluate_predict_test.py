"""//scripts:evaluate and //scripts:predict libraries on a real (tiny) trained run."""

import csv
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from estimator_app import runner
from estimator_app.analysis import evaluation
from estimator_app.analysis import prediction
from estimator_app.checkpoints import info as checkpoint_info
from input_fns import errors
from input_fns import manifest as manifest_lib
from scripts import evaluate
from scripts import predict


class EvaluatePredictTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir() + "/evaluate_predict"
    data_dir = os.path.join(cls.root, "digits")
    estimator_lib.load_dataset(data_dir, create_default=True)
    cfg = config_lib.from_dict(
        {"model": "dnn", "data": {"data_dir": data_dir},
         "run": {"model_dir": os.path.join(cls.root, "run"), "train_steps": 80,
                 "save_checkpoints_steps": 40, "quick_eval_steps": 0, "keep_best": 1,
                 "export": False}}, "test")
    runner.train(cfg)
    cls.cfg = cfg

  def test_evaluate_writes_json_and_png_consistent_with_metrics(self):
    out = self.create_tempdir().full_path
    report, paths = evaluate.run(self.cfg.run.model_dir, "latest", None, "eval", None, out)
    m = manifest_lib.read(self.cfg.data.data_dir)
    cm = report.confusion_matrix
    self.assertEqual(cm.shape, (10, 10))
    self.assertEqual(cm.sum(), m.count("eval"))  # every eval example counted once
    self.assertAllClose(np.trace(cm) / cm.sum(), report.metrics["accuracy"], atol=1e-6)
    with open(paths["json"]) as f:
      saved = json.load(f)
    self.assertEqual(saved["confusion_matrix"], cm.tolist())
    with open(paths["png"], "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertIn("confusion matrix", evaluation.format_report(report))
    # Its TensorBoard summaries sit beside the report, not among the training's runs.
    self.assertEqual([d for d in os.listdir(self.cfg.run.model_dir) if "evaluate" in d], [])
    events = tf.io.gfile.glob(os.path.join(out, "eval", "events.out.tfevents.*"))
    self.assertLen(events, 1)
    accuracy = [v.simple_value for e in tf.compat.v1.train.summary_iterator(events[0])
                for v in e.summary.value if v.tag == "accuracy"]
    self.assertAllClose(accuracy, [report.metrics["accuracy"]])

  def test_evaluate_best_and_bad_checkpoint(self):
    report, _ = evaluate.run(self.cfg.run.model_dir, "best", None, "eval", None,
                             self.create_tempdir().full_path)
    self.assertIn("/best/", report.checkpoint)
    with self.assertRaisesRegex(errors.UserInputError, "does not exist"):
      checkpoint_info.resolve(self.cfg.run.model_dir, "/nonexistent/model.ckpt-5")
    with self.assertRaisesRegex(errors.UserInputError, "has no config.json"):
      evaluate.run(self.create_tempdir().full_path, "latest", None, "eval", None, None)

  def test_predict_records_matches_evaluation(self):
    out = os.path.join(self.create_tempdir().full_path, "p.jsonl")
    n, skipped = predict.run(self.cfg.run.model_dir, "latest", None, "eval", None, out, "")
    self.assertEqual(skipped, ())
    m = manifest_lib.read(self.cfg.data.data_dir)
    self.assertEqual(n, m.count("eval"))
    with open(out) as f:
      rows = [json.loads(line) for line in f]
    accuracy = np.mean([r["class_id"] == r["true_class_id"] for r in rows])
    report, _ = evaluate.run(self.cfg.run.model_dir, "latest", None, "eval", None,
                             self.create_tempdir().full_path)
    self.assertAllClose(accuracy, report.metrics["accuracy"], atol=1e-6)
    self.assertAllClose([sum(r["probabilities"]) for r in rows], np.ones(n), atol=1e-4)

  def test_predict_image_folder_to_csv(self):
    folder = self.create_tempdir().full_path
    images, labels = [], []
    d = manifest_lib.read(self.cfg.data.data_dir)
    for i, (values, label) in enumerate(_first_examples(d, 4)):
      path = os.path.join(folder, f"img{i}.png")
      Image.fromarray(values[..., 0]).save(path)
      images.append(path)
      labels.append(label)
    out = os.path.join(self.create_tempdir().full_path, "p.csv")
    with self.assertNoLogs(logger="absl", level="WARNING"):  # the PNGs fit: nothing to say
      self.assertEqual(predict.run(self.cfg.run.model_dir, "latest", None, "eval", folder, out,
                                   ""), (4, ()))
    with open(out) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r["source"] for r in rows], images)
    # The PNGs hold exactly the first eval records' pixels (in shard order, which predict
    # keeps): their predictions must match the records'.
    rec_out = os.path.join(self.create_tempdir().full_path, "r.jsonl")
    predict.run(self.cfg.run.model_dir, "latest", None, "eval", None, rec_out, "")
    with open(rec_out) as f:
      rec_rows = [json.loads(line) for line in f][:4]
    self.assertEqual([int(r["class_id"]) for r in rows], [r["class_id"] for r in rec_rows])
    self.assertEqual(set(rows[0]), {"source", "class_id", "label_name", "probability"} |
                     {f"p_{i}" for i in range(10)})

  def test_images_made_to_fit_get_one_warning_and_unreadable_ones_are_skipped_on_request(self):
    folder = self.create_tempdir().full_path
    rgb = [os.path.join(folder, f"rgb{i}.png") for i in range(2)]
    for path in rgb:
      Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path)
    fits = os.path.join(folder, "fits.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(fits)
    bad = os.path.join(folder, "bad.png")
    with open(bad, "wb") as f:
      f.write(b"\x89PNG not really")
    out = os.path.join(self.create_tempdir().full_path, "p.jsonl")

    with self.assertRaisesRegex(errors.UserInputError, f"^{bad}: unreadable image"):
      predict.run(self.cfg.run.model_dir, "latest", None, "eval", folder, out, "")
    self.assertFalse(os.path.exists(out))
    with self.assertLogs(logger="absl", level="WARNING") as logs:
      n, skipped = predict.run(self.cfg.run.model_dir, "latest", None, "eval", folder, out, "",
                               skip_unreadable=True)

    self.assertEqual([r.getMessage() for r in logs.records
                      if r.getMessage().startswith("--images")],
                     ["--images: resized 2 of 3 images to the model's 8x8 (HxW) from 16x16 (2); "
                      "converted 2 of 3 images to grey (L) from RGB (2)"])
    self.assertEqual(n, 3)
    with open(out) as f:
      self.assertEqual([json.loads(line)["source"] for line in f], [fits] + rgb)
    self.assertEqual([path for path, _ in skipped], [bad])
    self.assertRegex(prediction.format_skipped(skipped),
                     f"^skipped 1 unreadable image:\n  {bad}: unreadable image \\(.*\\)$")

  def test_skipped_images_are_listed_one_per_line_then_counted(self):
    skipped = [(f"/in/{i}.png", f"/in/{i}.png: unreadable image") for i in range(12)]
    text = prediction.format_skipped(skipped)
    self.assertEqual(text.splitlines(),
                     ["skipped 12 unreadable images:"] +
                     [f"  /in/{i}.png: unreadable image" for i in range(10)] +
                     ["  ... and 2 more"])
    self.assertEqual(prediction.format_skipped(()), "")
    spec = manifest_lib.read(self.cfg.data.data_dir).spec
    with self.assertRaisesRegex(errors.UserInputError,
                                r"^--images: none of the 1 images can be read \(first: .*x.png"):
      prediction.load_images(spec, [self.create_tempfile("x.png", "junk").full_path],
                             skip_unreadable=True)


def _first_examples(m, n):
  ds = tf.data.TFRecordDataset(m.files("eval")[0]).take(n).batch(n)
  features, labels = m.spec.parse_batch(next(iter(ds)))
  return list(zip(features["image"].numpy(), labels.numpy()))


if __name__ == "__main__":
  tf.test.main()
