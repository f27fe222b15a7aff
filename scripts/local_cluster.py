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

It stops when the job is done: once the chief, every worker and the evaluator have exited 0,
the parameter servers (which never exit by themselves) are stopped and it exits 0. If any
task fails, on --timeout_secs, on Ctrl-C or SIGTERM, every task still running gets SIGTERM,
then SIGKILL after --grace_secs, and it exits non-zero: 1 a task failed, 124 timeout, 130
interrupted.
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
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from absl import flags

from estimator_app import cli

EXIT_TASK_FAILED = 1
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

_HERE = os.path.dirname(os.path.abspath(__file__))
# scripts/ sits at the root of the source tree and of the Bazel runfiles tree alike, and
# //scripts:train is a data dependency of //scripts:local_cluster, so train.py is beside us.
ROOT = os.path.dirname(_HERE)
TRAIN_SCRIPT = os.path.join(_HERE, "train.py")

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


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
  """What to launch.

  Attributes:
    train_args: arguments for every task's training script.
    workers: workers besides the chief.
    ps: parameter servers.
    evaluator: whether to run an evaluator.
    timeout_secs: overall limit, 0 for none.
    grace_secs: SIGTERM-to-SIGKILL delay when stopping tasks.
    train_script: the script each task runs.
    python: the interpreter running it.
    host: the address every task listens on.
  """
  train_args: Tuple[str, ...] = ()
  workers: int = 1
  ps: int = 1
  evaluator: bool = True
  timeout_secs: float = 0
  grace_secs: float = 30.0
  train_script: str = TRAIN_SCRIPT
  python: str = sys.executable
  host: str = "127.0.0.1"


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
    for name, tf_config in task_configs(cluster, cfg.evaluator):
      proc = subprocess.Popen(
          [cfg.python, cfg.train_script, *cfg.train_args], env=dict(env, TF_CONFIG=tf_config),
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


def _user_path(path: str) -> str:
  """`bazel run` executes in the runfiles tree: relative paths are the user's directory's."""
  base = os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
  return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def main(argv):
  train_args = tuple(argv[1:])
  cfg = LaunchConfig(
      train_args=train_args, workers=_WORKERS.value, ps=_PS.value, evaluator=_EVALUATOR.value,
      timeout_secs=_TIMEOUT.value, grace_secs=_GRACE.value,
      train_script=_user_path(_TRAIN_SCRIPT.value) if _TRAIN_SCRIPT.value else TRAIN_SCRIPT)
  sys.exit(run_cluster(cfg))


if __name__ == "__main__":
  cli.run(main)
