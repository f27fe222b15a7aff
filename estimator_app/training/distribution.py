"""Distributed and multi-device training: strategies, TF_CONFIG clusters, who writes what.

Strategies (`DistributionConfig.strategy`, one flag `--strategy`; the config itself lives in
estimator_app/training/distribution_config.py, TensorFlow-free, and is re-exported here):

  default                No tf.distribute strategy. Without TF_CONFIG: one device. With a
                         TF_CONFIG cluster that has parameter servers: the Estimator's own
                         between-graph training (same as parameter_server); a chief alone
                         (maybe with an evaluator) trains on its own.
  mirrored               One machine without TF_CONFIG, synchronous: one replica per GPU
                         (`num_gpus`), or per device listed in `devices`; gradients are
                         all-reduced every step. (Under TF_CONFIG, even a chief alone, use
                         multi_worker_mirrored: the Estimator gives a strategy the cluster,
                         which MirroredStrategy refuses.)
  multi_worker_mirrored  Several machines, synchronous: chief + workers from TF_CONFIG, each
                         with its local GPUs, collective all-reduce over gRPC; no ps.
  parameter_server       Several machines, asynchronous: the chief and workers each run their
                         own steps against variables held by the `ps` tasks of TF_CONFIG
                         (the Estimator's native between-graph replication).

Batch size: `--batch_size` is always the number of examples in one global step. Synchronous
strategies split it over the replicas in sync (each gets batch_size / replicas, so it must
divide evenly); with parameter_server every worker step is one global step of batch_size
examples. So `train_steps * batch_size` examples are seen whatever the cluster, and a run on
2 replicas follows the single-device run step for step. `scale_learning_rate` multiplies the
learning rate by the number of replicas in sync (the linear scaling rule), for users who grow
batch_size with the replicas; it is off by default because batch_size is global.

Evaluation is never distributed (eval_distribute is None): metrics are computed on one device
over the whole eval set, exactly as a single-device run computes them.

Gradients: on several replicas in sync, clipping by global norm applies to the all-reduced
gradient (model_fns/model_fn.py), so --clip_norm means the same on 8 GPUs as on one.
All-reduce: NcclAllReduce for the GPUs of one machine; multi_worker_mirrored uses NCCL
collectives when the machine has GPUs and RING (gRPC) on CPUs (`--collective` overrides).

GPU memory: with gpu_memory_growth (the default) TensorFlow allocates GPU memory as it needs
it instead of taking all of it at start, so processes that share a GPU (a local cluster, a
warm-up or validation process beside training) do not starve each other; the export parity
check runs in a process that sees no GPU at all.

TF_CONFIG (the environment variable Kubeflow TFJob and cloud training services set) is
validated by `current_task` before anything starts: JSON object; `cluster` maps chief (or the
legacy master), worker and ps to lists of "host:port"; exactly one chief or master; the
evaluator is the task type only, never a job of `cluster` (it is not part of the training
cluster; tasks that listed it would wait for it forever); the task index is in range.

Who does what in a cluster (`ClusterTask` properties):

  chief/master  trains, saves checkpoints and summaries, writes config.json, the run record
                and the SavedModel exports (after training, from the final checkpoint).
  worker        trains only. Never waits for the evaluator: its session only talks to the
                ps tasks and itself (device filters), and it never evaluates.
  ps            holds variables; runs until its orchestrator stops it (it never exits alone).
  evaluator     evaluates every new checkpoint, exits after the one at train_steps; runs no
                exporter that writes a SavedModel.
"""

import dataclasses
import ipaddress
import json
import os
import re
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from estimator_app.training import distribution_config

# Names other packages import from this module since before distribution_config.py held them.
STRATEGIES = distribution_config.STRATEGIES
COLLECTIVES = distribution_config.COLLECTIVES
DistributionError = distribution_config.DistributionError
DistributionConfig = distribution_config.DistributionConfig

CHIEF = "chief"
MASTER = "master"  # the legacy name of the chief
WORKER = "worker"
PS = "ps"
EVALUATOR = "evaluator"
LOCAL = "local"  # the role of a process with no TF_CONFIG cluster
CLUSTER_JOBS = (CHIEF, MASTER, WORKER, PS)
TASK_TYPES = CLUSTER_JOBS + (EVALUATOR,)

TF_CONFIG_ENV = "TF_CONFIG"

