"""Startup: seconds from launching the training job to its first training step (warm machine).

  ./bazelw run //scripts:benchmark -- --suite=startup

Each measurement launches a fresh process training `dnn` for one step on the embedded digits
dataset (written once under work_dir) into a new model_dir, and stops the clock at its first
progress line "step 1/1 ..." (logged right after step 1), then ends that process (its own
process group, started here). Variants, alternated (harness.alternate, one warm-up call each,
so Bazel's analysis cache and the OS page cache are warm):

  startup/bazel_run_to_first_step    ./bazelw run //scripts:train -- ...  (what a user types;
                                     only under `bazel run`, which tells us the workspace, and
                                     includes waiting for the Bazel server shared with others)
  startup/python_to_first_step       python -m scripts.train ... (interpreter + imports + graph
                                     + session, no Bazel): how much of the above is Bazel's

A process that ends without the line counts until it ends (its exit status must be 0).
"""

import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from estimator_app.benchmarks import accuracy_suite
from estimator_app.benchmarks import harness
from estimator_app.benchmarks import options as options_lib

SUITE = "startup"
FIRST_STEP_LINE = " step 1/1 "  # estimator_app.training.hooks.StepLoggingHook, --train_steps=1
TIMEOUT_S = 300.0


class StartupError(RuntimeError):
  """The training process failed before its first step."""


def workspace_root() -> Optional[str]:
  """The source tree when run by `bazel run` (it sets BUILD_WORKSPACE_DIRECTORY), else None."""
  root = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  return root if root and os.path.exists(os.path.join(root, "bazelw")) else None


def source_root() -> str:
  """The directory holding the `scripts` package (workspace, runfiles or source checkout)."""
  root = workspace_root()
  if root:
    return root
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.dirname(os.path.dirname(here))


def time_to_first_step(argv: Sequence[str], cwd: str, env: Dict[str, str]) -> float:
  """Seconds from starting `argv` until it logs FIRST_STEP_LINE (or exits with status 0).

  Raises:
    StartupError: the process exited non-zero or ran past TIMEOUT_S before the first step.
  """
  start = time.perf_counter()
  proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  tail: List[str] = []
  try:
    for line in proc.stdout:
      if FIRST_STEP_LINE in line:
        return time.perf_counter() - start
      tail = (tail + [line])[-20:]
      if time.perf_counter() - start > TIMEOUT_S:
        raise StartupError(f"{argv[0]}: no first step after {TIMEOUT_S:.0f}s")
    code = proc.wait()
    if code != 0:
      raise StartupError(f"{' '.join(argv)} exited {code} before its first step:\n"
                         + "".join(tail))
    return time.perf_counter() - start
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, 15)  # the group we created for this child alone
      proc.wait()
    proc.stdout.close()


def _train_args(data_dir: str, work_dir: str) -> List[str]:
  model_dir = tempfile.mkdtemp(prefix="startup-", dir=work_dir)
  return ["--model=dnn", "--train_steps=1", f"--data_dir={data_dir}",
          f"--model_dir={os.path.join(model_dir, 'run')}"]


def run(opts: options_lib.BenchmarkOptions) -> Tuple[List[harness.Figure], Dict[str, object]]:
  """Measures each way of starting the job `opts.repetitions` times, alternated.

  Returns:
    (figures, ratios): seconds to the first step per variant; ratios holds bazel_share (the
    fraction of the bazel run time not spent in Python) when the Bazel variant ran.
  """
  os.makedirs(opts.work_dir, exist_ok=True)
  accuracy_suite.digits_dataset(opts.work_dir)  # written once to <work_dir>/digits
  data_dir = os.path.join(opts.work_dir, "digits")
  # Nothing of this process's Bazel runfiles setup leaks into the children: its PYTHONPATH
  # holds runfiles packages with generated __init__.py files that would shadow the source tree.
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("BUILD_", "RUNFILES", "PYTHON"))}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  src = source_root()
  py_env = dict(env, PYTHONPATH=src)
  variants = {
      "startup/python_to_first_step": lambda: time_to_first_step(
          [sys.executable, "-m", "scripts.train", *_train_args(data_dir, opts.work_dir)],
          src, py_env),
  }
  root = workspace_root()
  if root:
    variants["startup/bazel_run_to_first_step"] = lambda: time_to_first_step(
        ["./bazelw", "run", "//scripts:train", "--", *_train_args(data_dir, opts.work_dir)],
        root, env)
  samples = harness.alternate(variants, repetitions=opts.repetitions)
  figures = [harness.figure(SUITE, name, "s", s) for name, s in samples.items()]
  med = {f.name: f.median for f in figures}
  ratios: Dict[str, object] = {}
  if root:
    bazel = med["startup/bazel_run_to_first_step"]
    ratios["startup/bazel share of time to first step"] = (
        1.0 - med["startup/python_to_first_step"] / bazel)
  else:
    ratios["startup/bazel_run_to_first_step"] = "skipped: not under `bazel run`"
  return figures, ratios
