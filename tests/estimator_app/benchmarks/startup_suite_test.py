"""time_to_first_step on stand-in processes: stops at the marker line, ends the child, and
reports a child that fails first."""

import os
import sys
import time

import tensorflow as tf

from estimator_app.benchmarks import startup_suite


class StartupSuiteTest(tf.test.TestCase):

  def test_stops_at_the_first_step_line_and_ends_the_process(self):
    pid_file = os.path.join(self.create_tempdir().full_path, "pid")
    script = (f"import os, sys, time; open({pid_file!r}, 'w').write(str(os.getpid())); "
              "time.sleep(0.3); print('10:00:00 run: 1 steps, checkpoint every 1'); "
              "print('10:00:01 step 1/1 (100%) 0:01 elapsed, loss 2.3', flush=True); "
              "time.sleep(120)")
    start = time.perf_counter()
    seconds = startup_suite.time_to_first_step([sys.executable, "-c", script], ".",
                                               dict(os.environ))
    self.assertBetween(seconds, 0.3, 30.0)
    self.assertLess(time.perf_counter() - start, 60.0)
    pid = int(open(pid_file).read())
    with self.assertRaises(ProcessLookupError):
      os.kill(pid, 0)

  def test_a_process_that_fails_first_is_an_error(self):
    with self.assertRaisesRegex(startup_suite.StartupError, "(?s)exited 3.*boom"):
      startup_suite.time_to_first_step(
          [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], ".", dict(os.environ))

  def test_without_bazel_run_there_is_no_workspace(self):
    env = {k: v for k, v in os.environ.items() if k != "BUILD_WORKSPACE_DIRECTORY"}
    with tf.compat.v1.test.mock.patch.dict(os.environ, env, clear=True):
      self.assertIsNone(startup_suite.workspace_root())
    # Outside `bazel run` the children import from the tree this module was loaded from.
    self.assertTrue(os.path.exists(os.path.join(
        startup_suite.source_root(), "estimator_app", "benchmarks", "startup_suite.py")))


if __name__ == "__main__":
  tf.test.main()
