"""optimization: schedule values at chosen steps, each optimizer's update, decoupled weight decay,
loss scaling skips overflowing steps, clipping bounds the norm, L1/L2 on weights only."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from model_fns import optimization


def _schedule_values(steps, **kwargs):
  """Evaluates optimization.learning_rate at each of `steps`."""
  with tf.Graph().as_default():
    step = tf.compat.v1.placeholder(tf.int64, [])
    lr = optimization.learning_rate(step, **kwargs)
    with tf.compat.v1.Session() as sess:
      return [sess.run(lr, {step: s}) for s in steps]


class ScheduleTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("constant", dict(base=0.1), [0, 1, 10**6], [0.1, 0.1, 0.1]),
      ("exponential", dict(base=0.1, schedule="exponential", decay_steps=100, decay_rate=0.5),
       [0, 50, 100, 300], [0.1, 0.1 * 0.5 ** 0.5, 0.05, 0.0125]),
      ("exponential_staircase",
       dict(base=0.1, schedule="exponential", decay_steps=100, decay_rate=0.5, staircase=True),
       [0, 99, 100, 250], [0.1, 0.1, 0.05, 0.025]),
      ("piecewise", dict(base=1.0, schedule="piecewise", boundaries=(10, 20), decay_rate=0.1),
       [0, 9, 10, 19, 20, 1000], [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]),
      # Warm-up over 4 steps: (s + 1) / 4; cosine from step 4 to 14, floor 0.1 * base.
      ("cosine_warmup", dict(base=2.0, schedule="cosine", warmup_steps=4, decay_steps=14,
                             min_fraction=0.1),
       [0, 1, 3, 4, 9, 14, 100],
       [0.5, 1.0, 2.0, 2.0, 0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 0.5)), 0.2, 0.2]),
      ("cosine_to_zero", dict(base=1.0, schedule="cosine", decay_steps=8),
       [0, 2, 4, 8], [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0]),
      ("warmup_on_constant", dict(base=1.0, warmup_steps=10), [0, 4, 9, 50], [0.1, 0.5, 1.0, 1.0]),
  )
  def test_values_at_steps(self, kwargs, steps, expected):
    self.assertAllClose(_schedule_values(steps, **kwargs), expected, rtol=1e-6, atol=1e-7)

  def test_unknown_schedule(self):
    with self.assertRaisesRegex(ValueError, "known: constant, cosine"):
      _schedule_values([0], base=1.0, schedule="linear")


def _one_step(name, w0, grad, lr=0.1, **kwargs):
  """Applies one optimizer step with a fixed gradient to a variable starting at w0."""
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable("w", initializer=np.asarray(w0, np.float32), use_resource=True)
    opt = optimization.create_optimizer(name, lr, **kwargs)
    step = opt.apply_gradients([(tf.constant(grad, tf.float32), w)])
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(step)
      return sess.run(w), [v.op.name for v in tf.compat.v1.global_variables()]


class OptimizerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*optimization.OPTIMIZERS)
  def test_minimizes_a_quadratic_and_saves_its_slots(self, name):
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable("w", initializer=np.array([[3.0, -2.0]], np.float32))
      loss = tf.reduce_sum(tf.square(w))
      opt = optimization.create_optimizer(name, 0.1, weight_decay=0.01)
      train = opt.minimize(loss)
      saver = tf.compat.v1.train.Saver()
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        before = sess.run(loss)
        for _ in range(30):
          sess.run(train)
        after = sess.run(loss)
        path = saver.save(sess, self.create_tempdir().full_path + "/ckpt")
    self.assertLess(after, 0.5 * before)
    saved = {n for n, _ in tf.train.list_variables(path)}
    self.assertIn("w", saved)
    if name not in ("sgd",):  # every other optimizer keeps slots, saved with the weights
      self.assertTrue(any(n.startswith("w/") for n in saved), saved)

  def test_sgd_step_is_exact(self):
    w, _ = _one_step("sgd", [1.0, 2.0], [0.5, -1.0], lr=0.1)
    self.assertAllClose(w, [0.95, 2.1])

  def test_momentum_accumulates(self):
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable("w", initializer=np.float32(0.0))
      opt = optimization.create_optimizer("momentum", 0.1, momentum=0.5)
      step = opt.apply_gradients([(tf.constant(1.0), w)])
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(step)
        sess.run(step)
        # accumulators 1, then 0.5 * 1 + 1 = 1.5: w = -0.1 - 0.15
        self.assertAllClose(sess.run(w), -0.25)

  def test_adamw_is_adam_plus_decoupled_decay_on_weights_only(self):
    kernel0, grad = [[1.0, -2.0], [3.0, 0.5]], [[0.1, 0.2], [-0.3, 0.0]]
    adam, _ = _one_step("adam", kernel0, grad, lr=0.1)
    adamw, names = _one_step("adamw", kernel0, grad, lr=0.1, weight_decay=0.5)
    # w1 = w0 - lr * wd * w0 - adam_step: exactly lr * wd * w0 below adam's result.
    self.assertAllClose(adamw, adam - 0.1 * 0.5 * np.asarray(kernel0), atol=1e-6)
    self.assertTrue(any("AdamW" in n for n in names), names)
    bias_adam, _ = _one_step("adam", [1.0, -2.0], [0.1, 0.2], lr=0.1)
    bias_adamw, _ = _one_step("adamw", [1.0, -2.0], [0.1, 0.2], lr=0.1, weight_decay=0.5)
    self.assertAllClose(bias_adamw, bias_adam)  # rank 1: not decayed

  def test_loss_scaling_skips_overflowing_steps_and_halves_the_scale(self):
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable("w", initializer=np.float32(1.0))
      opt = optimization.create_optimizer("sgd", 0.1, loss_scaling=True)
      gain = tf.compat.v1.placeholder(tf.float32, [])
      # In float16, the scaled gradient overflows when gain * 2**15 exceeds 65504.
      loss = tf.cast(tf.cast(w, tf.float16) * tf.cast(gain, tf.float16), tf.float32)
      grads = opt.compute_gradients(loss, var_list=[w])
      train = opt.apply_gradients(grads)
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        self.assertEqual(sess.run(opt.loss_scale()), 2.0 ** 15)
        sess.run(train, {gain: 4.0})  # 4 * 2**15 = 131072: inf in float16
        self.assertEqual(sess.run(w), 1.0)
        self.assertEqual(sess.run(opt.loss_scale()), 2.0 ** 14)
        sess.run(train, {gain: 1.0})
        self.assertAllClose(sess.run(w), 0.9)  # unscaled gradient 1.0

  def test_unknown_optimizer(self):
    with self.assertRaisesRegex(ValueError, "known: adagrad, adam, adamw"):
      optimization.create_optimizer("lamb", 0.1)


class ClipAndRegularizeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("clipped", 1.0, 1.0), ("under_the_bound", 10.0, 5.0),
                                  ("off", 0.0, 5.0))
  def test_clip_by_global_norm(self, clip_norm, expected_norm):
    with tf.Graph().as_default():
      # Gradients [3] and [4, 0]: global norm 5; a variable without gradient stays None.
      pairs = [(tf.constant([3.0]), tf.Variable([0.0])),
               (tf.constant([4.0, 0.0]), tf.Variable([0.0, 0.0])),
               (None, tf.Variable(1.0))]
      clipped, norm = optimization.clip_by_global_norm(pairs, clip_norm)
      self.assertIsNone(clipped[2][0])
      after = tf.linalg.global_norm([g for g, _ in clipped[:2]])
      with tf.compat.v1.Session() as sess:
        norm, after = sess.run([norm, after])
    self.assertAllClose(norm, 5.0)
    self.assertAllClose(after, expected_norm)

  def test_regularization_is_exact_and_skips_biases(self):
    with tf.Graph().as_default():
      kernel = tf.Variable([[1.0, -2.0], [0.5, 0.0]])
      bias = tf.Variable([100.0, -100.0])
      l1 = optimization.regularization_loss([kernel, bias], l1=0.1, l2=0.0)
      l2 = optimization.regularization_loss([kernel, bias], l1=0.0, l2=0.01)
      none = optimization.regularization_loss([kernel, bias], l1=0.0, l2=0.0)
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        self.assertAllClose(sess.run([l1, l2, none]), [0.1 * 3.5, 0.01 * 5.25, 0.0])
      self.assertTrue(optimization.is_weight(kernel))
      self.assertFalse(optimization.is_weight(bias))


if __name__ == "__main__":
  tf.test.main()
