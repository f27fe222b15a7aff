"""TF Serving warm-up records: real requests replayed by the server before it takes traffic.

TF Serving reads `<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`tensorflow.serving.PredictionLog` protos, and runs each request against a freshly loaded
version before marking it available, so the first user request does not pay for graph
optimisation and memory allocation. We write one request per signature of the export, each a
small batch of real eval examples, so every code path a client can reach is warmed:

  * `serving_default`:  PredictLog with the raw feature tensors (a TABLE's string columns as
    bytes, multivalent columns padded, as `parse_features` decodes them);
  * `classification`:   ClassifyLog with the examples as an ExampleList (Classify API), for a
    classifier's export;
  * `regression`:       RegressLog with the examples as an ExampleList (Regress API), for a
    regression export;
  * `predict_examples`: PredictLog with the serialized examples.

The helpers that turn serialized examples into what a client sends (labels and example weights
stripped, raw tensors decoded through the dataset's own feature spec) live here too, because
validation must send exactly the same things, and so does `cpu_session_config`, the session
config of every session the export path opens inside the training process.
"""

import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import input_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2

from input_fns import feature_spec as fs

ASSETS_EXTRA = "assets.extra"
FILENAME = "tf_serving_warmup_requests"


def cpu_session_config() -> tf.compat.v1.ConfigProto:
  """The config of the sessions the export path opens: the CPU only, no XLA.

  Export, warm-up parsing and the parity reference run inside the training process, often on a
  GPU host: hiding the GPUs keeps these sessions off the devices and memory training holds, and
  they compute as the validation child (which sees no GPU) and a default TF Serving session do,
  without training-only options such as XLA auto-clustering.
  """
  config = tf.compat.v1.ConfigProto(allow_soft_placement=True, device_count={"GPU": 0})
  config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.OFF
  return config


def strip_labels(records: Sequence[bytes]) -> List[bytes]:
  """Removes the label and the example weight from serialized examples: serving clients send
  neither."""
  out = []
  for r in records:
    example = tf.train.Example.FromString(r)
    for key in (fs.LABEL_KEY, fs.WEIGHT_KEY):
      if key in example.features.feature:
        del example.features.feature[key]
    out.append(example.SerializeToString())
  return out


def parse_features(spec: fs.FeatureSpec, records: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """Decodes serialized examples into the raw tensors a `serving_default` client sends.

  Runs the dataset's own `parse_batch` in a private graph, so it works whether or not the
  caller is inside another graph, and yields exactly the values the training input_fn saw.

  Returns:
    Feature name -> array [len(records)] + feature.shape in the feature's dtype (strings: an
    object array of bytes; a multivalent column [len(records), the most values of a record],
    padded with its missing value).
  """
  with tf.Graph().as_default():
    features, _ = spec.parse_batch(tf.constant(list(records), tf.string), with_label=False)
    with tf.compat.v1.Session(config=cpu_session_config()) as sess:
      return sess.run(features)


def _example_list(records: Sequence[bytes]) -> input_pb2.Input:
  return input_pb2.Input(example_list=input_pb2.ExampleList(
      examples=[tf.train.Example.FromString(r) for r in records]))


def build_requests(spec: fs.FeatureSpec, records: Sequence[bytes], model_name: str, *,
                   raw_signature: str, examples_signature: str, examples_input_key: str,
                   classify_signature: str = "", regress_signature: str = ""
                   ) -> List[prediction_log_pb2.PredictionLog]:
  """Builds one warm-up request per signature from the same batch of examples.

  Args:
    spec: the dataset's feature spec (for the raw-tensor request).
    records: serialized tf.Examples (labels and example weights are stripped here).
    model_name: put in each request's ModelSpec (TF Serving ignores it for warm-up).
    raw_signature: Predict signature taking the raw feature tensors.
    examples_signature: Predict signature taking serialized tf.Examples ...
    examples_input_key: ... under this input key.
    classify_signature: Classify signature taking tf.Examples ("" if the export has none).
    regress_signature: Regress signature taking tf.Examples ("" if the export has none).

  Returns:
    PredictionLogs in the order raw, classify, regress, examples (those with a signature).

  Raises:
    ValueError: no records.
  """
  if not records:
    raise ValueError("warm-up needs at least one example")
  records = strip_labels(records)
  logs = []

  raw = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=model_name, signature_name=raw_signature))
  for name, value in parse_features(spec, records).items():
    raw.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=spec.feature(name).tf_dtype))
  logs.append(prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=raw)))

  if classify_signature:
    classify = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=classify_signature),
        input=_example_list(records))
    logs.append(prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classify)))

  if regress_signature:
    regress = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=regress_signature),
        input=_example_list(records))
    logs.append(prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=regress)))

  examples = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=model_name, signature_name=examples_signature))
  examples.inputs[examples_input_key].CopyFrom(
      tf.make_tensor_proto(records, dtype=tf.string, shape=[len(records)]))
  logs.append(prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=examples)))
  return logs


def path(export_dir: str) -> str:
  return os.path.join(export_dir, ASSETS_EXTRA, FILENAME)


def write(export_dir: str, logs: Sequence[prediction_log_pb2.PredictionLog]) -> str:
  """Writes the logs to `export_dir/assets.extra/tf_serving_warmup_requests`; returns the path."""
  tf.io.gfile.makedirs(os.path.join(export_dir, ASSETS_EXTRA))
  out = path(export_dir)
  with tf.io.TFRecordWriter(out) as w:
    for log in logs:
      w.write(log.SerializeToString())
  return out


def read(export_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  """Parses an export's warm-up file with the TF Serving protos (empty list if it has none)."""
  p = path(export_dir)
  if not tf.io.gfile.exists(p):
    return []
  return [prediction_log_pb2.PredictionLog.FromString(r)
          for r in tf.compat.v1.io.tf_record_iterator(p)]


def signature_of(log: prediction_log_pb2.PredictionLog) -> str:
  """The signature a warm-up request targets."""
  kind = log.WhichOneof("log_type")
  return getattr(log, kind).request.model_spec.signature_name
