"""Preemption: on SIGTERM, save a checkpoint and exit within the grace period; a restart resumes.

Kubernetes, cloud training services and spot/preemptible VMs stop a task with SIGTERM and,
after a grace period (30 s by default on Kubernetes), SIGKILL. `PreemptionHook` (a training
hook, installed on every training task) turns SIGTERM into:

  1. the current step finishes (the signal handler only sets a flag);
  2. the chief saves a checkpoint of the current step with the Estimator's own saver
     (model_dir/model.ckpt-<step>, the `checkpoint` file updated, old ones rotated as usual);
     other workers save nothing (only the chief writes checkpoints);
  3. the process exits with PREEMPTED_EXIT_CODE (143 = 128 + SIGTERM) straight away: no
     evaluation and no export of the interrupted run is started inside the grace period.

Why not exit 0: an orchestrator reads 0 as "finished" (a TFJob whose chief exits 0 succeeds,
and is never restarted). 143 is the code of a process ended by SIGTERM, which Kubeflow's
`restartPolicy: ExitCode` and cloud training services treat as retryable; the restarted task
resumes from the saved checkpoint because the Estimator restores model_dir's latest one.

A watchdog makes the deadline hard: if the clean path has not exited `grace_secs` after the
signal (a step, an evaluation or a session stuck waiting for a dead peer), the process exits
with the same code anyway.
"""

import os
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

import tensorflow as tf
from absl import logging

PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM  # 143
DEFAULT_GRACE_SECS = 25.0  # inside Kubernetes' default 30 s terminationGracePeriodSeconds


class Preempted(SystemExit):
  """Raised out of the training loop after the preemption checkpoint is saved.

  A SystemExit, so nothing on the way (MonitoredSession, train_and_evaluate, cli.run) treats
  it as an error or prints a traceback, and the process exits with its code.
  """

  def __init__(self, step: Optional[int], checkpoint: Optional[str]):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.step = step
    self.checkpoint = checkpoint


def _flush_streams() -> None:
  try:
    logging.flush()
  except Exception:  # pylint: disable=broad-except
    pass
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # pylint: disable=broad-except
      pass


class PreemptionHook(tf.estimator.SessionRunHook):
  """Saves a checkpoint and exits when the process receives a termination signal.

  Install it on every training task (TrainSpec hooks). Signal handlers are installed in
  `begin` (training runs in the main thread) and the previous ones restored in `end`.
  """

  def __init__(self, model_dir: str, is_chief: bool = True,
               signals: Sequence[int] = (signal.SIGTERM,),
               grace_secs: float = DEFAULT_GRACE_SECS,
               exit_fn: Callable[[int], None] = os._exit):  # pylint: disable=protected-access
    """Creates the hook.

    Args:
      model_dir: the Estimator's model_dir (where the checkpoint goes).
      is_chief: only the chief saves a checkpoint.
      signals: signals treated as preemption.
      grace_secs: hard deadline after the signal for the watchdog's forced exit.
      exit_fn: how the watchdog ends the process (tests replace it).
    """
    self._model_dir = model_dir
    self._is_chief = is_chief
    self._signals = tuple(signals)
    self._grace_secs = grace_secs
    self._exit_fn = exit_fn
    self._previous = {}
    self._signalled = threading.Event()
    self._done = threading.Event()
    self._global_step = None
    self._saver = None

  @property
  def signalled(self) -> bool:
    return self._signalled.is_set()

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()
    if threading.current_thread() is not threading.main_thread():
      logging.warning("PreemptionHook: training is not in the main thread; signals not handled")
      return
    for sig in self._signals:
      self._previous[sig] = signal.signal(sig, self._on_signal)

  def _on_signal(self, signum, frame):
    del frame
    if self._signalled.is_set():
      return
    self._signalled.set()
    # No logging here: the handler may run while the main thread holds the logging lock.
    threading.Thread(target=self._watchdog, args=(signum,), name="preemption-watchdog",
                     daemon=True).start()

  def _watchdog(self, signum):
    logging.warning("received signal %d: saving a checkpoint after the current step, then "
                    "exiting with %d (at most %.0f s)", signum, PREEMPTED_EXIT_CODE,
                    self._grace_secs)
    if self._done.wait(self._grace_secs):
      return
    logging.error("preemption: still running %.1f s after signal %d; exiting with %d without "
                  "a clean checkpoint", self._grace_secs, signum, PREEMPTED_EXIT_CODE)
    _flush_streams()
    self._exit_fn(PREEMPTED_EXIT_CODE)

  def after_run(self, run_context, run_values):
    if not self._signalled.is_set():
      return
    step, checkpoint = None, None
    try:
      session = run_context.session
      if self._global_step is not None:
        step = int(session.run(self._global_step))
      if self._is_chief:
        checkpoint = self._save(session, step)
    finally:
      self._restore_handlers()
    logging.warning("preempted at step %s; %s; exiting with %d", step,
                    f"saved {checkpoint}" if checkpoint else "no checkpoint saved (not the chief)",
                    PREEMPTED_EXIT_CODE)
    _flush_streams()
    self._done.set()
    raise Preempted(step, checkpoint)

  def _save(self, session, step: Optional[int]) -> Optional[str]:
    # The scaffold's saver (what CheckpointSaverHook uses): same variables, same sharding and
    # the same rotation of old checkpoints.
    savers = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.SAVERS)
    saver = savers[0] if savers else tf.compat.v1.train.Saver(sharded=True)
    latest = tf.train.latest_checkpoint(self._model_dir)
    if latest and step is not None and latest.endswith(f"-{step}"):
      return latest  # this very step is saved already
    return saver.save(session, os.path.join(self._model_dir, "model.ckpt"), global_step=step)

  def _restore_handlers(self):
    for sig, previous in self._previous.items():
      try:
        signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
      except (ValueError, TypeError):
        pass
    self._previous = {}

  def end(self, session):
    del session
    self._restore_handlers()
    self._done.set()

