"""Tests of warm starting: checkpoint resolution, the report, and a real warm-started run."""

import json
import os
import re

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app.checkpoints import warm_start
from input_fns import errors
from tests.testing import tiny_estimator

# What the "pre-trained" checkpoint holds: hidden/* fit the tiny model, logits/kernel was
# trained for 5 classes, "old_logits/bias" is logits/bias under another name, plus a step.
_PRETRAINED = {
    "hidden/kernel": np.arange(32, dtype=np.float32).reshape(4, 8) / 10.0,
    "hidden/bias": np.full([8], 0.5, np.float32),
    "logits/kernel": np.ones([8, 5], np.float32),
    "old_logits/bias": np.array([1.0, 2.0, 3.0], np.float32),
    "global_step": np.int64(1234),
}


def _save(directory, values, step=1234, name="model.ckpt"):
  """Saves `values` with a plain tf.compat.v1.train.Saver; returns the prefix."""
  with tf.Graph().as_default():
    variables = [tf.compat.v1.get_variable(k, initializer=tf.constant(v))
                 for k, v in values.items()]
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      return saver.save(sess, os.path.join(directory, name), global_step=step)


class ResolveCheckpointTest(tf.test.TestCase, parameterized.TestCase):

  def _source(self, warm_start_from: str) -> str:
    """The checkpoint a warm start from `warm_start_from` loads."""
    settings = warm_start.prepare_warm_start(
        warm_start_from, self.create_tempdir().full_path, [("v", (2,))],
        print_fn=lambda _: None, save_report=False)
    return settings.ckpt_to_initialize_from

  def test_accepted_forms(self):
    d = self.create_tempdir().full_path
    p1 = _save(d, {"v": np.zeros(2, np.float32)}, step=1)
    p2 = _save(d, {"v": np.zeros(2, np.float32)}, step=20)
    self.assertEqual(self._source(p1), p1)
    self.assertEqual(self._source(p1 + ".index"), p1)
    self.assertEqual(self._source(p1 + ".data-00000-of-00001"), p1)
    self.assertEqual(self._source(d), p2)
    os.remove(os.path.join(d, "checkpoint"))  # copied files without a state file
    self.assertEqual(self._source(d), p2)

  @parameterized.named_parameters(("missing_prefix", "nope/model.ckpt-5", "does not exist"),
                                  ("empty_dir", "", "holds no checkpoints"))
  def test_bad_path_names_it(self, relative, expected):
    d = self.create_tempdir().full_path
    path = os.path.join(d, relative)
    with self.assertRaisesRegex(warm_start.WarmStartError,
                                f"--warm_start_from: .*{re.escape(path.rstrip('/'))} {expected}"):
      self._source(path)

  def test_empty_path_is_refused(self):
    with self.assertRaisesRegex(warm_start.WarmStartError, "--warm_start_from is empty"):
      self._source("")

  def test_parse_name_map(self):
    self.assertEqual(warm_start.parse_name_map(" a/b = c/d ,x=y,"), {"a/b": "c/d", "x": "y"})
    for bad in ("a", "=b", "a=", "a=b,a=c"):
      with self.assertRaises(warm_start.WarmStartError, msg=bad):
        warm_start.parse_name_map(bad)


class PlanTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.ckpt = _save(self.create_tempdir().full_path, _PRETRAINED)
    self.variables = warm_start.model_variables(
        tiny_estimator.model_fn, tiny_estimator.input_fn(), params={"learning_rate": 0.1})

  def test_model_variables_are_the_models_weights_only(self):
    self.assertEqual([(v.name, v.shape, v.dtype) for v in self.variables],
                     [(k, s, "float32") for k, s in tiny_estimator.VARIABLES.items()])
    # In TRAIN mode optimizer state would appear (none for SGD) and the step never does.
    train_vars = warm_start.model_variables(tiny_estimator.model_fn, tiny_estimator.input_fn(),
                                            mode=tf.estimator.ModeKeys.TRAIN)
    self.assertNotIn("global_step", [v.name for v in train_vars])

  def test_report_sorts_loaded_missing_and_mismatched(self):
    settings, report = warm_start.plan(self.ckpt, self.variables, vars_regex=".*",
                                       name_map={"logits/bias": "old_logits/bias"})
    self.assertEqual(report.checkpoint_global_step, 1234)
    self.assertEqual([(e["name"], e["checkpoint_name"]) for e in report.loaded],
                     [("hidden/kernel", "hidden/kernel"), ("hidden/bias", "hidden/bias"),
                      ("logits/bias", "old_logits/bias")])
    self.assertEqual(report.shape_mismatched, [{
        "name": "logits/kernel", "checkpoint_name": "logits/kernel", "shape": [8, 3],
        "checkpoint_shape": [8, 5]}])
    self.assertEqual(report.missing, [])
    self.assertEqual(report.unused_in_checkpoint, ["global_step", "logits/kernel"])
    # The settings load exactly the fitting variables, by exact name.
    self.assertEqual(settings.ckpt_to_initialize_from, self.ckpt)
    self.assertEqual(settings.vars_to_warm_start,
                     [r"hidden/kernel(:\d+)?$", r"hidden/bias(:\d+)?$", r"logits/bias(:\d+)?$"])
    self.assertEqual(settings.var_name_to_prev_var_name, {"logits/bias": "old_logits/bias"})
    text = report.format()
    self.assertIn("loaded (3):", text)
    self.assertIn("logits/bias [3] <- old_logits/bias", text)
    self.assertIn("shape-mismatched, not loaded (1):\n    logits/kernel: model [8, 3] vs "
                  "checkpoint [8, 5]", text)

  def test_regex_and_missing(self):
    _, report = warm_start.plan(self.ckpt, [("hidden/kernel", (4, 8)), ("extra/w", (2,))],
                                vars_regex="hidden|extra")
    self.assertEqual([e["name"] for e in report.loaded], ["hidden/kernel"])
    self.assertEqual(report.missing, [{"name": "extra/w", "checkpoint_name": "extra/w",
                                       "shape": [2]}])
    _, report = warm_start.plan(self.ckpt, self.variables, vars_regex="logits/")
    self.assertEqual(report.not_selected, ["hidden/kernel", "hidden/bias"])

  def test_bad_regex_and_unknown_map_key(self):
    with self.assertRaisesRegex(warm_start.WarmStartError, r"regex '\(' is invalid"):
      warm_start.plan(self.ckpt, self.variables, vars_regex="(")
    with self.assertRaisesRegex(warm_start.WarmStartError,
                                "name map names hiden/kernel, not variables of the model"):
      warm_start.plan(self.ckpt, self.variables, name_map={"hiden/kernel": "hidden/kernel"})

  def test_nothing_to_load_is_an_error_with_the_report_saved(self):
    model_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(errors.UserInputError,
                                r"no model variable can be loaded .*\(0 missing, 1 "
                                r"shape-mismatched, 3 not matching 'logits/kernel'\)"):
      warm_start.prepare_warm_start(self.ckpt, model_dir, self.variables,
                                    vars_regex="logits/kernel", print_fn=lambda _: None)
    with open(os.path.join(model_dir, warm_start.REPORT_FILENAME)) as f:
      self.assertEqual(json.load(f)["shape_mismatched"][0]["name"], "logits/kernel")


  def test_a_task_that_is_not_the_chief_plans_without_writing(self):
    model_dir = self.create_tempdir().full_path
    printed = []
    settings = warm_start.prepare_warm_start(self.ckpt, model_dir, self.variables,
                                             print_fn=printed.append, save_report=False)
    self.assertIsNotNone(settings)
    self.assertEmpty(os.listdir(model_dir))
    self.assertNotIn("report saved", printed[0])


class WarmStartedRunTest(tf.test.TestCase):

  def test_estimator_loads_what_the_report_says(self):
    src = self.create_tempdir().full_path
    _save(src, _PRETRAINED)
    model_dir = self.create_tempdir().full_path
    variables = warm_start.model_variables(tiny_estimator.model_fn, tiny_estimator.input_fn())
    printed = []
    settings = warm_start.prepare_warm_start(
        src, model_dir, variables, name_map={"logits/bias": "old_logits/bias"},
        print_fn=printed.append)
    self.assertIn("report saved to " + os.path.join(model_dir, "warm_start_report.json"),
                  printed[0])
    with open(os.path.join(model_dir, "warm_start_report.json")) as f:
      saved = json.load(f)
    self.assertEqual(len(saved["loaded"]), 3)
    self.assertTrue(saved["applies"])
    # learning_rate=0 keeps the loaded values through the one training step.
    est = tiny_estimator.estimator(model_dir, learning_rate=0.0, warm_start_from=settings)
    est.train(tiny_estimator.input_fn(), max_steps=1)
    self.assertAllEqual(est.get_variable_value("hidden/kernel"), _PRETRAINED["hidden/kernel"])
    self.assertAllEqual(est.get_variable_value("hidden/bias"), _PRETRAINED["hidden/bias"])
    self.assertAllEqual(est.get_variable_value("logits/bias"), _PRETRAINED["old_logits/bias"])
    # The mismatched variable kept its own initializer; the step starts from 0, not 1234.
    self.assertEqual(est.get_variable_value("logits/kernel").shape, (8, 3))
    self.assertEqual(est.get_variable_value("global_step"), 1)
    # A second prepare over the resumed run says the Estimator will not apply it.
    warm_start.prepare_warm_start(src, model_dir, variables,
                                  name_map={"logits/bias": "old_logits/bias"},
                                  print_fn=printed.append)
    self.assertIn("NOT APPLIED: model_dir already has a checkpoint", printed[1])


if __name__ == "__main__":
  tf.test.main()
