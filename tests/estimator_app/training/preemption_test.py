"""SIGTERM mid-run: the chief saves a checkpoint of the current step and exits 143 in time; a
restart resumes from that checkpoint."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import tensorflow as tf

from estimator_app import estimator as estimator_lib
from estimator_app.training import preemption
from tests.testing import distributed_driver


def _input_fn():
  x = np.random.RandomState(0).rand(64, 4).astype(np.float32)
  y = (x.sum(axis=1) > 2).astype(np.int64)
  return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).repeat().batch(8)


def _model_fn(features, labels, mode):
  logits = tf.compat.v1.layers.dense(features["x"], 2)
  loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
  train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf.compat.v1.train.get_or_create_global_step())
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


class _SignalAtStep(tf.estimator.SessionRunHook):
  """Sends this process SIGTERM once the global step reaches `step`."""

  def __init__(self, step):
    self._step = step
    self.sent = False

  def before_run(self, run_context):
    return tf.estimator.SessionRunArgs(tf.compat.v1.train.get_global_step())

  def after_run(self, run_context, run_values):
    if not self.sent and run_values.results >= self._step:
      self.sent = True
      os.kill(os.getpid(), signal.SIGTERM)


class _FirstStep(tf.estimator.SessionRunHook):

  def after_create_session(self, session, coord):
    self.step = int(session.run(tf.compat.v1.train.get_global_step()))


class PreemptionHookTest(tf.test.TestCase):

  def _estimator(self, model_dir):
    return tf.estimator.Estimator(_model_fn, config=tf.estimator.RunConfig(
        model_dir=model_dir, save_checkpoints_steps=1000, log_step_count_steps=1000))

  def test_sigterm_saves_the_current_step_and_a_restart_resumes(self):
    model_dir = self.create_tempdir().full_path
    previous = signal.getsignal(signal.SIGTERM)
    hook = preemption.PreemptionHook(model_dir, exit_fn=self._no_forced_exit)
    with self.assertRaises(preemption.Preempted) as cm:
      self._estimator(model_dir).train(_input_fn, max_steps=100,
                                       hooks=[_SignalAtStep(6), hook])
    self.assertEqual(cm.exception.code, preemption.PREEMPTED_EXIT_CODE)
    self.assertIsInstance(cm.exception, SystemExit)
    step = cm.exception.step
    self.assertBetween(step, 6, 8)  # the step in flight finishes first
    self.assertEqual(tf.train.latest_checkpoint(model_dir), os.path.join(model_dir,
                                                                         f"model.ckpt-{step}"))
    self.assertEqual(cm.exception.checkpoint, tf.train.latest_checkpoint(model_dir))
    self.assertIs(signal.getsignal(signal.SIGTERM), previous)  # handler restored

    first = _FirstStep()
    estimator = self._estimator(model_dir)
    estimator.train(_input_fn, max_steps=step + 5, hooks=[first, preemption.PreemptionHook(
        model_dir, exit_fn=self._no_forced_exit)])
    self.assertEqual(first.step, step)
    self.assertEqual(estimator.get_variable_value("global_step"), step + 5)

  def test_a_worker_saves_nothing_but_stops(self):
    model_dir = self.create_tempdir().full_path
    hook = preemption.PreemptionHook(model_dir, is_chief=False, exit_fn=self._no_forced_exit)
    with self.assertRaises(preemption.Preempted) as cm:
      self._estimator(model_dir).train(_input_fn, max_steps=100, hooks=[_SignalAtStep(3), hook])
    self.assertIsNone(cm.exception.checkpoint)
    # Only the checkpoint the Estimator writes when the session starts.
    self.assertEqual(tf.train.latest_checkpoint(model_dir), os.path.join(model_dir,
                                                                         "model.ckpt-0"))

  def test_watchdog_forces_the_exit_when_the_clean_path_stalls(self):
    exits = []
    done = threading.Event()

    def fake_exit(code):
      exits.append(code)
      done.set()

    with tf.Graph().as_default():
      hook = preemption.PreemptionHook(self.create_tempdir().full_path, grace_secs=0.3,
                                       exit_fn=fake_exit)
      hook.begin()
      try:
        os.kill(os.getpid(), signal.SIGTERM)  # and no step ever finishes
        self.assertTrue(done.wait(10))
      finally:
        hook.end(None)
    self.assertEqual(exits, [preemption.PREEMPTED_EXIT_CODE])
    self.assertTrue(hook.signalled)

  def _no_forced_exit(self, code):
    self.fail(f"the watchdog forced exit {code}: the clean path took too long")


class PreemptedProcessTest(tf.test.TestCase):
  """A real training process, a real SIGTERM, a real restart."""

  def _driver(self, args, **popen_kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, distributed_driver.__file__, json.dumps(args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen_kwargs)

  def test_sigterm_mid_run_then_restart_resumes(self):
    root = self.create_tempdir().full_path
    data_dir = os.path.join(root, "digits")
    estimator_lib.load_dataset(data_dir, create_default=True)
    model_dir = os.path.join(root, "run")
    args = dict(data_dir=data_dir, model_dir=model_dir, train_steps=100000,
                save_checkpoints_steps=100000, step_sleep_secs=0.02)
    proc = self._driver(args)
    try:
      deadline = time.monotonic() + 120
      # Training has started once the Estimator's step-0 checkpoint exists.
      while not tf.io.gfile.exists(os.path.join(model_dir, "model.ckpt-0.index")):
        self.assertIsNone(proc.poll(), "the training process died before its first step")
        self.assertLess(time.monotonic(), deadline, "training did not start")
        time.sleep(0.1)
      time.sleep(2.0)
      sent = time.monotonic()
      proc.send_signal(signal.SIGTERM)
      output, _ = proc.communicate(timeout=60)
      took = time.monotonic() - sent
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    self.assertEqual(proc.returncode, preemption.PREEMPTED_EXIT_CODE, output[-3000:])
    self.assertLess(took, 30.0)
    saved = re.search(r"preempted at step (\d+); saved (\S+?);", output)
    self.assertIsNotNone(saved, output[-3000:])
    step = int(saved.group(1))
    self.assertGreater(step, 0)
    self.assertEqual(tf.train.latest_checkpoint(model_dir), saved.group(2))
    self.assertEqual(saved.group(2), os.path.join(model_dir, f"model.ckpt-{step}"))

    resumed = self._driver(dict(args, train_steps=step + 10, step_sleep_secs=0))
    output, _ = resumed.communicate(timeout=180)
    self.assertEqual(resumed.returncode, 0, output[-3000:])
    result = json.loads(re.search(r"^RESULT (.*)$", output, re.M).group(1))
    self.assertEqual(result["first_step"], step)
    self.assertEqual(result["global_step"], step + 10)
    print(f"preempted at step {step}, exited {took:.2f} s after SIGTERM, resumed to {step + 10}")


if __name__ == "__main__":
  tf.test.main()
