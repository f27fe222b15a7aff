"""//scripts:benchmark as a user runs it: a tiny write suite to a JSON file, and a bad --suite."""

import json
import os
import subprocess
import sys

import tensorflow as tf


def _run(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  return subprocess.run([sys.executable, "-m", "scripts.benchmark"] + args, env=env,
                        capture_output=True, text=True, timeout=300)


class BenchmarkScriptTest(tf.test.TestCase):

  def test_tiny_write_suite_prints_the_table_and_writes_json(self):
    out = self.create_tempdir().full_path
    proc = _run(["--suite=write", "--repetitions=3", "--scale=0.01",
                 f"--output={out}/bench.json", f"--work_dir={out}/work"])
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertRegex(proc.stdout, r"write\s+write/parallel_writer\s+[\d,.]+")
    self.assertNotIn("targets (issue 8):", proc.stdout)  # no per-model ratio was measured
    with open(os.path.join(out, "bench.json")) as f:
      result = json.load(f)
    self.assertEqual(result["meta"]["suites"], ["write"])
    self.assertEqual([n for n in os.listdir(out) if n.endswith(".tmp")], [])

  def test_unknown_suite_is_one_error_line_and_exit_2(self):
    proc = _run(["--suite=write,nope"])
    self.assertEqual(proc.returncode, 2, proc.stderr[-3000:])
    self.assertEqual(proc.stderr.strip().splitlines()[-1],
                     "error: --suite=write,nope: unknown nope; expected a comma-separated list "
                     "of accuracy, input, train, write, serve, startup, job, or all")


if __name__ == "__main__":
  tf.test.main()
