"""Warm-up records: TF Serving PredictionLogs, one request per signature, that really run."""

import os
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from tensorflow_serving.apis import prediction_log_pb2

from estimator_app.serving import export
from estimator_app.serving import validation as serving_validation
from estimator_app.serving import warmup
from input_fns import digits
from input_fns import feature_spec as fs
from tests.testing import serving as test_serving


class HelpersTest(tf.test.TestCase):

  def test_strip_labels_and_parse_features_decode_what_the_writer_encoded(self):
    images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8, 1) % 17
    records = [digits.SPEC.encode({"image": images[i]}, label=i + 3) for i in range(2)]
    stripped = warmup.strip_labels(records)
    for r in stripped:
      self.assertNotIn("label", tf.train.Example.FromString(r).features.feature)
    raw = warmup.parse_features(digits.SPEC, stripped)
    self.assertEqual(raw["image"].dtype, np.uint8)
    self.assertAllEqual(raw["image"], images)

  def test_table_records_decode_as_a_client_sends_them_weights_stripped(self):
    spec = fs.table_spec(
        [fs.numeric_column("age"), fs.categorical_column("color"),
         fs.categorical_column("tags", multivalent=True, max_values=3), fs.text_column("note")],
        label_kind=fs.REGRESSION, weight_key="w")
    rows = [{"age": 3.0, "color": "red", "tags": ["a", "b"], "note": "hi", fs.WEIGHT_KEY: 2.0},
            {"age": None, "color": None, "tags": [], "note": None}]
    stripped = warmup.strip_labels([spec.encode(r, label=1.5) for r in rows])
    for r in stripped:
      self.assertNotIn(fs.LABEL_KEY, tf.train.Example.FromString(r).features.feature)
      self.assertNotIn(fs.WEIGHT_KEY, tf.train.Example.FromString(r).features.feature)
    raw = warmup.parse_features(spec, stripped)
    self.assertEqual(raw["age"][0, 0], 3.0)
    self.assertTrue(np.isnan(raw["age"][1, 0]))
    self.assertAllEqual(raw["color"], [[b"red"], [b""]])
    # Padded to the column's max_values with the missing value.
    self.assertAllEqual(raw["tags"], [[b"a", b"b", b""], [b"", b"", b""]])
    self.assertAllEqual(raw["note"], [[b"hi"], [b""]])
    # A batch where no row has a tag still makes a request of the column's width.
    empty = warmup.parse_features(spec, stripped[1:])["tags"]
    self.assertEqual(empty.shape, (1, 3))
    logs = warmup.build_requests(spec, stripped[1:], "m", raw_signature="serving_default",
                                 regress_signature="regression",
                                 examples_signature="predict_examples",
                                 examples_input_key="examples")
    self.assertEqual([log.WhichOneof("log_type") for log in logs],
                     ["predict_log", "regress_log", "predict_log"])
    self.assertEqual([warmup.signature_of(log) for log in logs],
                     ["serving_default", "regression", "predict_examples"])
    tags = logs[0].predict_log.request.inputs["tags"]
    self.assertEqual((tags.dtype, tf.make_ndarray(tags).shape),
                     (tf.string.as_datatype_enum, (1, 3)))
    self.assertLen(logs[1].regress_log.request.input.example_list.examples, 1)

  def test_needs_examples(self):
    with self.assertRaisesRegex(ValueError, "at least one example"):
      warmup.build_requests(digits.SPEC, [], "m", raw_signature="a", classify_signature="b",
                            examples_signature="c", examples_input_key="examples")

  def test_read_without_file_is_empty(self):
    self.assertEqual(warmup.read(self.create_tempdir().full_path), [])


class ExportWarmupTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.m = test_serving.write_digits(os.path.join(root, "data"))
    cls.model = test_serving.serving_model("dnn", cls.m)
    _, ckpt = test_serving.train(cls.model, cls.m, os.path.join(root, "dnn"), steps=20)
    cls.examples = export.read_examples(cls.m, "eval", 8)
    cls.export_dir = export.export_version(
        os.path.join(root, "exports", "digits"), cls.model, ckpt, cls.examples,
        export.ExportOptions(model_name="digits", warmup_examples=3, validate_examples=0)).export_dir

  def test_file_parses_with_serving_protos_one_request_per_signature(self):
    path = os.path.join(self.export_dir, "assets.extra", "tf_serving_warmup_requests")
    self.assertTrue(os.path.exists(path))
    logs = [prediction_log_pb2.PredictionLog.FromString(r)
            for r in tf.compat.v1.io.tf_record_iterator(path)]
    self.assertLen(logs, 3)
    self.assertEqual([warmup.signature_of(log) for log in logs],
                     ["serving_default", "classification", "predict_examples"])
    self.assertEqual([log.WhichOneof("log_type") for log in logs],
                     ["predict_log", "classify_log", "predict_log"])
    for log in logs:
      self.assertEqual(getattr(log, log.WhichOneof("log_type")).request.model_spec.name, "digits")

    raw = logs[0].predict_log.request.inputs
    self.assertEqual(list(raw), ["image"])
    image = tf.make_ndarray(raw["image"])
    self.assertEqual((image.dtype, image.shape), (np.uint8, (3, 8, 8, 1)))
    self.assertAllEqual(image, warmup.parse_features(self.m.spec, self.examples[:3])["image"])

    examples = logs[1].classify_log.request.input.example_list.examples
    self.assertLen(examples, 3)
    self.assertNotIn("label", examples[0].features.feature)  # clients send no labels
    serialized = tf.make_ndarray(logs[2].predict_log.request.inputs["examples"])
    self.assertEqual(serialized.shape, (3,))
    self.assertEqual(list(serialized), warmup.strip_labels(self.examples[:3]))

  def test_every_request_runs_against_the_export_and_they_agree(self):
    logs = warmup.read(self.export_dir)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], self.export_dir)
      replays = [serving_validation.replay_warmup(sess, meta, log) for log in logs]
      sig = meta.signature_def
      probs = sess.run(sig["serving_default"].outputs["probabilities"].name, {
          sig["serving_default"].inputs["image"].name:
              tf.make_ndarray(logs[0].predict_log.request.inputs["image"])})
      scores = sess.run(sig["classification"].outputs["scores"].name, {
          sig["classification"].inputs["inputs"].name:
              [e.SerializeToString() for e in logs[1].classify_log.request.input.example_list.examples]})
    for replay in replays:
      self.assertNotIn("error", replay)
    self.assertEqual(replays[1]["output_shapes"], {"classes": [3, 10], "scores": [3, 10]})
    self.assertEqual(replays[2]["output_shapes"]["probabilities"], [3, 10])
    self.assertAllClose(probs, scores, atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
