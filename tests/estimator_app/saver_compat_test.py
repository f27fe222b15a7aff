"""Checkpoints stay tf.compat.v1.train.Saver-compatible, both ways (issue 5, "It must show").

1. An Estimator over the registry's "dnn" trains on TFRecords written by input_fns.writer;
   a plain TF1 graph (new tf.Graph, tf.compat.v1.get_variable, no Estimator, no Keras) builds
   the same variables and restores the checkpoint with tf.compat.v1.train.Saver: every value,
   optimizer slots and global step included, equals what the training session held.
2. A checkpoint written by tf.compat.v1.train.Saver warm-starts an Estimator run: right after
   session creation the model's variables hold exactly the Saver's values.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app.checkpoints import warm_start
from input_fns import feature_spec
from input_fns import input_fn as input_fn_lib
from input_fns import writer
from model_fns import model_fn as model_fn_lib
from model_fns import registry

_SPEC = feature_spec.image_spec(8, 8, 1, [str(d) for d in range(10)], value_range=(0, 16))


class _CaptureHook(tf.estimator.SessionRunHook):
  """Records every global variable's value right after session creation and at the end."""

  def begin(self):
    self._vars = {v.op.name: v for v in tf.compat.v1.global_variables()}
    self.specs = {n: (tuple(v.shape.as_list()), v.dtype.base_dtype) for n, v in self._vars.items()}

  def after_create_session(self, session, coord):
    self.initial = session.run(self._vars)

  def end(self, session):
    self.final = session.run(self._vars)


def _write_tiny_dataset(directory):
  rng = np.random.RandomState(0)
  examples = [("train" if i < 48 else "eval",
               {"image": rng.randint(0, 17, size=(8, 8, 1)).astype(np.uint8)}, i % 10)
              for i in range(64)]
  return writer.write_dataset(directory, _SPEC, examples, num_shards=1, source={"test": True})


class SaverCompatTest(tf.test.TestCase, parameterized.TestCase):

  def _estimator(self, model_dir, hparams, warm_start_from=None):
    model_def = registry.get("dnn")
    hp = dataclasses.replace(model_def.hparams_cls(), hidden_units=(16, 8), **hparams)
    fn = model_fn_lib.build_model_fn(
        model_def, hp, _SPEC, model_fn_lib.TrainConfig(optimizer="adam", learning_rate=0.01))
    config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=3,
                                    save_checkpoints_steps=100, log_step_count_steps=None)
    return fn, tf.estimator.Estimator(fn, config=config, warm_start_from=warm_start_from)

  def _input_fn(self, m):
    return input_fn_lib.make_input_fn(m, "train", input_fn_lib.InputConfig(batch_size=8, seed=1),
                                 training=True)

  @parameterized.named_parameters(("plain", {}), ("batch_norm", {"batch_norm": True}))
  def test_estimator_checkpoint_restores_in_a_plain_tf1_graph(self, hparams):
    m = _write_tiny_dataset(self.create_tempdir().full_path)
    model_dir = self.create_tempdir().full_path
    _, est = self._estimator(model_dir, hparams)
    capture = _CaptureHook()
    est.train(self._input_fn(m), max_steps=3, hooks=[capture])
    ckpt = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(os.path.basename(ckpt), "model.ckpt-3")
    kernels = [n for n in capture.specs if n.endswith("/kernel")]
    self.assertLen(kernels, 3)  # two hidden layers and the logits
    if hparams.get("batch_norm"):  # non-trainable state travels too
      self.assertTrue(any("moving_mean" in n for n in capture.specs), sorted(capture.specs))

    with tf.Graph().as_default():
      variables = {name: tf.compat.v1.get_variable(name, shape, dtype,
                                                   initializer=tf.compat.v1.zeros_initializer())
                   for name, (shape, dtype) in capture.specs.items()}
      saver = tf.compat.v1.train.Saver()
      with tf.compat.v1.Session() as sess:
        saver.restore(sess, ckpt)
        restored = sess.run(variables)
    self.assertCountEqual(restored, capture.final)
    for name, value in capture.final.items():
      self.assertAllEqual(restored[name], value, msg=name)
    self.assertEqual(restored["global_step"], 3)
    # Training changed the weights, so equality above is not a trivial one.
    for name in kernels:
      self.assertNotAllClose(capture.initial[name], restored[name], msg=name)

  @parameterized.named_parameters(("plain", {}), ("batch_norm", {"batch_norm": True}))
  def test_saver_checkpoint_warm_starts_an_estimator(self, hparams):
    m = _write_tiny_dataset(self.create_tempdir().full_path)
    model_dir = self.create_tempdir().full_path
    fn, _ = self._estimator(model_dir, hparams)
    variables = warm_start.model_variables(fn, self._input_fn(m))
    rng = np.random.RandomState(7)
    saved = {v.name: rng.uniform(-1, 1, size=v.shape).astype(v.dtype) for v in variables}
    source = self.create_tempdir().full_path
    with tf.Graph().as_default():
      for name, value in saved.items():
        tf.compat.v1.get_variable(name, initializer=tf.constant(value))
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(sess, os.path.join(source, "pretrained"))

    printed = []
    settings = warm_start.prepare_warm_start(source, model_dir, variables,
                                             print_fn=printed.append)
    self.assertIn(f"loaded ({len(saved)})", printed[0])
    _, est = self._estimator(model_dir, hparams, warm_start_from=settings)
    capture = _CaptureHook()
    est.train(self._input_fn(m), max_steps=2, hooks=[capture])
    for name, value in saved.items():
      self.assertAllEqual(capture.initial[name], value, msg=name)
    if hparams.get("batch_norm"):
      self.assertTrue(any("moving_variance" in n for n in saved))
    self.assertEqual(capture.initial["global_step"], 0)  # weights, not the step, come over


if __name__ == "__main__":
  tf.test.main()