# How often a separate evaluator looks for a new checkpoint. train_and_evaluate's throttle of 0
# (right for local runs, where a new checkpoint triggers the evaluation) would make the
# evaluator spin, logging a warning many times a second, on a CPU the trainers need.
EVALUATOR_POLL_SECS = 5

# Estimator staggers non-chief workers by 5 s each for asynchronous training.
_WORKER_DELAY_STEP_SECS = 5


class TfConfigError(DistributionError):
  """The TF_CONFIG environment variable is malformed."""


# --- TF_CONFIG ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterTask:
  """This process's place in a TF_CONFIG cluster.

  Attributes:
    cluster: job name -> task addresses ("host:port"), the training cluster (no evaluator).
    task_type: chief, master, worker, ps or evaluator.
    task_index: index of this task within its job.
  """
  cluster: Mapping[str, Tuple[str, ...]]
  task_type: str
  task_index: int

  @property
  def chief_job(self) -> str:
    return MASTER if MASTER in self.cluster else CHIEF

  @property
  def is_chief(self) -> bool:
    """The one task that saves checkpoints and writes config, run record and exports."""
    return self.task_type in (CHIEF, MASTER)

  @property
  def is_evaluator(self) -> bool:
    return self.task_type == EVALUATOR

  @property
  def is_ps(self) -> bool:
    return self.task_type == PS

  @property
  def trains(self) -> bool:
    return self.task_type in (CHIEF, MASTER, WORKER)

  @property
  def num_workers(self) -> int:
    """Training tasks: the chief (or master) plus the workers."""
    return sum(len(self.cluster.get(j, ())) for j in (CHIEF, MASTER, WORKER))

  @property
  def num_ps(self) -> int:
    return len(self.cluster.get(PS, ()))

  @property
  def worker_index(self) -> Optional[int]:
    """Index among the training tasks (chief 0, worker i is i + 1); None for ps/evaluator."""
    if self.is_chief:
      return 0
    if self.task_type == WORKER:
      return len(self.cluster.get(CHIEF, ())) + len(self.cluster.get(MASTER, ())) + self.task_index
    return None

  @property
  def name(self) -> str:
    return f"{self.task_type}:{self.task_index}"


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$")


def _check_address(address: Any, where: str) -> str:
  if not isinstance(address, str):
    raise TfConfigError(f"TF_CONFIG {where} is {address!r}; expected a \"host:port\" string")
  host, colon, port = address.rpartition(":")
  if host.startswith("[") and host.endswith("]"):  # [IPv6]:port
    try:
      ipaddress.IPv6Address(host[1:-1])
    except ValueError:
      host = ""
  elif not _HOST.match(host):
    host = ""
  if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise TfConfigError(f"TF_CONFIG {where} is {address!r}; expected \"host:port\" with a port "
                        f"in 1-65535 (e.g. \"10.0.0.2:2222\")")
  return address


def _index(value: Any) -> Optional[int]:
  if isinstance(value, bool):
    return None
  if isinstance(value, int):
    return value
  if isinstance(value, str) and value.isdigit():
    return int(value)
  return None


