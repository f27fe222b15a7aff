"""DistributionConfig: how training is spread over devices and machines (the --strategy flags).

TensorFlow-free, so the training app can define its flags from it (and answer `--help`)
without importing TensorFlow. estimator_app/training/distribution.py turns it into a strategy
and a RunConfig, checks it against the TF_CONFIG cluster, and re-exports these names
(`distribution.DistributionConfig`, `distribution.DistributionError`) for its callers.

Entry points: `DistributionConfig`, `DistributionError`, `STRATEGIES`, `COLLECTIVES`.
"""

import dataclasses
from typing import Tuple

from input_fns import errors

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "parameter_server")
COLLECTIVES = ("auto", "ring", "nccl")


class DistributionError(errors.UserInputError):
  """A distribution flag conflicts with another flag or with the cluster."""


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
  """How training is spread over devices and machines.

  Attributes:
    strategy: default (one device; with a TF_CONFIG cluster that has ps tasks, asynchronous
      parameter-server training), mirrored (synchronous, the GPUs of one machine without
      TF_CONFIG),
      multi_worker_mirrored (synchronous, chief + workers of TF_CONFIG, collective
      all-reduce) or parameter_server (asynchronous, chief + workers + ps of TF_CONFIG).
      batch_size is always global: the examples of one global step.
    num_gpus: GPUs per machine used by mirrored (-1: every visible GPU; 0: the CPU).
    devices: explicit comma-separated devices for mirrored, e.g. "/gpu:0,/gpu:1" (overrides
      num_gpus; "/cpu:0,/cpu:1" with logical CPU devices is how tests run it).
    scale_learning_rate: multiply learning_rate by the number of replicas in sync (linear
      scaling rule; use it when batch_size grows with the replicas). Asynchronous
      parameter_server training has one replica in sync and is never scaled.
    xla: compile the training graph with XLA (auto-clustering, global_jit_level ON_1; takes
      effect on GPUs, on CPUs only with TF_XLA_FLAGS=--tf_xla_cpu_global_jit).
    max_worker_delay_secs: parameter_server: non-chief worker i waits min(5 * (i + 1), this)
      seconds before its first step (staggered starts help asynchronous training converge);
      0 starts every worker at once.
    session_timeout_secs: how long a cluster task waits for its session (the parameter servers,
      the chief's initialisation) before failing instead of hanging.
    collective: multi_worker_mirrored's all-reduce: auto (NCCL when the machine has GPUs,
      RING over gRPC on CPUs), ring or nccl.
    gpu_memory_growth: allocate GPU memory as needed instead of all of it at start (several
      processes can then share a GPU); false gives TensorFlow's default, the whole GPU.
  """
  strategy: str = "default"
  num_gpus: int = -1
  devices: str = ""
  scale_learning_rate: bool = False
  xla: bool = False
  max_worker_delay_secs: int = 60
  session_timeout_secs: int = 1800
  collective: str = "auto"
  gpu_memory_growth: bool = True

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise DistributionError(
          f"--strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if self.num_gpus < -1:
      raise DistributionError(f"--num_gpus={self.num_gpus}: expected -1 (all), 0 or more")
    if self.devices and self.strategy != "mirrored":
      raise DistributionError(
          f"--devices={self.devices!r} is only used by --strategy=mirrored, not "
          f"{self.strategy!r}")
    if self.max_worker_delay_secs < 0:
      raise DistributionError(
          f"--max_worker_delay_secs={self.max_worker_delay_secs}: expected 0 or more")
    if self.session_timeout_secs <= 0:
      raise DistributionError(
          f"--session_timeout_secs={self.session_timeout_secs}: expected more than 0")
    if self.collective not in COLLECTIVES:
      raise DistributionError(
          f"--collective={self.collective!r} is not one of {', '.join(COLLECTIVES)}")

  @property
  def device_list(self) -> Tuple[str, ...]:
    return tuple(d.strip() for d in self.devices.split(",") if d.strip())
