"""estimator_app.checkpoints.info over tf.train.Saver checkpoints made here and an Estimator run."""

import json
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app.checkpoints import info as checkpoint_info
from tests.testing import finished_run


def _save_checkpoints(directory: str, steps, global_step_value=None, name="model.ckpt"):
  """Saves a small graph with tf.compat.v1.train.Saver at each of `steps`; returns prefixes."""
  prefixes = []
  with tf.Graph().as_default():
    tf.compat.v1.get_variable("dense/kernel", initializer=np.ones([3, 4], np.float32))
    tf.compat.v1.get_variable("dense/bias", initializer=np.zeros([4], np.float64))
    tf.compat.v1.Variable([b"ab", b"cde"], name="vocab")
    step = tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver(max_to_keep=None)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for s in steps:
        sess.run(step.assign(s if global_step_value is None else global_step_value))
        prefixes.append(saver.save(sess, os.path.join(directory, name), global_step=s))
  return prefixes


def _save_trained(directory: str, optimizer) -> str:
  """One training step of a kernel (and a batch-norm-like moving mean) with `optimizer`, saved
  by tf.compat.v1.train.Saver with its .meta graph; returns the prefix."""
  with tf.Graph().as_default():
    kernel = tf.compat.v1.get_variable("dense/kernel", initializer=np.ones([3, 2], np.float32))
    tf.compat.v1.get_variable("bn/moving_mean", initializer=np.zeros([2], np.float32),
                              trainable=False)
    step = tf.compat.v1.train.get_or_create_global_step()
    loss = tf.reduce_sum(tf.matmul(tf.ones([4, 3]), kernel))
    train_op = optimizer.minimize(loss, global_step=step)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(train_op)
      return tf.compat.v1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"),
                                             global_step=1)


class CheckpointInfoTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("adam", lambda: tf.compat.v1.train.AdamOptimizer(0.1),
       ["beta1_power", "beta2_power", "dense/kernel/Adam", "dense/kernel/Adam_1"], True),
      ("momentum", lambda: tf.compat.v1.train.MomentumOptimizer(0.1, 0.9),
       ["dense/kernel/Momentum"], True),
      # Only the .meta graph's trainable collection tells this slot from a weight.
      ("renamed_optimizer", lambda: tf.compat.v1.train.AdagradOptimizer(0.1, name="Mine"),
       ["dense/kernel/Mine"], False),
  )
  def test_groups_separate_weights_from_optimizer_state_and_bookkeeping(
      self, make_optimizer, optimizer_names, known_without_meta):
    prefix = _save_trained(self.create_tempdir().full_path, make_optimizer())

    info = checkpoint_info.inspect(prefix)

    self.assertEqual([(g, [v.name for v in members]) for g, members in info.by_group()],
                     [(checkpoint_info.TRAINABLE, ["dense/kernel"]),
                      (checkpoint_info.NON_TRAINABLE, ["bn/moving_mean"]),
                      (checkpoint_info.OPTIMIZER, optimizer_names),
                      (checkpoint_info.BOOKKEEPING, ["global_step"])])
    table = checkpoint_info.format_table(info)
    self.assertIn(f"optimizer:\n  {optimizer_names[0]} ", table)
    self.assertIn("  trainable:     1 variable, 6 params, 24 B", table)
    self.assertIn("  bookkeeping:   1 variable, 1 params, 8 B", table)
    as_json = checkpoint_info.to_dict(info)
    self.assertEqual(as_json["groups"]["optimizer"]["variables"], optimizer_names)
    self.assertEqual(sum(g["total_params"] for g in as_json["groups"].values()),
                     as_json["total_params"])

    os.remove(prefix + ".meta")  # names alone: the known optimizers' slots are still found
    groups = checkpoint_info.inspect(prefix).groups
    self.assertEqual(all(groups[n] == checkpoint_info.OPTIMIZER for n in optimizer_names),
                     known_without_meta)
    self.assertEqual((groups["dense/kernel"], groups["bn/moving_mean"], groups["global_step"]),
                     (checkpoint_info.TRAINABLE, checkpoint_info.NON_TRAINABLE,
                      checkpoint_info.BOOKKEEPING))

  def test_variables_shapes_dtypes_sizes_and_step(self):
    d = self.create_tempdir().full_path
    prefix = _save_checkpoints(d, [7])[0]

    info = checkpoint_info.inspect(prefix)

    self.assertEqual(info.prefix, prefix)
    self.assertEqual(info.global_step, 7)
    by_name = {v.name: v for v in info.variables}
    self.assertEqual(sorted(by_name), ["dense/bias", "dense/kernel", "global_step", "vocab"])
    self.assertEqual(by_name["dense/kernel"],
                     checkpoint_info.VariableInfo("dense/kernel", (3, 4), "float32", 12, 48))
    self.assertEqual(by_name["dense/bias"],
                     checkpoint_info.VariableInfo("dense/bias", (4,), "float64", 4, 32))
    self.assertEqual(by_name["global_step"],
                     checkpoint_info.VariableInfo("global_step", (), "int64", 1, 8))
    self.assertEqual(by_name["vocab"], checkpoint_info.VariableInfo("vocab", (2,), "string", 2, 5))
    self.assertEqual(info.total_params, 19)
    self.assertEqual(info.total_bytes, 93)

  def test_global_step_variable_wins_over_the_name(self):
    d = self.create_tempdir().full_path
    prefix = _save_checkpoints(d, [5], global_step_value=123)[0]
    self.assertEqual(checkpoint_info.inspect(prefix).global_step, 123)

  def test_name_filter(self):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [1])
    info = checkpoint_info.inspect(d, name_regex="^dense/")
    self.assertEqual([v.name for v in info.variables], ["dense/bias", "dense/kernel"])
    self.assertEqual(info.global_step, 1)  # still read although filtered out
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, r"'\(' is not a valid regex"):
      checkpoint_info.inspect(d, name_regex="(")

  @parameterized.named_parameters(
      ("directory", ""),
      ("prefix", "model.ckpt-30"),
      ("index_file", "model.ckpt-30.index"),
      ("data_file", "model.ckpt-30.data-00000-of-00001"),
      ("meta_file", "model.ckpt-30.meta"),
      ("trailing_slash", "/"),
  )
  def test_checkpoint_prefix_of_each_accepted_form(self, relative):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [10, 30])
    self.assertEqual(checkpoint_info.checkpoint_prefix(
        d + relative if relative.startswith("/") or not relative else os.path.join(d, relative)),
                     os.path.join(d, "model.ckpt-30"))

  def test_directory_without_state_file_uses_the_highest_step(self):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [100, 20, 9])  # the state file would name 9 as the latest
    os.remove(os.path.join(d, "checkpoint"))
    self.assertEqual(checkpoint_info.checkpoint_prefix(d), os.path.join(d, "model.ckpt-100"))

  @parameterized.named_parameters(
      ("saver_prefix", "/runs/digits/model.ckpt-400", 400),
      ("best_copy", "/runs/digits/best/ckpt-30/model.ckpt-30", 30),
      ("hand_named", "/runs/exp-3/pretrained", None),
      ("saved_model_variables", "/export/1/variables/variables", None),
  )
  def test_checkpoint_step_reads_only_the_basename(self, prefix, step):
    self.assertEqual(checkpoint_info.checkpoint_step(prefix), step)

  def test_list_checkpoints(self):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [100, 20, 9])
    _save_checkpoints(d, [200], name="best")  # its saver rewrites the state file: the latest

    entries = checkpoint_info.list_checkpoints(d)

    self.assertEqual([(os.path.basename(e.prefix), e.step, e.is_latest) for e in entries],
                     [("model.ckpt-9", 9, False), ("model.ckpt-20", 20, False),
                      ("model.ckpt-100", 100, False), ("best-200", 200, True)])
    self.assertTrue(all(e.num_bytes > 48 for e in entries))

  def test_hand_named_checkpoint_gets_its_step_from_the_variable(self):
    d = self.create_tempdir().full_path
    with tf.Graph().as_default():
      step = tf.compat.v1.train.get_or_create_global_step()
      with tf.compat.v1.Session() as sess:
        sess.run(step.initializer)
        sess.run(step.assign(42))
        tf.compat.v1.train.Saver().save(sess, os.path.join(d, "pretrained"))
    [entry] = checkpoint_info.list_checkpoints(d)
    self.assertEqual((os.path.basename(entry.prefix), entry.step), ("pretrained", 42))
    self.assertEqual(checkpoint_info.inspect(entry.prefix).global_step, 42)

  def test_missing_path_names_it(self):
    missing = os.path.join(self.create_tempdir().full_path, "no", "such.ckpt")
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, f"checkpoint {missing} does not exist"):
      checkpoint_info.inspect(missing)

  def test_mistyped_checkpoint_suggests_the_nearest_names(self):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [10, 30])
    elsewhere = self.create_tempdir().full_path
    with self.assertRaisesRegex(
        checkpoint_info.CheckpointError,
        f"^checkpoint {elsewhere}/lastest does not exist .*; did you mean 'latest'\\?$"):
      checkpoint_info.resolve(d, os.path.join(elsewhere, "lastest"))
    with self.assertRaisesRegex(
        checkpoint_info.CheckpointError,
        f"checkpoint {d}/model.ckpt-3 does not exist .*; did you mean '{d}/model.ckpt-30' or "
        f"'{d}/model.ckpt-10'\\?$"):
      checkpoint_info.checkpoint_prefix(os.path.join(d, "model.ckpt-3"))
    with self.assertRaises(checkpoint_info.CheckpointError) as cm:
      checkpoint_info.resolve(d, os.path.join(elsewhere, "zzz"))
    self.assertNotIn("did you mean", str(cm.exception))

  def test_plain_file_is_not_a_checkpoint(self):
    path = self.create_tempdir().create_file("notes.txt", "hello").full_path
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, f"{path} is not a checkpoint"):
      checkpoint_info.inspect(path)

  def test_directory_without_checkpoints(self):
    d = self.create_tempdir().full_path
    finished_run.write_tf1_scalars(d, {"loss": [(1, 1.0)]})
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, f"{d} holds no checkpoints"):
      checkpoint_info.inspect(d)
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, "does not exist"):
      checkpoint_info.list_checkpoints(os.path.join(d, "nope"))

  def test_corrupt_index_names_the_checkpoint(self):
    d = self.create_tempdir()
    d.create_file("broken.index", "this is no tensor bundle")
    prefix = os.path.join(d.full_path, "broken")
    with self.assertRaisesRegex(checkpoint_info.CheckpointError, f"checkpoint {prefix} cannot be read"):
      checkpoint_info.inspect(prefix)

  def test_table_and_json(self):
    d = self.create_tempdir().full_path
    _save_checkpoints(d, [10, 30])
    info = checkpoint_info.inspect(d)
    entries = checkpoint_info.list_checkpoints(d)

    table = checkpoint_info.format_table(info, entries)
    as_json = json.loads(json.dumps(checkpoint_info.to_dict(info, entries)))

    self.assertIn("global step: 30", table)
    self.assertRegex(table, r"dense/kernel\s+\[3, 4\]\s+float32\s+12\s+48 B")
    self.assertIn("total: 4 variables, 19 params, 93 B", table)
    self.assertRegex(table, r"step\s+30\s+.*model\.ckpt-30  \(latest\)")
    self.assertEqual(as_json["global_step"], 30)
    self.assertEqual(as_json["total_params"], 19)
    self.assertEqual(as_json["variables"][1],
                     {"name": "dense/kernel", "shape": [3, 4], "dtype": "float32", "params": 12,
                      "bytes": 48})
    self.assertEqual([c["step"] for c in as_json["checkpoints"]], [10, 30])

  @parameterized.parameters((0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                            (5 * 1024 ** 3, "5.0 GiB"))
  def test_human_bytes(self, n, text):
    self.assertEqual(checkpoint_info.human_bytes(n), text)

  def test_estimator_checkpoints(self):
    model_dir = self.create_tempdir().full_path
    finished_run.train_run(model_dir)

    info = checkpoint_info.inspect(model_dir)
    entries = checkpoint_info.list_checkpoints(model_dir)

    self.assertEqual(info.global_step, finished_run.TRAIN_STEPS)
    self.assertEqual(info.prefix, os.path.join(model_dir, f"model.ckpt-{finished_run.TRAIN_STEPS}"))
    shapes = {v.name: v.shape for v in info.variables}
    self.assertEqual(shapes["dense/kernel"], (4, 2))
    self.assertEqual(shapes["dense/bias"], (2,))
    self.assertEqual([e.step for e in entries],
                     list(range(0, finished_run.TRAIN_STEPS + 1, finished_run.CHECKPOINT_STEPS)))
    self.assertEqual([e.is_latest for e in entries], [False] * (len(entries) - 1) + [True])


if __name__ == "__main__":
  tf.test.main()