def parse_tf_config(text: Optional[str]) -> Optional[ClusterTask]:
  """Validates a TF_CONFIG value and returns this task's place in the cluster.

  Args:
    text: the TF_CONFIG JSON; None or blank for a run without a cluster.

  Returns:
    The task, or None when `text` is empty or "{}" (a local run).

  Raises:
    TfConfigError: one sentence naming what is wrong: not JSON, not an object, no cluster, an
      unknown job, an evaluator inside the cluster, not exactly one chief (or master), a job
      that is not a list of "host:port" addresses, an address used twice, a missing or
      unknown task type, or a task index out of range.
  """
  if text is None or not text.strip():
    return None
  try:
    d = json.loads(text)
  except json.JSONDecodeError as e:
    raise TfConfigError(f"TF_CONFIG is not valid JSON: {e.msg} at line {e.lineno}, column "
                        f"{e.colno}") from None
  if not isinstance(d, dict):
    raise TfConfigError(f"TF_CONFIG must be a JSON object with \"cluster\" and \"task\", got "
                        f"{type(d).__name__} {text.strip()[:40]!r}")
  if not d:
    return None
  cluster = d.get("cluster")
  if not isinstance(cluster, dict) or not cluster:
    raise TfConfigError("TF_CONFIG has no \"cluster\" object mapping jobs (chief, worker, ps) "
                        "to lists of \"host:port\" addresses")
  if EVALUATOR in cluster:
    raise TfConfigError(
        "TF_CONFIG lists \"evaluator\" in \"cluster\"; the evaluator is not part of the training "
        "cluster (the other tasks would wait for it): give it only as "
        "\"task\": {\"type\": \"evaluator\", \"index\": 0}, with the same \"cluster\" as the others")
  unknown = sorted(set(cluster) - set(CLUSTER_JOBS))
  if unknown:
    raise TfConfigError(f"TF_CONFIG cluster has unknown job(s) {unknown}; known jobs: "
                        f"{', '.join(CLUSTER_JOBS)}")
  jobs: Dict[str, Tuple[str, ...]] = {}
  seen: Dict[str, str] = {}
  for job, addresses in cluster.items():
    if not isinstance(addresses, list) or not addresses:
      raise TfConfigError(f"TF_CONFIG cluster.{job} is {addresses!r}; expected a non-empty list "
                          f"of \"host:port\" addresses")
    for i, address in enumerate(addresses):
      _check_address(address, f"cluster.{job}[{i}]")
      if address in seen:
        raise TfConfigError(f"TF_CONFIG cluster.{job}[{i}] {address!r} is also {seen[address]}; "
                            f"every task needs its own address")
      seen[address] = f"{job}[{i}]"
    jobs[job] = tuple(addresses)
  if CHIEF in jobs and MASTER in jobs:
    raise TfConfigError("TF_CONFIG cluster has both \"chief\" and \"master\"; give exactly one "
                        "chief (\"master\" is its legacy name)")
  chiefs = jobs.get(CHIEF, jobs.get(MASTER, ()))
  if len(chiefs) != 1:
    job = MASTER if MASTER in jobs else CHIEF
    raise TfConfigError(f"TF_CONFIG cluster has {len(chiefs)} {job} task(s); exactly one chief "
                        f"is needed (it saves checkpoints and writes the exports)")

  task = d.get("task")
  if not isinstance(task, dict) or "type" not in task:
    raise TfConfigError("TF_CONFIG has no \"task\" object with this process's \"type\" and "
                        "\"index\", e.g. {\"type\": \"worker\", \"index\": 0}")
  task_type = task["type"]
  if task_type not in TASK_TYPES:
    raise TfConfigError(f"TF_CONFIG task type {task_type!r} is not one of "
                        f"{', '.join(TASK_TYPES)}")
  if task_type == EVALUATOR and MASTER in jobs:
    raise TfConfigError("TF_CONFIG has an evaluator task with a \"master\" cluster; the legacy "
                        "master evaluates itself: rename the master to \"chief\" to use an "
                        "evaluator")
  if task_type != EVALUATOR and task_type not in jobs:
    raise TfConfigError(f"TF_CONFIG task type {task_type!r} has no job in cluster (jobs: "
                        f"{', '.join(sorted(jobs))})")
  index = _index(task.get("index", 0))
  size = 1 if task_type == EVALUATOR else len(jobs[task_type])
  if index is None or not 0 <= index < size:
    raise TfConfigError(f"TF_CONFIG task index {task.get('index')!r} is out of range for "
                        f"{task_type!r}: expected an integer in [0, {size})")
  return ClusterTask(cluster=jobs, task_type=task_type, task_index=index)


def current_task(environ: Optional[Mapping[str, str]] = None) -> Optional[ClusterTask]:
  """This process's task from the TF_CONFIG environment variable (None: not a cluster run).

  Raises:
    TfConfigError: TF_CONFIG is malformed (see parse_tf_config).
  """
  environ = os.environ if environ is None else environ
  return parse_tf_config(environ.get(TF_CONFIG_ENV))


