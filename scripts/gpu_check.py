r"""Checks training on this machine's GPUs in one command (under 8 minutes), printed as tables.

  ./bazelw run //scripts:gpu_check
  ./bazelw run //scripts:gpu_check -- --budget_secs=300 --run_steps=300 --work_dir=/tmp/gc

On a machine without a GPU it prints one line saying so and exits 0, having run nothing. With
one, it trains dnn and lenet5 with scripts/train.py and prints the devices, steps/s (float32
vs float16, with and without XLA, batch 256 and 1024, mirrored over every GPU), the export
parity check per precision, GPU utilisation and the input pipeline's verdict;
estimator_app/benchmarks/gpu_check.py says how each figure is measured. A run that would not
fit in what is left of --budget_secs is listed as skipped, not started.

Exit codes: 0 no GPU, or every run finished and every export passed its parity check; 1 a
failed check: nvidia-smi sees a GPU that TensorFlow does not (no CUDA libraries in this
Python: install deploy/requirements_gpu.txt, or use the deploy/Dockerfile.gpu image), a
training run failed or timed out, or an export failed its parity check. The work directory
(logs, model_dirs) is kept when a check failed, and named.
"""

import os
import sys

from absl import app
from absl import flags

from estimator_app.benchmarks import gpu_check

# //scripts:train is a data dependency of //scripts:gpu_check, so train.py is beside us in the
# source tree and in the Bazel runfiles tree alike.
TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")

_BUDGET = flags.DEFINE_float(
    "budget_secs", 450.0, "Start no training run later than this many seconds after the "
    "start (runs left are reported as skipped); the default keeps the check under 8 minutes.",
    lower_bound=60.0)
# Not --train_steps: that is scripts/train.py's flag, which this passes on to every run.
_RUN_STEPS = flags.DEFINE_integer(
    "run_steps", 600, f"Training steps per timed run (logged every {gpu_check.LOG_EVERY_STEPS}; "
    "the first logged interval is not timed).",
    lower_bound=(gpu_check.SKIPPED_INTERVALS + 2) * gpu_check.LOG_EVERY_STEPS)
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Where the runs' data, model_dirs and logs go (default: a temporary "
    "directory, removed when every check passed).")


def config_from_flags() -> gpu_check.CheckConfig:
  """Reads the flags once into the frozen check config."""
  work_dir = _WORK_DIR.value
  if work_dir and not os.path.isabs(work_dir):  # `bazel run` starts in the runfiles tree
    work_dir = os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd(), work_dir)
  return gpu_check.CheckConfig(train_script=TRAIN_SCRIPT, budget_secs=_BUDGET.value,
                               run_steps=_RUN_STEPS.value, work_dir=work_dir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sys.exit(gpu_check.check(config_from_flags()))


if __name__ == "__main__":
  # Not scripts.cli.run: it imports TensorFlow, and the no-GPU answer must take no time.
  app.run(main)
