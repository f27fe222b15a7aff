"""Runs a whole TF_CONFIG training cluster as local processes, one per task, and tears it down.

run_cluster(LaunchConfig) starts a chief, `workers` more workers, `ps` parameter servers and
(with `evaluator`) an evaluator, each a separate process of `train_script` on its own free
port of `host` with its own TF_CONFIG, and streams their output line by line with a role
prefix ("[worker:0] ...").

GPUs: on a host with GPUs every task would otherwise claim all of them, so each task gets its
own CUDA_VISIBLE_DEVICES. The pool is LaunchConfig.gpus if given, else CUDA_VISIBLE_DEVICES if
it is set, else every GPU `nvidia-smi -L` lists (detect_gpus). The training tasks (chief, then
workers) split the pool evenly, each a contiguous block of len(pool) // trainers GPUs (under
parameter_server a trainer uses the first of its block; multi_worker_mirrored uses them all);
with fewer GPUs than trainers they share them round-robin (trainer i gets GPU i mod len(pool))
and, sharing, get TF_FORCE_GPU_ALLOW_GROWTH=true (unless it is set) so that one process does
not reserve a shared GPU's whole memory. A GPU left over by the even split goes to the
evaluator; parameter servers, and the evaluator otherwise, get CUDA_VISIBLE_DEVICES=-1 (no
GPU). Without GPUs nothing is set. The assignment is logged once at start.

The job is done once the chief, every worker and the evaluator have exited 0: the parameter
servers (which never exit by themselves) are then stopped. If any task fails, on the timeout,
or on SIGINT / SIGTERM (when run on the main thread), every task still running gets SIGTERM,
then SIGKILL after `grace_secs`.

Entry points: LaunchConfig, run_cluster and its exit codes; the `bazel run` front end is
//scripts:local_cluster.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

EXIT_TASK_FAILED = 1
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

# The directory holding estimator_app/ (the source tree's root, or the Bazel runfiles tree's):
# put on every task's PYTHONPATH so that the training script imports this repository's packages.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
  """What to launch.

  Attributes:
    train_script: the script each task runs (//scripts:local_cluster passes scripts/train.py).
    train_args: arguments for every task's training script.
    workers: workers besides the chief.
    ps: parameter servers.
    evaluator: whether to run an evaluator.
    timeout_secs: overall limit, 0 for none.
    grace_secs: SIGTERM-to-SIGKILL delay when stopping tasks.
    python: the interpreter running it.
    host: the address every task listens on.
    gpus: the GPU pool to share out (CUDA device ids), or None to detect it (detect_gpus).
  """
  train_script: str
  train_args: Tuple[str, ...] = ()
  workers: int = 1
  ps: int = 1
  evaluator: bool = True
  timeout_secs: float = 0
  grace_secs: float = 30.0
  python: str = sys.executable
  host: str = "127.0.0.1"
  gpus: Optional[Tuple[str, ...]] = None


def free_ports(n: int, host: str = "127.0.0.1") -> List[int]:
  """n distinct ports free on `host` now (held open together so they differ)."""
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind((host, 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def cluster_spec(workers: int, ps: int, ports: Sequence[int],
                 host: str = "127.0.0.1") -> Dict[str, List[str]]:
  """{"chief": [..], "worker": [..], "ps": [..]} on `host`, one port each (chief first)."""
  if len(ports) != 1 + workers + ps:
    raise ValueError(f"need {1 + workers + ps} ports, got {len(ports)}")
  addresses = [f"{host}:{p}" for p in ports]
  spec = {"chief": addresses[:1]}
  if workers:
    spec["worker"] = addresses[1:1 + workers]
  if ps:
    spec["ps"] = addresses[1 + workers:]
  return spec


def task_configs(cluster: Dict[str, List[str]], evaluator: bool) -> List[Tuple[str, str]]:
  """[(task name, TF_CONFIG JSON)] in start order: ps, chief, workers, evaluator."""
  tasks = [("ps", i) for i in range(len(cluster.get("ps", [])))]
  tasks += [("chief", 0)] + [("worker", i) for i in range(len(cluster.get("worker", [])))]
  if evaluator:
    tasks.append(("evaluator", 0))
  return [(f"{t}:{i}", json.dumps({"cluster": cluster, "task": {"type": t, "index": i}}))
          for t, i in tasks]


_TRAINERS = ("chief", "worker")


def detect_gpus(environ: Optional[Mapping[str, str]] = None,
                run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                ) -> Tuple[Tuple[str, ...], str]:
  """This host's GPU pool, found without importing TensorFlow (which takes seconds).

  Args:
    environ: the environment (default os.environ); a CUDA_VISIBLE_DEVICES there is the pool,
      read as CUDA reads it (an empty value or "-1" hides every GPU; CUDA ignores an entry
      starting with "-" and all after it).
    run: runs `nvidia-smi -L` when CUDA_VISIBLE_DEVICES is unset (tests pass a fake).

  Returns:
    (device ids, e.g. ("0", "1"), empty without GPUs; where they came from, for the log).
  """
  environ = os.environ if environ is None else environ
  visible = environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    ids = []
    for d in (d.strip() for d in visible.split(",")):
      if not d or d.startswith("-"):
        break
      ids.append(d)
    return tuple(ids), f"CUDA_VISIBLE_DEVICES={visible!r}"
  try:
    proc = run(["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
               text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError):
    return (), "no nvidia-smi"
  if proc.returncode != 0:
    return (), f"nvidia-smi -L exited with {proc.returncode}"
  count = sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))
  return tuple(str(i) for i in range(count)), "nvidia-smi -L"


def assign_gpus(task_names: Sequence[str], gpus: Sequence[str]) -> Dict[str, str]:
  """Each task's CUDA_VISIBLE_DEVICES under the rule of the module docstring.

  Args:
    task_names: "chief:0", "worker:1", "ps:0", "evaluator:0", ... (task_configs order).
    gpus: the pool (detect_gpus); empty for none.

  Returns:
    Task name -> CUDA_VISIBLE_DEVICES value ("-1" for no GPU); {} without GPUs, where every
    task keeps the launcher's environment.
  """
  if not gpus:
    return {}
  gpus = list(gpus)
  trainers = [n for n in task_names if n.split(":")[0] in _TRAINERS]
  assignment = {n: "-1" for n in task_names}
  per = len(gpus) // len(trainers) if trainers else 0
  if trainers and not per:  # fewer GPUs than trainers: share round-robin
    for i, name in enumerate(trainers):
      assignment[name] = gpus[i % len(gpus)]
    return assignment
  for i, name in enumerate(trainers):
    assignment[name] = ",".join(gpus[i * per:(i + 1) * per])
  spare = gpus[len(trainers) * per:]
  evaluators = [n for n in task_names if n.split(":")[0] == "evaluator"]
  if spare and evaluators:
    assignment[evaluators[0]] = spare[0]
  return assignment


def _gpu_env(assignment: Mapping[str, str],
             environ: Mapping[str, str]) -> Dict[str, Dict[str, str]]:
  """Task name -> the variables to set: CUDA_VISIBLE_DEVICES, and on a shared GPU memory growth."""
  users: Dict[str, int] = {}
  for devices in assignment.values():
    for d in devices.split(","):
      if d != "-1":
        users[d] = users.get(d, 0) + 1
  out = {}
  for name, devices in assignment.items():
    env = {"CUDA_VISIBLE_DEVICES": devices}
    shared = any(users.get(d, 0) > 1 for d in devices.split(","))
    if shared and "TF_FORCE_GPU_ALLOW_GROWTH" not in environ:
      env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    out[name] = env
  return out


class _Task:
  """One running task and the thread copying its output."""

  def __init__(self, name: str, proc: subprocess.Popen, out: TextIO, lock: threading.Lock):
    self.name = name
    self.proc = proc
    self.reader = threading.Thread(target=self._copy, args=(out, lock), daemon=True)
    self.reader.start()

  @property
  def role(self) -> str:
    return self.name.split(":")[0]

  def _copy(self, out: TextIO, lock: threading.Lock):
    for line in iter(self.proc.stdout.readline, ""):
      with lock:
        out.write(f"[{self.name}] {line if line.endswith(chr(10)) else line + chr(10)}")
        out.flush()
    self.proc.stdout.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(proc.pid, sig)  # each task leads its own process group (start_new_session)
  except (ProcessLookupError, PermissionError):
    pass


def _stop(tasks: Sequence[_Task], grace_secs: float, log) -> None:
  """SIGTERM to every live task, SIGKILL to what is left after grace_secs."""
  live = [t for t in tasks if t.proc.poll() is None]
  for t in live:
    _signal_group(t.proc, signal.SIGTERM)
  deadline = time.monotonic() + grace_secs
  for t in live:
    try:
      t.proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      log(f"{t.name} still running {grace_secs:.0f} s after SIGTERM: SIGKILL")
      _signal_group(t.proc, signal.SIGKILL)
      t.proc.wait()
  for t in tasks:
    _signal_group(t.proc, signal.SIGKILL)  # stray grandchildren of tasks that exited
    t.reader.join(timeout=5)


class _Interrupted(Exception):
  pass


def run_cluster(cfg: LaunchConfig, out: TextIO = sys.stdout) -> int:
  """Launches the cluster, streams its output, waits for it and tears it down.

  Args:
    cfg: what to launch.
    out: where every task's prefixed output and the launcher's own "[local_cluster]" lines go.

  Returns:
    0 when the chief, every worker and the evaluator exited 0; EXIT_TASK_FAILED,
    EXIT_TIMEOUT or EXIT_INTERRUPTED otherwise.
  """
  lock = threading.Lock()

  def log(msg):
    with lock:
      out.write(f"[local_cluster] {msg}\n")
      out.flush()

  ports = free_ports(1 + cfg.workers + cfg.ps, cfg.host)
  cluster = cluster_spec(cfg.workers, cfg.ps, ports, cfg.host)
  log(f"cluster {json.dumps(cluster)}; evaluator: {'yes' if cfg.evaluator else 'no'}")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
  configs = task_configs(cluster, cfg.evaluator)
  gpus, source = (cfg.gpus, "LaunchConfig.gpus") if cfg.gpus is not None else detect_gpus()
  gpu_env = _gpu_env(assign_gpus([name for name, _ in configs], gpus), env)
  if gpu_env:
    log(f"GPUs {','.join(gpus)} ({source}), CUDA_VISIBLE_DEVICES per task: " + ", ".join(
        f"{name}={e['CUDA_VISIBLE_DEVICES']}" for name, e in gpu_env.items()))
  else:
    log(f"no GPUs ({source}): every task keeps this environment's devices")

  def on_signal(signum, frame):
    del frame
    raise _Interrupted(signal.Signals(signum).name)

  previous = {}
  if threading.current_thread() is threading.main_thread():
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, on_signal)

  tasks: List[_Task] = []
  start = time.monotonic()
  code = EXIT_TASK_FAILED
  try:
    for name, tf_config in configs:
      proc = subprocess.Popen(
          [cfg.python, cfg.train_script, *cfg.train_args],
          env=dict(env, TF_CONFIG=tf_config, **gpu_env.get(name, {})),
          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
          errors="replace", start_new_session=True)
      tasks.append(_Task(name, proc, out, lock))
    finishers = [t for t in tasks if t.role != "ps"]
    while True:
      failed = [t for t in tasks if t.proc.poll() not in (None, 0)]
      early_ps = [t for t in tasks if t.role == "ps" and t.proc.poll() == 0]
      if failed or early_ps:
        t = (failed or early_ps)[0]
        log(f"{t.name} exited with code {t.proc.returncode}; stopping the other tasks")
        code = EXIT_TASK_FAILED
        break
      if all(t.proc.poll() == 0 for t in finishers):
        log(f"chief, workers and evaluator finished in {time.monotonic() - start:.1f} s; "
            f"stopping the parameter servers")
        code = 0
        break
      if cfg.timeout_secs and time.monotonic() - start > cfg.timeout_secs:
        log(f"timeout after {cfg.timeout_secs:.0f} s; stopping every task")
        code = EXIT_TIMEOUT
        break
      time.sleep(0.2)
  except _Interrupted as e:
    log(f"{e}: stopping every task")
    code = EXIT_INTERRUPTED
  finally:
    _stop(tasks, cfg.grace_secs, log)
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  summary = ", ".join(f"{t.name}={t.proc.returncode}" for t in tasks)
  log(f"exit codes: {summary}; {'ok' if code == 0 else 'FAILED'}")
  return code