def check(cfg: DistributionConfig, task: Optional[ClusterTask]) -> None:
  """Checks that the strategy fits the cluster (or its absence).

  Raises:
    DistributionError: a multi-machine strategy without TF_CONFIG, mirrored in a cluster,
      multi_worker_mirrored with ps tasks, parameter-server training without ps tasks, or
      several GPUs per worker with parameter_server.
  """
  s = cfg.strategy
  if s in ("multi_worker_mirrored", "parameter_server") and task is None:
    raise DistributionError(
        f"--strategy={s} needs a cluster: set TF_CONFIG (//scripts:local_cluster does it on one "
        f"machine), or use --strategy=mirrored for the GPUs of this machine")
  if task is None:
    return
  if s == "mirrored":
    # Under TF_CONFIG the Estimator hands a strategy the cluster, and MirroredStrategy refuses
    # one (even a chief alone); multi_worker_mirrored uses each machine's GPUs the same way.
    raise DistributionError(
        "--strategy=mirrored is for one machine without TF_CONFIG, but TF_CONFIG is set; use "
        "--strategy=multi_worker_mirrored (also for a one-machine job that sets TF_CONFIG) or "
        "parameter_server (with ps)")
  if s == "multi_worker_mirrored" and task.num_ps:
    raise DistributionError(
        "--strategy=multi_worker_mirrored all-reduces between workers and uses no parameter "
        "servers, but TF_CONFIG lists ps tasks; drop them or use --strategy=parameter_server")
  # A chief alone (a one-machine job of a training service, maybe with an evaluator) needs
  # no ps; several trainers without a strategy share variables only through ps tasks.
  if (s == "parameter_server" or (s == "default" and task.num_workers > 1)) and not task.num_ps:
    raise DistributionError(
        f"--strategy={s} in a TF_CONFIG cluster keeps variables on parameter servers, but "
        f"the cluster lists no ps task; add ps tasks or use --strategy=multi_worker_mirrored")
  if s in ("default", "parameter_server") and cfg.num_gpus > 1:
    raise DistributionError(
        f"--num_gpus={cfg.num_gpus} with --strategy={s}: parameter-server workers use one "
        f"device each; use --strategy=multi_worker_mirrored for several GPUs per worker")


# --- Strategies and RunConfig ----------------------------------------------------------------


def _mirrored_devices(cfg: DistributionConfig) -> Tuple[str, ...]:
  if cfg.device_list:
    return cfg.device_list
  gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
  if cfg.num_gpus > len(gpus):
    raise DistributionError(f"--num_gpus={cfg.num_gpus} but this machine has {len(gpus)} "
                            f"GPU(s)")
  if cfg.num_gpus >= 0:
    gpus = gpus[:cfg.num_gpus]
  if not gpus:
    logging.warning("--strategy=mirrored without GPUs: one replica on the CPU")
    return ("/cpu:0",)
  return tuple(gpus)


def configure_gpus(cfg: DistributionConfig) -> None:
  """Applies gpu_memory_growth to every visible GPU; call before anything uses a device.

  No-op without GPUs. Once TensorFlow has initialised its devices the setting can no longer
  change; then the session configs (session_config) still carry it for graph sessions.
  """
  for gpu in tf.config.list_physical_devices("GPU"):
    try:
      tf.config.experimental.set_memory_growth(gpu, cfg.gpu_memory_growth)
    except RuntimeError:  # devices already initialised (a second run in one process)
      pass


def collective_communication(cfg: DistributionConfig, num_gpus: int):
  """multi_worker_mirrored's all-reduce: NCCL for GPUs, RING over gRPC for CPUs."""
  choice = cfg.collective
  if choice == "auto":
    choice = "nccl" if num_gpus > 0 else "ring"
  comm = tf.distribute.experimental.CollectiveCommunication
  return comm.NCCL if choice == "nccl" else comm.RING


def make_strategies(cfg: DistributionConfig, task: Optional[ClusterTask] = None):
  """The (train_distribute, eval_distribute) pair for RunConfig.

  Evaluation is never distributed (see the module docstring), so eval_distribute is None.

  Args:
    cfg: the distribution settings.
    task: this process's cluster task (current_task()), None without a cluster.

  Returns:
    (tf.distribute.Strategy or None, None).

  Raises:
    DistributionError: the strategy does not fit the cluster, or more GPUs than there are.
  """
  check(cfg, task)
  if cfg.strategy == "mirrored":
    devices = _mirrored_devices(cfg)
    # The Estimator builds a graph; MirroredStrategy picks collective ops for CPU devices,
    # which deadlock in graph mode (measured on TF 2.15). Reducing to one device is what
    # graph-mode MirroredStrategy used on CPUs; NCCL is the graph-mode GPU all-reduce.
    if any("gpu" not in d.lower() for d in devices):
      cross_device_ops = tf.distribute.ReductionToOneDevice()
    else:
      cross_device_ops = tf.distribute.NcclAllReduce()
    return tf.distribute.MirroredStrategy(list(devices), cross_device_ops=cross_device_ops), None
  if cfg.strategy == "multi_worker_mirrored":
    if task.is_evaluator:
      return None, None  # the evaluator is outside the collective group
    num_gpus = len(tf.config.list_physical_devices("GPU"))
    return tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy(
        communication=collective_communication(cfg, num_gpus)), None
  # default / parameter_server: no strategy; with a cluster the Estimator places variables on
  # the ps tasks itself (between-graph replication, one input pipeline per worker).
  return None, None


