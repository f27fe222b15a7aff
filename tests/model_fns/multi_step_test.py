"""multi_step: steps_per_run K, from stacked input batches to K chained steps sharing one set
of variables, alone and inside the model_fn (on the tiny model)."""

import dataclasses

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from model_fns import model_fn as mf
from model_fns import multi_step
from model_fns import registry
from tests.testing import tiny_model

TRAIN = tf.estimator.ModeKeys.TRAIN


def _initial(name, shape):
  """Fixed initial weights by variable name."""
  seed = sum(map(ord, name))
  return np.random.default_rng(seed).uniform(-0.5, 0.5, shape.as_list()).astype(np.float32)


class StackedInputTest(tf.test.TestCase):

  def test_stack_batches(self):
    ds = tf.data.Dataset.range(10).batch(2)
    self.assertEqual([b.tolist() for b in mf.stack_batches(ds, 2).as_numpy_iterator()],
                     [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    self.assertIs(mf.stack_batches(ds, 1), ds)

  def test_stacked_batches_are_dealt_to_replicas_as_single_batches_would_be(self):
    # One-step runs on 2 replicas: step t gives batch 2t to replica 0 and 2t + 1 to replica 1.
    # K = 3 stacked: replica 0 must get batches 0, 2, 4 and replica 1 batches 1, 3, 5.
    ds = tf.data.Dataset.range(24).batch(2).map(lambda x: ({"x": x}, x))
    context = tf.distribute.InputContext(num_input_pipelines=1, num_replicas_in_sync=2)
    stacked = mf.stacked_input_fn(lambda input_context=None: ds, 3)(context)
    first, second = list(stacked.take(2).as_numpy_iterator())
    self.assertAllEqual(first[0]["x"], [[0, 1], [4, 5], [8, 9]])
    self.assertAllEqual(second[1], [[2, 3], [6, 7], [10, 11]])
    self.assertEqual(stacked.element_spec[1].shape.as_list(), [3, None])

  def test_one_step_per_run_keeps_the_input_fn(self):
    def input_fn(input_context=None):
      return tf.data.Dataset.range(4)
    self.assertIs(multi_step.stacked_input_fn(input_fn, 1), input_fn)
    self.assertIs(mf.stacked_input_fn, multi_step.stacked_input_fn)  # the old import path


class SharedVariablesTest(tf.test.TestCase, parameterized.TestCase):

  def test_later_builds_get_the_first_builds_variables(self):
    shared = multi_step.SharedVariables()
    with tf.Graph().as_default():
      with tf.variable_creator_scope(shared):
        first = tf.keras.layers.Dense(3, name="dense")
        first(tf.zeros([1, 2]))
      self.assertFalse(shared.replaying)
      shared.replay()
      self.assertTrue(shared.replaying)
      with tf.variable_creator_scope(shared):
        second = tf.keras.layers.Dense(3, name="dense")
        second(tf.zeros([1, 2]))
      self.assertEqual(len(tf.compat.v1.global_variables()), 2)
    self.assertEqual([v.op.name for v in shared.variables], ["dense/kernel", "dense/bias"])
    self.assertIs(second.kernel, first.kernel)
    self.assertIs(second.bias, first.bias)

  @parameterized.named_parameters(
      ("extra", lambda: [tf.Variable(1.0, name="a"), tf.Variable(2.0, name="b")],
       "created more variables than the first \\(an extra 'b'\\)"),
      ("renamed", lambda: [tf.Variable(1.0, name="c")], "created 'c' where the first created 'a'"))
  def test_a_later_build_with_other_variables_is_refused(self, later_build, message):
    shared = multi_step.SharedVariables()
    with tf.Graph().as_default():
      with tf.variable_creator_scope(shared):
        tf.Variable(0.0, name="a")
      shared.replay()
      with tf.variable_creator_scope(shared):
        with self.assertRaisesRegex(ValueError, message):
          later_build()


class ChainStepsTest(tf.test.TestCase):

  def test_each_step_runs_after_the_previous_on_its_own_batch(self):
    with tf.Graph().as_default():
      total = tf.Variable(0, dtype=tf.int64, name="total")
      seen = []

      def build_step(features, labels, shared):
        seen.append(shared)
        # Not commutative: the result depends on the order the steps run in.
        update = total.assign(total * 10 + features["x"][0] + labels[1], read_value=False)
        return update, features["x"].name

      features = {"x": tf.constant([[1, 0], [2, 0], [3, 0]], tf.int64)}
      labels = tf.constant([[0, 4], [0, 5], [0, 6]], tf.int64)
      train_op, last_input = multi_step.chain_steps(features, labels, 3, build_step)
      with tf.compat.v1.Session() as sess:
        sess.run(total.initializer)
        sess.run(train_op)
        self.assertEqual(sess.run(total), 579)  # ((0 * 10 + 5) * 10 + 7) * 10 + 9
    self.assertTrue(last_input.startswith("step_2/"), last_input)
    self.assertIsInstance(seen[0], multi_step.SharedVariables)
    self.assertTrue(all(s is seen[0] for s in seen))
    self.assertTrue(seen[0].replaying)

  def test_one_step_is_built_at_the_top_level_without_a_creator(self):
    with tf.Graph().as_default():
      features, labels = {"x": tf.constant([[1.0]])}, tf.constant([0])
      calls = []

      def build_step(f, l, shared):
        calls.append((f, l, shared))
        return tf.no_op(name="train"), None

      train_op, _ = multi_step.chain_steps(features, labels, 1, build_step)
    self.assertEqual(train_op.name, "train")
    self.assertEqual(len(calls), 1)
    self.assertIs(calls[0][0], features)
    self.assertIs(calls[0][1], labels)
    self.assertIsNone(calls[0][2])


class StepsPerRunTest(tf.test.TestCase, parameterized.TestCase):
  """steps_per_run K: one session.run of the K-step graph is K runs of the one-step graph."""

  def _run(self, cfg, hp, batches, runs):
    """Trains from fixed initial weights; returns (every global variable by name, losses)."""
    graph = tf.Graph()
    with graph.as_default():
      tf.keras.utils.set_random_seed(1)
      global_step = tf.compat.v1.train.get_or_create_global_step()
      k = cfg.steps_per_run
      features = {"image": tf.compat.v1.placeholder(
          tf.float32, ([k] if k > 1 else []) + [None, 4, 4, 1])}
      labels = tf.compat.v1.placeholder(tf.int64, ([k] if k > 1 else []) + [None])
      est_spec = mf.build_model_fn(tiny_model.MODEL, hp, tiny_model.SPEC, cfg)(
          features, labels, TRAIN)
      variables = tf.compat.v1.global_variables()
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for v in tf.compat.v1.trainable_variables():  # the same start for every graph
          sess.run(v.assign(_initial(v.op.name, v.shape)))
        losses = []
        for r in range(runs):
          chunk = batches[r * k:(r + 1) * k]
          xs = np.stack([b[0]["image"] for b in chunk]) if k > 1 else chunk[0][0]["image"]
          ys = np.stack([b[1] for b in chunk]) if k > 1 else chunk[0][1]
          _, loss = sess.run([est_spec.train_op, est_spec.loss],
                             {features["image"]: xs, labels: ys})
          losses.append(loss)
        values = dict(zip([v.op.name for v in variables], sess.run(variables)))
    self.assertEqual(values["global_step"], len(batches))
    return values, losses

  @parameterized.named_parameters(
      ("adam_decaying_lr", mf.TrainConfig(optimizer="adam", learning_rate=0.05,
                                          lr_schedule="exponential", decay_steps=1,
                                          decay_rate=0.5), tiny_model.TinyHParams()),
      ("momentum_batch_norm", mf.TrainConfig(optimizer="momentum", learning_rate=0.1),
       tiny_model.TinyHParams(batch_norm="keras")),
      ("adamw_clipping", mf.TrainConfig(optimizer="adamw", learning_rate=0.05, clip_norm=0.1),
       tiny_model.TinyHParams(batch_norm="update_ops")),
      ("sgd_collection_loss", mf.TrainConfig(optimizer="sgd", learning_rate=0.5),
       tiny_model.TinyHParams(collection_l2=0.1)))
  def test_k_steps_in_one_run_are_k_single_steps(self, cfg, hp):
    batches = [tiny_model.batch(tiny_model.SPEC, n=16, seed=s) for s in range(8)]
    single, single_losses = self._run(cfg, hp, batches, runs=8)
    multi, multi_losses = self._run(dataclasses.replace(cfg, steps_per_run=4), hp, batches,
                                    runs=2)
    # The same variables (names a checkpoint holds), the same values after the same 8 steps.
    self.assertEqual(sorted(single), sorted(multi))
    for name in single:
      self.assertAllClose(multi[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # The K-step run reports the loss of its last step.
    self.assertAllClose(multi_losses, [single_losses[3], single_losses[7]], rtol=1e-4)

  def test_a_model_that_builds_different_layers_each_call_is_refused(self):
    calls = []

    def build_logits(features, spec, hp, training):
      calls.append(1)
      x = tf.keras.layers.Flatten()(features[spec.input_key])
      if len(calls) > 1:
        x = tf.keras.layers.Dense(4, name="extra")(x)
      return tf.keras.layers.Dense(spec.num_classes, name="logits")(x)

    model = registry.ModelDef("shifty", tiny_model.TinyHParams, build_logits)
    with tf.Graph().as_default():
      features = {"image": tf.zeros([2, 3, 4, 4, 1])}
      with self.assertRaisesRegex(ValueError, "build_logits must build the same layers"):
        mf.build_model_fn(model, tiny_model.TinyHParams(), tiny_model.SPEC,
                          mf.TrainConfig(steps_per_run=2))(
                              features, tf.zeros([2, 3], tf.int64), TRAIN)

  def test_unstacked_features_are_refused_by_name(self):
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "steps_per_run=2 needs dense stacked batches"):
        mf.build_model_fn(tiny_model.MODEL, tiny_model.TinyHParams(), tiny_model.SPEC,
                          mf.TrainConfig(steps_per_run=2))(
                              {"image": tf.zeros([2, 4, 4, 1]), "extra": tf.sparse.eye(2)},
                              tf.zeros([2, 2], tf.int64), TRAIN)


if __name__ == "__main__":
  tf.test.main()
