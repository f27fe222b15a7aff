r"""Runs a whole TF_CONFIG training cluster on this machine, to debug a cluster job before sending it.

  ./bazelw run //scripts:local_cluster -- --workers=1 --ps=1 --evaluator -- \
      --strategy=parameter_server --model=dnn --train_steps=500 --model_dir=runs/cluster
  ./bazelw run //scripts:local_cluster -- --workers=1 --ps=0 -- \
      --strategy=multi_worker_mirrored --train_steps=500 --model_dir=runs/mwms

Flags before the lone `--` are this launcher's; everything after it is passed unchanged to
every task's `//scripts:train` (the same flags for all, as on a real cluster). It starts a
chief, `--workers` more workers, `--ps` parameter servers and (with `--evaluator`) an
evaluator, each a separate process on its own free 127.0.0.1 port with its own TF_CONFIG,
and streams their output line by line with a role prefix ("[worker:0] ...").

GPUs: each task gets its own CUDA_VISIBLE_DEVICES, shared out of CUDA_VISIBLE_DEVICES if it
is set (so `CUDA_VISIBLE_DEVICES=2,3 ./bazelw run //scripts:local_cluster ...` confines the
job to those), else of every GPU `nvidia-smi -L` lists; estimator_app/training/local_cluster.py
states the rule. The assignment is logged once at start.

It stops when the job is done: once the chief, every worker and the evaluator have exited 0,
the parameter servers (which never exit by themselves) are stopped and it exits 0. If any
task fails, on --timeout_secs, on Ctrl-C or SIGTERM, every task still running gets SIGTERM,
then SIGKILL after --grace_secs, and it exits non-zero: 1 a task failed, 124 timeout, 130
interrupted.
"""

import os
import sys

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import paths
from estimator_app.training import local_cluster

# //scripts:train is a data dependency of //scripts:local_cluster, so train.py is beside us in
# the source tree and in the Bazel runfiles tree alike.
TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")

_WORKERS = flags.DEFINE_integer("workers", 1, "Workers besides the chief.", lower_bound=0)
_PS = flags.DEFINE_integer(
    "ps", 1, "Parameter servers (0 for --strategy=multi_worker_mirrored).", lower_bound=0)
_EVALUATOR = flags.DEFINE_boolean(
    "evaluator", True, "Also run an evaluator task that evaluates every new checkpoint.")
_TIMEOUT = flags.DEFINE_integer(
    "timeout_secs", 0, "Stop everything and fail after this many seconds (0: no limit).",
    lower_bound=0)
_GRACE = flags.DEFINE_float(
    "grace_secs", 30.0, "When stopping tasks: seconds between SIGTERM and SIGKILL.",
    lower_bound=0.0)
_TRAIN_SCRIPT = flags.DEFINE_string(
    "train_script", None, "Python script every task runs (default: scripts/train.py).")


def config_from_flags(train_args) -> local_cluster.LaunchConfig:
  """Reads the flags once into the frozen launch config; `train_args` follow the lone `--`."""
  return local_cluster.LaunchConfig(
      train_script=paths.resolve_path(_TRAIN_SCRIPT.value) if _TRAIN_SCRIPT.value
      else TRAIN_SCRIPT,
      train_args=tuple(train_args), workers=_WORKERS.value, ps=_PS.value,
      evaluator=_EVALUATOR.value, timeout_secs=_TIMEOUT.value, grace_secs=_GRACE.value)


def main(argv):
  sys.exit(local_cluster.run_cluster(config_from_flags(argv[1:])))


if __name__ == "__main__":
  cli.run(main)