def session_config(cfg: DistributionConfig, task: Optional[ClusterTask],
                   training: bool = True) -> tf.compat.v1.ConfigProto:
  """The session config of every Estimator session of this task.

  GPU memory growth as configured. For training, XLA as configured (evaluation, prediction
  and export run as serving runs: without it). For parameter-server training it carries the
  device filters the Estimator would set only when given no session config: the chief and each
  worker talk to the ps tasks and themselves, never to other workers or an evaluator, so no
  task waits for one that is missing, finished or restarting.
  """
  config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
  config.gpu_options.allow_growth = cfg.gpu_memory_growth
  if cfg.xla and training:
    config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
  if task is not None and cfg.strategy in ("default", "parameter_server"):
    if task.is_chief:
      config.device_filters.extend(["/job:ps", f"/job:{task.task_type}"])
    elif task.task_type == WORKER:
      config.device_filters.extend(["/job:ps", f"/job:worker/task:{task.task_index}"])
  return config


def run_config_kwargs(cfg: DistributionConfig, task: Optional[ClusterTask] = None,
                      strategies=None) -> Dict[str, Any]:
  """The distribution-related keyword arguments of tf.estimator.RunConfig.

  Args:
    cfg: the distribution settings.
    task: this process's cluster task, None without a cluster.
    strategies: a (train_distribute, eval_distribute) pair from make_strategies; made here
      when None.

  Returns:
    {train_distribute, eval_distribute, session_config, experimental_max_worker_delay_secs,
     session_creation_timeout_secs}; pass them to RunConfig together with its other arguments.

  Raises:
    DistributionError: as make_strategies.
  """
  train_distribute, eval_distribute = strategies or make_strategies(cfg, task)
  return dict(
      train_distribute=train_distribute,
      eval_distribute=eval_distribute,
      session_config=session_config(cfg, task),
      experimental_max_worker_delay_secs=cfg.max_worker_delay_secs,
      session_creation_timeout_secs=cfg.session_timeout_secs)


def worker_start_delay_secs(cfg: DistributionConfig, task: Optional[ClusterTask]) -> int:
  """How long the Estimator makes this task wait before training (parameter-server workers)."""
  if task is None or task.task_type != WORKER or cfg.strategy == "multi_worker_mirrored":
    return 0
  return min(cfg.max_worker_delay_secs, (task.task_index + 1) * _WORKER_DELAY_STEP_SECS)


def num_replicas(train_distribute) -> int:
  """Replicas whose gradients are combined in each step (1 without a strategy)."""
  return int(train_distribute.num_replicas_in_sync) if train_distribute is not None else 1


def learning_rate(base: float, cfg: DistributionConfig, train_distribute) -> float:
  """`base`, times the replicas in sync when scale_learning_rate is on."""
  if not cfg.scale_learning_rate:
    return base
  return base * num_replicas(train_distribute)


def check_batch_size(batch_size: int, train_distribute) -> None:
  """A global batch must split evenly over the replicas in sync.

  Raises:
    DistributionError: naming the flag and the replica count.
  """
  n = num_replicas(train_distribute)
  if batch_size % n:
    raise DistributionError(f"--batch_size={batch_size} is the global batch and must be a "
                            f"multiple of the {n} replicas in sync")


def per_worker_input(task: Optional[ClusterTask], train_distribute) -> Tuple[int, int]:
  """(num_workers, worker_index) for the training InputConfig.

  A strategy hands the input_fn its own input_context, so then the input config says
  (1, 0); parameter-server workers get no input_context and are told their part here, so
  each reads a disjoint part of the data. The evaluator and ps read no training data.
  """
  if train_distribute is not None or task is None or not task.trains:
    return 1, 0
  return task.num_workers, task.worker_index


# --- Roles --------------------------------------------------------------------------------


def role(task: Optional[ClusterTask]) -> str:
  """This process's role in the run: LOCAL (no cluster), CHIEF (chief or master), WORKER, PS
  or EVALUATOR."""
  if task is None:
    return LOCAL
  return CHIEF if task.is_chief else task.task_type


