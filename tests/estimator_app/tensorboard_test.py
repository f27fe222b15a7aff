"""A real TensorBoard over a finished run serves the same scalars estimator_app.analysis.reporting reads.

Starts `python -m tensorboard.main` on 127.0.0.1 (port 0: the server picks a free port and
prints it) and reads its HTTP API: /data/plugin/scalars/tags and /data/plugin/scalars/scalars.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import tensorflow as tf

from estimator_app.analysis import reporting
from tests.testing import finished_run

_STARTUP_TIMEOUT_S = 120
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")
# Loopback must never go through an HTTP proxy the environment may set.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tb_run(source: str) -> str:
  """TensorBoard names the logdir itself "." and sub-directories by their relative path."""
  return "." if source == reporting.TRAIN else source


class TensorBoardTest(tf.test.TestCase):

  def _start_tensorboard(self, logdir: str) -> str:
    """Starts TensorBoard on logdir; returns its base URL once it answers. Always stopped."""
    scratch = self.create_tempdir("tensorboard").full_path
    log_path = os.path.join(scratch, "tensorboard.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=scratch,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    with open(log_path, "wb") as log:
      proc = subprocess.Popen(
          [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
           "--port", "0", "--load_fast=false", "--reload_interval=1"],
          stdout=log, stderr=subprocess.STDOUT, env=env, cwd=scratch)
    self.addCleanup(self._stop, proc)
    deadline = time.time() + _STARTUP_TIMEOUT_S
    while time.time() < deadline:
      with open(log_path, errors="replace") as f:
        match = _URL.search(f.read())
      if match:
        return f"http://127.0.0.1:{match.group(1)}"
      if proc.poll() is not None:
        break
      time.sleep(0.2)
    with open(log_path, errors="replace") as f:
      self.fail(f"TensorBoard did not start (exit code {proc.poll()}):\n{f.read()[-3000:]}")

  @staticmethod
  def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
      proc.terminate()
      try:
        proc.wait(timeout=15)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)

  @staticmethod
  def _get(url: str):
    with _OPENER.open(url, timeout=10) as response:
      return json.loads(response.read().decode("utf-8"))

  def _wait_for_tags(self, base: str, expected) -> dict:
    """Polls the tags endpoint until TensorBoard has loaded every expected run and tag."""
    deadline = time.time() + _STARTUP_TIMEOUT_S
    tags = {}
    while time.time() < deadline:
      try:
        tags = self._get(f"{base}/data/plugin/scalars/tags")
      except OSError:  # not listening yet
        tags = {}
      if all(set(want) <= set(tags.get(run, {})) for run, want in expected.items()):
        return tags
      time.sleep(0.5)
    self.fail(f"TensorBoard never served {expected}; last answer: {tags}")

  def test_tensorboard_serves_what_reporting_reads(self):
    logdir = self.create_tempdir("run").full_path
    finished_run.train_run(logdir)
    # A TF2-style source too: its values travel in tensor protos, not simple_value.
    finished_run.write_tf2_scalars(os.path.join(logdir, "eval_quick"),
                                   {"accuracy": [(10, 0.625), (30, 0.8125)]})
    # A resumed attempt: both must drop what the rolled-back attempt logged after step 31.
    resumed = os.path.join(logdir, "resumed")
    finished_run.write_tf1_scalars(resumed, {"loss": [(1, 1.0), (21, 0.5), (41, 0.25)]},
                                   suffix=".a", start_step=1)
    finished_run.write_tf1_scalars(resumed, {"loss": [(51, 0.125)]}, suffix=".b", start_step=31)
    run = reporting.read_run(logdir)
    expected = {_tb_run(src): set(run.tags(src)) for src in run.sources()}
    self.assertGreaterEqual(expected["."], {"loss"})
    self.assertGreaterEqual(expected["eval"], {"accuracy", "loss"})

    base = self._start_tensorboard(logdir)
    served = self._wait_for_tags(base, expected)

    # Every scalar curve TensorBoard shows is one reporting found, and the reverse.
    self.assertEqual({r: set(t) for r, t in served.items()}, expected)
    for series in run.series:
      query = urllib.parse.urlencode({"run": _tb_run(series.source), "tag": series.tag})
      points = self._get(f"{base}/data/plugin/scalars/scalars?{query}")
      with self.subTest(source=series.source, tag=series.tag):
        self.assertEqual([p[1] for p in points], list(series.steps))
        self.assertEqual([p[2] for p in points], list(series.values))
        self.assertAllClose([p[0] for p in points], series.wall_times, atol=1e-3)
    quick = self._get(f"{base}/data/plugin/scalars/scalars?run=eval_quick&tag=accuracy")
    self.assertEqual([(p[1], p[2]) for p in quick], [(10, 0.625), (30, 0.8125)])
    resumed_loss = self._get(f"{base}/data/plugin/scalars/scalars?run=resumed&tag=loss")
    self.assertEqual([(p[1], p[2]) for p in resumed_loss], [(1, 1.0), (21, 0.5), (51, 0.125)])


if __name__ == "__main__":
  tf.test.main()