def writes_outputs(task: Optional[ClusterTask]) -> bool:
  """Whether this task writes config.json, the run record and the SavedModel exports."""
  return task is None or task.is_chief


def can_quick_eval(task: Optional[ClusterTask]) -> bool:
  """InMemoryEvaluatorHook works only in a single process (it refuses ps/multi-worker)."""
  return task is None


def eval_spec_timing(task: Optional[ClusterTask]) -> Dict[str, int]:
  """EvalSpec start_delay_secs / throttle_secs for this task.

  Locally every new checkpoint triggers an evaluation (no throttle needed); a separate
  evaluator polls for new checkpoints every EVALUATOR_POLL_SECS.
  """
  if task is not None and task.is_evaluator:
    return dict(start_delay_secs=0, throttle_secs=EVALUATOR_POLL_SECS)
  return dict(start_delay_secs=0, throttle_secs=0)


def serve_parameter_server(cfg: DistributionConfig, task: ClusterTask) -> None:
  """A ps task's whole life: serve variables until the orchestrator stops the process.

  The same as train_and_evaluate does for a ps task, without building a model or reading
  data first. Never returns.
  """
  if not task.is_ps:
    raise ValueError(f"{task.name} is not a ps task")
  server = tf.distribute.Server(tf.train.ClusterSpec(dict(task.cluster)), job_name=PS,
                                task_index=task.task_index, config=session_config(cfg, task),
                                start=True)
  logging.info("parameter server %s serving at %s", task.name, server.target)
  server.join()


def wait_for_path(path: str, timeout_secs: float, what: str, poll_secs: float = 1.0) -> None:
  """Waits until `path` exists (e.g. the dataset the chief writes before training).

  Raises:
    DistributionError: it did not appear within timeout_secs.
  """
  deadline = time.monotonic() + timeout_secs
  while not tf.io.gfile.exists(path):
    if time.monotonic() > deadline:
      raise DistributionError(f"{what} {path} did not appear within {timeout_secs:.0f} s")
    time.sleep(poll_secs)


def own_event_files(task: Optional[ClusterTask], logdirs: Sequence[str]) -> None:
  """Gives this task's event files in `logdirs` names no other task of the cluster uses.

  TF1 event files are named events.out.tfevents.<seconds>.<hostname>, with no process id: two
  tasks on one host (a local cluster, or containers sharing a hostname) that open a writer on
  the same directory in the same second append to one file and corrupt it. The chief's final
  evaluation and the evaluator's last one both write model_dir/eval at the end of a run.
  Estimator.evaluate writes through FileWriterCache, so this puts in the cache, for each
  directory, a writer whose file names end in ".<task type>-<index>". No-op without a cluster.
  """
  if task is None:
    return
  suffix = f".{task.task_type}-{task.task_index}"
  cache = tf.compat.v1.summary.FileWriterCache
  with cache._lock, tf.Graph().as_default():  # pylint: disable=protected-access
    for logdir in logdirs:  # (a v1 FileWriter must be made in graph mode; it writes any graph's)
      if logdir not in cache._cache:  # pylint: disable=protected-access
        cache._cache[logdir] = tf.compat.v1.summary.FileWriter(  # pylint: disable=protected-access
            logdir, filename_suffix=suffix)


def final_evaluate_and_export(estimator: tf.estimator.Estimator, eval_input_fn,
                              exporters: Sequence[tf.estimator.Exporter] = (),
                              name: Optional[str] = None):
  """The chief's end of a cluster run: evaluates the final checkpoint, runs the exporters.

  In a cluster train_and_evaluate returns None on the chief and runs exporters only on the
  evaluator (if there is one); this gives the chief the final metrics and makes it the one
  writer of exports, with or without an evaluator. Exports go where train_and_evaluate puts
  them: model_dir/export/<exporter name>.

  Returns:
    (eval_result, {exporter name: its export's return value}).
  """
  checkpoint = tf.train.latest_checkpoint(estimator.model_dir)
  result = estimator.evaluate(eval_input_fn, checkpoint_path=checkpoint, name=name)
  base = os.path.join(estimator.model_dir, "export")
  exports = {}
  for exporter in exporters:
    exports[exporter.name] = exporter.export(
        estimator, os.path.join(base, exporter.name), checkpoint, result,
        is_the_final_export=True)
  return result, exports
