"""The GPU check: the main job trained on this machine's GPUs, reported as plain-text tables.

check(CheckConfig) finds the GPUs (nvidia-smi, then TensorFlow in a child process), drives the
main job's training script (scripts/train.py) in child processes of this same Python, one
temporary model_dir per run, one shared digits data_dir written on first use, and reports:

  * the devices: nvidia-smi's name, memory and driver; what TensorFlow sees (its device, the
    memory it may use, compute capability) and the CUDA / cuDNN it was built for;
  * training steps/s of dnn and lenet5, float32 vs mixed precision (--precision=float16),
    without and with --xla=true, at batch 256 and 1024, and with --strategy=mirrored over
    every GPU; each rate is timed from the run's `step N: ... step_time=...ms` log lines,
    leaving out the first logged interval (graph build, XLA compilation, cuDNN autotuning);
  * the export parity check for float32, float16 and bfloat16: those runs export, and every
    export is validated by the training run itself against estimator.predict; the table
    reads each export's `<version>.validation.json` (passed, max abs diff);
  * GPU utilisation and memory, sampled with nvidia-smi while one run trains, and whether
    the input pipeline keeps up (that run's --diagnose_input verdict).

Runs go in order of importance (parity first); a run that would not fit in what is left of the
budget (1.25x the longest finished run of its kind) is listed as skipped, not started.
Children run with TF_FORCE_GPU_ALLOW_GROWTH=true, so the memory nvidia-smi shows is what
training uses, not what TensorFlow reserves.

This module imports nothing heavy: TensorFlow runs only in the children, so the no-GPU answer
takes no time and this process never holds GPU memory the runs need.

Entry points: CheckConfig and check (behind //scripts:gpu_check); plan, execute and report are
its steps.
"""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# check's exit codes: no GPU, or everything passed; a failed check.
EXIT_OK = 0
EXIT_FAILED = 1

# The directory holding estimator_app/ (the source tree's root, or the Bazel runfiles tree's):
# the children's PYTHONPATH, and where the TensorFlow probe runs.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = ("dnn", "lenet5")
BATCH_SIZES = (256, 1024)
SPEED_PRECISIONS = ("float32", "float16")
# Every precision training accepts (model_fns.model_fn.PRECISIONS; the test keeps them equal).
PARITY_PRECISIONS = ("float32", "float16", "bfloat16")
PARITY_MODEL, PARITY_BATCH = "lenet5", 256
LOG_EVERY_STEPS = 50
SKIPPED_INTERVALS = 1  # logged intervals left out of a rate: compile, autotune, first fetches
_MIN_RUN_SECS = 30.0  # a run is not started with less of the budget left than this
_DURATION_MARGIN = 1.25  # ... nor with less than this times the longest run of its kind
_STOP_GRACE_SECS = 10.0
_PROBE_TIMEOUT_SECS = 180.0
_REQUIREMENTS_HINT = (
    "install the NVIDIA wheels TensorFlow 2.15.1 asks for into this Python "
    "(pip install -r deploy/requirements_gpu.txt, pinned to tensorflow[and-cuda]==2.15.1) or "
    "run in the GPU image built from deploy/Dockerfile.gpu")


@dataclasses.dataclass(frozen=True)
class CheckConfig:
  """What one check runs.

  Attributes:
    train_script: the main job's entry point every run trains with (scripts/train.py).
    budget_secs: start no training run later than this many seconds after the start.
    run_steps: training steps per timed run (logged every LOG_EVERY_STEPS; the first
      SKIPPED_INTERVALS logged intervals are not timed).
    work_dir: where the runs' data, model_dirs and logs go, absolute; None for a temporary
      directory, removed when every check passed.
  """
  train_script: str
  budget_secs: float
  run_steps: int
  work_dir: Optional[str] = None


# --- What to run ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of the main job.

  Attributes:
    model: registered model name.
    batch_size: global batch size.
    precision: float32, float16 or bfloat16.
    xla: --xla=true.
    strategy: --strategy (default: one device; mirrored: every GPU).
    export: export and validate SavedModels (the parity check); off for speed-only runs.
    diagnose_input: run --diagnose_input before training.
    sample_gpu: sample nvidia-smi utilisation and memory while it trains.
    steps_factor: train this many times CheckConfig.run_steps (a longer window to sample).
  """
  model: str
  batch_size: int
  precision: str = "float32"
  xla: bool = False
  strategy: str = "default"
  export: bool = False
  diagnose_input: bool = False
  sample_gpu: bool = False
  steps_factor: int = 1

  @property
  def key(self) -> Tuple[str, int, str, bool, str]:
    """What the steps/s of a run depend on."""
    return (self.model, self.batch_size, self.precision, self.xla, self.strategy)

  @property
  def name(self) -> str:
    parts = [self.model, f"b{self.batch_size}", self.precision]
    parts += ["xla"] if self.xla else []
    parts += [self.strategy] if self.strategy != "default" else []
    return "-".join(parts)


def mirrored_batch_size(num_gpus: int) -> int:
  """1024 when it splits evenly over the GPUs (batch_size is global), else 128 per GPU."""
  return 1024 if 1024 % max(num_gpus, 1) == 0 else 128 * num_gpus


def plan(num_gpus: int) -> List[Run]:
  """Every run, most important first: parity, the sampled run, the speed matrix, mirrored."""
  parity = [Run(PARITY_MODEL, PARITY_BATCH, p, export=True) for p in PARITY_PRECISIONS]
  sampled = Run("lenet5", 1024, diagnose_input=True, sample_gpu=True, steps_factor=3)
  mirrored = [Run(m, mirrored_batch_size(num_gpus), strategy="mirrored")
              for m in ("lenet5", "dnn")]
  matrix = [Run(m, b, p, x) for m in MODELS for b in BATCH_SIZES for p in SPEED_PRECISIONS
            for x in (False, True)]
  runs = parity + [sampled, mirrored[0]]
  runs += [r for r in matrix if r.key not in {done.key for done in runs}]
  return runs + mirrored[1:]


def train_args(run: Run, model_dir: str, train_steps: int) -> List[str]:
  """scripts/train.py's flags for `run`: one checkpoint (at the end), so no evaluation or
  export interrupts the timed steps."""
  steps = train_steps * run.steps_factor
  args = [f"--model={run.model}", f"--batch_size={run.batch_size}",
          f"--precision={run.precision}", f"--xla={str(run.xla).lower()}",
          f"--strategy={run.strategy}", f"--train_steps={steps}",
          f"--save_checkpoints_steps={steps}", f"--log_every_steps={LOG_EVERY_STEPS}",
          "--quick_eval_steps=0", "--keep_best=0", f"--export={str(run.export).lower()}",
          f"--model_dir={model_dir}"]
  return args + (["--diagnose_input"] if run.diagnose_input else [])


# --- Reading what a run printed and wrote -----------------------------------------------------

# estimator_app.training.hooks.StepLoggingHook: "step 200/2000 (10%) 0:12 elapsed, ETA 1:48,
# 15,360 ex/s, 4.17 ms/step, loss 0.18, lr 0.001" (the first line, at step 1, has no timing).
_STEP_LINE = re.compile(r"\bstep (\d+)(?:/\d+ \(\d+%\))? (.*)$")
_STEP_TIME = re.compile(r"\b([0-9.]+) ms/step\b")


@dataclasses.dataclass(frozen=True)
class Rate:
  """Training speed over the timed steps of one run.

  Attributes:
    steps_per_sec: global steps per second.
    examples_per_sec: steps_per_sec * the global batch size.
    steps: global steps timed.
    start: index of the log line where the timed steps begin.
    end: index of the log line where they end.
  """
  steps_per_sec: float
  examples_per_sec: float
  steps: int
  start: int
  end: int


def parse_rate(lines: Sequence[str], batch_size: int,
               skip: int = SKIPPED_INTERVALS) -> Optional[Rate]:
  """The steps/s of a training log's step lines, leaving out the first `skip` intervals.

  Args:
    lines: the run's output, one line each.
    batch_size: the run's global batch size.
    skip: timed intervals to leave out (graph build, compilation, autotuning).

  Returns:
    The rate, or None when no timed interval is left.
  """
  steps = [(i, int(m.group(1)), _STEP_TIME.search(m.group(2)))
           for i, m in ((i, _STEP_LINE.search(l)) for i, l in enumerate(lines)) if m]
  intervals = [(prev[0], i, step - prev[1], float(t.group(1)))
               for prev, (i, step, t) in zip(steps, steps[1:]) if t and step > prev[1]]
  kept = intervals[skip:]
  if not kept:
    return None
  total_steps = sum(n for _, _, n, _ in kept)
  seconds = sum(n * ms for _, _, n, ms in kept) / 1000.0
  if seconds <= 0:
    return None
  per_sec = total_steps / seconds
  return Rate(per_sec, per_sec * batch_size, total_steps, kept[0][0], kept[-1][1])


@dataclasses.dataclass(frozen=True)
class Parity:
  """The parity reports of one run's exports.

  Attributes:
    reports: how many exports were validated.
    passed: every report passed (False when there is none).
    max_abs_diff: the largest difference any signature showed.
    problems: what the failed reports say.
  """
  reports: int
  passed: bool
  max_abs_diff: Optional[float]
  problems: Tuple[str, ...] = ()


def _report_diff(report: Dict) -> Optional[float]:
  diffs = [d for s in report.get("signatures", {}).values()
           for d in s.get("max_abs_diff", {}).values() if isinstance(d, (int, float))]
  return max(diffs) if diffs else None


def read_parity(model_dir: str) -> Parity:
  """Reads every `<version>.validation.json` under model_dir/export (rejected ones too)."""
  found = []
  for base, _, files in os.walk(os.path.join(model_dir, "export")):
    for name in sorted(files):
      if name.endswith(".validation.json"):
        with open(os.path.join(base, name)) as f:
          found.append(json.load(f))
  diffs = [d for d in map(_report_diff, found) if d is not None]
  problems = tuple(p for r in found if not r.get("passed")
                   for p in (r.get("problems") or [r.get("error", "failed")]))
  return Parity(len(found), bool(found) and all(r.get("passed") for r in found),
                max(diffs) if diffs else None, problems)


@dataclasses.dataclass(frozen=True)
class InputVerdict:
  """--diagnose_input's verdict (estimator_app/training/input_diagnosis.py).

  Attributes:
    input_bound: training waits for data.
    headroom: input examples/s over what the model consumes.
    text: the logged verdict.
  """
  input_bound: bool
  headroom: Optional[float]
  text: str


def parse_diagnosis(lines: Sequence[str]) -> Optional[InputVerdict]:
  """The `diagnose_input: ...` verdict of a log, or None."""
  for line in lines:
    _, found, text = line.partition("diagnose_input: ")
    if found and ("INPUT-BOUND" in text or "NOT input-bound" in text):
      headroom = re.search(r"headroom ([0-9.]+)x", text)
      return InputVerdict("INPUT-BOUND" in text, float(headroom.group(1)) if headroom else None,
                          text.strip())
  return None


def last_error(lines: Sequence[str]) -> str:
  """The line that says why a run failed: the CLI's `error:` line, else the last line."""
  for line in reversed(lines):
    if line.startswith("error: ") or re.match(r"^\w+(\.\w+)*(Error|Exception)\b", line):
      return line
  return next((l for l in reversed(lines) if l.strip()), "(no output)")


# --- nvidia-smi ------------------------------------------------------------------------------

_SMI_QUERY = "index,utilization.gpu,memory.used"
_SMI_DEVICES = "index,name,memory.total,driver_version"


def list_gpus(nvidia_smi: str = "nvidia-smi") -> Tuple[List[str], str]:
  """(the `GPU i: name (UUID: ...)` lines of `nvidia-smi -L`, why there are none)."""
  try:
    out = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=60)
  except FileNotFoundError:
    return [], "nvidia-smi is not installed"
  except (OSError, subprocess.TimeoutExpired) as e:
    return [], f"nvidia-smi -L failed: {e}"
  gpus = [l.strip() for l in out.stdout.splitlines() if l.startswith("GPU ")]
  if gpus:
    return gpus, ""
  said = (out.stdout + out.stderr).strip().splitlines()
  return [], f"nvidia-smi -L lists none (exit {out.returncode}: {said[0] if said else 'no output'})"


def parse_csv_rows(text: str) -> List[List[str]]:
  """nvidia-smi's `--format=csv,noheader,nounits` output as rows of stripped fields."""
  return [[f.strip() for f in line.split(",")] for line in text.splitlines() if line.strip()]


def smi_devices(nvidia_smi: str = "nvidia-smi") -> List[Dict[str, str]]:
  """index, name, memory.total (MiB) and driver_version of every GPU nvidia-smi sees."""
  try:
    out = subprocess.run(
        [nvidia_smi, f"--query-gpu={_SMI_DEVICES}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=60, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  keys = _SMI_DEVICES.split(",")
  return [dict(zip(keys, row)) for row in parse_csv_rows(out) if len(row) == len(keys)]


@dataclasses.dataclass(frozen=True)
class GpuUsage:
  """nvidia-smi samples taken while a run trained.

  Attributes:
    samples: samples in the window (one per GPU per tick).
    mean_utilization: mean utilization.gpu (%) of the GPUs the run used.
    max_utilization: the highest sample.
    max_memory_mib: the most memory.used any GPU showed.
  """
  samples: int
  mean_utilization: float
  max_utilization: float
  max_memory_mib: float


def summarize_samples(samples: Sequence[Tuple[float, str]], start: float, end: float
                      ) -> Optional[GpuUsage]:
  """GpuUsage of the (time, `index, util, memory` line) samples taken in [start, end].

  Only GPUs that were busy at some point count towards the mean, so one training GPU among
  idle others reads as that GPU's utilisation.
  """
  rows = []
  for t, line in samples:
    fields = [f.strip() for f in line.split(",")]
    if start <= t <= end and len(fields) == 3:
      try:
        rows.append((fields[0], float(fields[1]), float(fields[2])))
      except ValueError:
        continue  # "[N/A]" or a partial line
  if not rows:
    return None
  busy = {gpu for gpu, util, _ in rows if util > 0} or {rows[0][0]}
  used = [util for gpu, util, _ in rows if gpu in busy]
  return GpuUsage(len(rows), sum(used) / len(used), max(used), max(m for _, _, m in rows))


class GpuSampler:
  """`nvidia-smi --query-gpu=index,utilization.gpu,memory.used --loop-ms=N` in the background."""

  def __init__(self, interval_ms: int = 200, nvidia_smi: str = "nvidia-smi"):
    self.samples: List[Tuple[float, str]] = []
    self._proc = subprocess.Popen(
        [nvidia_smi, f"--query-gpu={_SMI_QUERY}", "--format=csv,noheader,nounits",
         f"--loop-ms={interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self._proc.stdout:
      self.samples.append((time.monotonic(), line.strip()))

  def stop(self) -> None:
    self._proc.terminate()
    try:
      self._proc.wait(5)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
    self._reader.join(5)


# --- TensorFlow's view of the GPUs (in a child process) -----------------------------------------


def print_probe() -> None:
  """Prints, as one JSON line, what TensorFlow sees. Runs in a child (probe()), so this
  process never initialises CUDA nor holds GPU memory the training runs need."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.client import device_lib  # pylint: disable=g-import-not-at-top
  build = tf.sysconfig.get_build_info()
  info = {"tf_version": tf.__version__, "built_with_cuda": tf.test.is_built_with_cuda(),
          "cuda_version": str(build.get("cuda_version", "")),
          "cudnn_version": str(build.get("cudnn_version", "")), "gpus": []}
  if tf.config.list_physical_devices("GPU"):
    for d in device_lib.list_local_devices():
      if d.device_type == "GPU":
        info["gpus"].append({"device": d.name, "memory_limit": int(d.memory_limit),
                             "desc": d.physical_device_desc})
  print("GPU_CHECK_PROBE " + json.dumps(info))


def parse_device_desc(desc: str) -> Dict[str, str]:
  """TensorFlow's "device: 0, name: NVIDIA H200, pci bus id: ..., compute capability: 9.0"."""
  out = {}
  for part in desc.split(", "):
    key, sep, value = part.partition(": ")
    if sep:
      out[key.strip()] = value.strip()
  return out


def _child_env(**extra: str) -> Dict[str, str]:
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_FORCE_GPU_ALLOW_GROWTH="true", **extra)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  return env


# What TensorFlow logs when it cannot use a GPU (libcudart, cuDNN, ... not found; the driver
# refusing): shown under the failure line. ("Could not find cuda drivers" is TF 2.15's message
# for a missing CUDA runtime library, libcudart, not only for a missing driver.)
_LIBRARY_TROUBLE = re.compile(
    r"could not find cuda drivers|could not load dynamic library|cannot dlopen|cuInit|"
    r"CUDA_ERROR|kernel driver", re.I)


def probe(python: str = sys.executable) -> Tuple[Optional[Dict], List[str]]:
  """(what TensorFlow sees, its library-loading warnings), from a fresh `python`."""
  cmd = [python, "-c",
         "from estimator_app.benchmarks import gpu_check; gpu_check.print_probe()"]
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_SECS,
                         env=_child_env(TF_CPP_MIN_LOG_LEVEL="0"), cwd=ROOT)
  except subprocess.TimeoutExpired:
    return None, [f"TensorFlow did not list its devices within {_PROBE_TIMEOUT_SECS:.0f} s"]
  warnings = list(dict.fromkeys(  # once each, without TF's timestamps
      re.sub(r"^[\d-]+ [\d:.]+: ", "", l.strip()) for l in out.stderr.splitlines()
      if _LIBRARY_TROUBLE.search(l)))
  for line in out.stdout.splitlines():
    if line.startswith("GPU_CHECK_PROBE "):
      return json.loads(line.split(" ", 1)[1]), warnings
  return None, warnings + [last_error(out.stderr.splitlines())]


# --- Running the main job -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What one run gave.

  Attributes:
    run: the run.
    status: "ok", "failed", "timeout" or "skipped".
    seconds: wall time of the whole child (start-up, training, evaluation, exports).
    rate: training speed (None if it did not train far enough).
    parity: its exports' reports (runs with export only).
    usage: GPU samples while it trained (sample_gpu runs only).
    verdict: --diagnose_input's verdict (diagnose_input runs only).
    error: why it failed.
    log: its full output.
  """
  run: Run
  status: str
  seconds: float = 0.0
  rate: Optional[Rate] = None
  parity: Optional[Parity] = None
  usage: Optional[GpuUsage] = None
  verdict: Optional[InputVerdict] = None
  error: str = ""
  log: str = ""

  @property
  def ok(self) -> bool:
    return self.status == "ok" and (self.parity is None or self.parity.passed)


def _stop_group(proc: subprocess.Popen) -> None:
  """SIGTERM (training saves a checkpoint and exits), then SIGKILL, to the child's group."""
  for sig, wait in ((signal.SIGTERM, _STOP_GRACE_SECS), (signal.SIGKILL, None)):
    try:
      os.killpg(proc.pid, sig)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
      return
    try:
      proc.wait(wait)
      return
    except subprocess.TimeoutExpired:
      continue


def execute(run: Run, work_dir: str, train_script: str, train_steps: int, timeout_secs: float,
            python: str = sys.executable,
            sampler_factory: Optional[Callable[[], GpuSampler]] = None) -> Outcome:
  """Trains `run` with the main job's script in a child process and reads what it reports.

  Args:
    run: what to train.
    work_dir: holds data/digits (shared, written by the first run), runs/<name> and
      logs/<name>.log; the child runs there, so the default --data_dir resolves to it.
    train_script: the main job's entry point (scripts/train.py), which takes train_args.
    train_steps: steps per run (times run.steps_factor).
    timeout_secs: the child is stopped after this long.
    python: the interpreter (the one running this script: the target's).
    sampler_factory: starts a GpuSampler for runs with sample_gpu (None: never sample).

  Returns:
    The outcome.
  """
  model_dir = os.path.join(work_dir, "runs", run.name)
  log_path = os.path.join(work_dir, "logs", run.name + ".log")
  # A work_dir used before holds this run already: training would resume at train_steps
  # and time nothing.
  shutil.rmtree(model_dir, ignore_errors=True)
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  cmd = [python, train_script, *train_args(run, model_dir, train_steps)]
  lines: List[str] = []
  times: List[float] = []
  sampler = sampler_factory() if run.sample_gpu and sampler_factory else None
  start = time.monotonic()
  with open(log_path, "w") as log:
    log.write(" ".join(cmd) + "\n")
    proc = subprocess.Popen(cmd, cwd=work_dir, env=_child_env(BUILD_WORKING_DIRECTORY=work_dir),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)

    def copy():
      for line in proc.stdout:
        times.append(time.monotonic())
        lines.append(line.rstrip("\n"))
        log.write(line)

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
      code = proc.wait(timeout=max(1.0, timeout_secs))
    except subprocess.TimeoutExpired:
      _stop_group(proc)
      code = None
    finally:
      if sampler:
        sampler.stop()
    reader.join(10)
    proc.stdout.close()
  seconds = time.monotonic() - start
  rate = parse_rate(lines, run.batch_size)
  usage = (summarize_samples(sampler.samples, times[rate.start], times[rate.end])
           if sampler and rate else None)
  status = "ok" if code == 0 else ("timeout" if code is None else "failed")
  error = "" if code == 0 else (f"stopped after {timeout_secs:.0f} s" if code is None
                                else f"exit {code}: {last_error(lines)}")
  return Outcome(run, status, seconds, rate, read_parity(model_dir) if run.export else None,
                 usage, parse_diagnosis(lines) if run.diagnose_input else None, error, log_path)


# --- The report -------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A plain-text table: a header, a rule, and columns padded to their widest cell."""
  cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

  def line(r):
    return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

  return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _rate_cell(o: Optional[Outcome]) -> str:
  if o is None:
    return "-"
  if o.status == "skipped":
    return "skipped"
  if o.rate is None:
    return o.status if o.status != "ok" else "no timing"
  return f"{o.rate.steps_per_sec:,.1f}" + ("" if o.status == "ok" else f" ({o.status})")


def device_table(smi: Sequence[Dict[str, str]], tf_info: Dict) -> str:
  """nvidia-smi's GPUs beside TensorFlow's devices, matched by index."""
  seen = {parse_device_desc(g["desc"]).get("device"): g for g in tf_info.get("gpus", [])}
  rows = []
  for d in smi:
    g = seen.get(d.get("index"), {})
    desc = parse_device_desc(g.get("desc", ""))
    rows.append([d.get("index"), d.get("name"), f"{d.get('memory.total')} MiB",
                 d.get("driver_version"), g.get("device", "NOT SEEN"),
                 f"{g['memory_limit'] / 2**20:,.0f} MiB" if g else "-",
                 desc.get("compute capability", "-")])
  table = format_table(["gpu", "name (nvidia-smi)", "memory", "driver", "TensorFlow device",
                        "TF memory limit", "compute cap."], rows)
  return (f"{table}\nTensorFlow {tf_info.get('tf_version')} built for CUDA "
          f"{tf_info.get('cuda_version') or '?'}, cuDNN {tf_info.get('cudnn_version') or '?'}")


def speed_table(outcomes: Sequence[Outcome]) -> str:
  """steps/s of the single-device runs: a row per model, batch and precision, XLA as columns."""
  by_key = {o.run.key: o for o in outcomes}
  rows = []
  for m in MODELS:
    for b in BATCH_SIZES:
      for p in SPEED_PRECISIONS:
        plain, xla = by_key.get((m, b, p, False, "default")), by_key.get((m, b, p, True, "default"))
        rows.append([m, b, p, _rate_cell(plain), _rate_cell(xla)])
  return format_table(["model", "batch", "precision", "steps/s", "steps/s --xla"], rows)


def mirrored_table(outcomes: Sequence[Outcome], num_gpus: int) -> str:
  """steps/s of the mirrored runs beside the same run on one device."""
  by_key = {o.run.key: o for o in outcomes}
  rows = []
  for o in outcomes:
    if o.run.strategy != "mirrored":
      continue
    single = by_key.get((o.run.model, o.run.batch_size, o.run.precision, o.run.xla, "default"))
    ratio = (f"{o.rate.steps_per_sec / single.rate.steps_per_sec:.2f}x"
             if o.rate and single and single.rate else "-")
    rows.append([o.run.model, num_gpus, o.run.batch_size, o.run.precision, _rate_cell(o),
                 f"{o.rate.examples_per_sec:,.0f}" if o.rate else "-", ratio])
  return format_table(["model", "GPUs", "batch", "precision", "steps/s", "examples/s",
                       "vs one device"], rows)


def parity_table(outcomes: Sequence[Outcome]) -> str:
  """One row per precision: its exports' parity reports."""
  rows = []
  for o in outcomes:
    if not o.run.export:
      continue
    if o.status == "skipped" or o.parity is None:
      rows.append([o.run.precision, o.run.name, "-", "skipped" if o.status == "skipped" else "-",
                   "-", _rate_cell(o)])
      continue
    p = o.parity
    verdict = "PASS" if p.passed else ("FAIL" if p.reports else f"FAIL (no report; {o.status})")
    rows.append([o.run.precision, o.run.name, p.reports, verdict,
                 "-" if p.max_abs_diff is None else f"{p.max_abs_diff:.3g}", _rate_cell(o)])
  return format_table(["precision", "run", "exports", "parity", "max abs diff", "steps/s"], rows)


def usage_lines(outcomes: Sequence[Outcome]) -> List[str]:
  """nvidia-smi's figures while the sampled run trained, and its input pipeline verdict."""
  out = []
  for o in outcomes:
    if o.run.sample_gpu and o.status != "skipped":
      u = o.usage
      out.append(f"GPU while {o.run.name} trained: " + (
          f"utilisation mean {u.mean_utilization:.0f}%, max {u.max_utilization:.0f}%; memory "
          f"used up to {u.max_memory_mib:,.0f} MiB ({u.samples} nvidia-smi samples)" if u else
          "no nvidia-smi sample fell in the timed steps"))
    if o.run.diagnose_input and o.status != "skipped":
      v = o.verdict
      out.append(f"input pipeline of {o.run.name}: " + (
          ("INPUT-BOUND: training waits for data" if v.input_bound else "keeps up") +
          (f" (headroom {v.headroom:.2f}x)" if v.headroom is not None else "")
          if v else "no --diagnose_input verdict in its log"))
  return out


def _parity_problem(p: Parity) -> str:
  return "export parity: " + ("; ".join(p.problems) or "no validation report")


def report(smi: Sequence[Dict[str, str]], tf_info: Dict, outcomes: Sequence[Outcome],
           elapsed: float) -> str:
  """Every table, then one line per failed or skipped run."""
  sections = [
      "Devices\n" + device_table(smi, tf_info),
      "Training steps/s (single device; timed after the first logged interval)\n"
      + speed_table(outcomes),
      "--strategy=mirrored over every GPU\n" + mirrored_table(outcomes, len(tf_info["gpus"])),
      "Export parity (SavedModel in a fresh process vs estimator.predict)\n"
      + parity_table(outcomes),
      "GPU utilisation and input pipeline\n" + "\n".join(usage_lines(outcomes) or ["-"]),
  ]
  failed = [o for o in outcomes if not o.ok and o.status != "skipped"]
  skipped = [o for o in outcomes if o.status == "skipped"]
  tail = [f"FAILED {o.run.name}: {o.error or _parity_problem(o.parity)} (log: {o.log})"
          for o in failed]
  if skipped:
    tail.append(f"skipped {len(skipped)} run(s) past --budget_secs: "
                + ", ".join(o.run.name for o in skipped))
  tail.append(f"{len(outcomes) - len(skipped)} runs in {elapsed:.0f} s: "
              + ("FAILED" if failed else "ok"))
  return "\n\n".join(sections) + "\n\n" + "\n".join(tail)


# --- The whole check ---------------------------------------------------------------------------


def expected_secs(run: Run, done: Sequence[Outcome]) -> float:
  """How much of the budget `run` needs: a margin over the longest finished run of its kind
  (exports, --diagnose_input and longer training each add their own time)."""
  kind = (run.export, run.diagnose_input, run.steps_factor)
  alike = [o.seconds for o in done if o.status == "ok"
           and (o.run.export, o.run.diagnose_input, o.run.steps_factor) == kind]
  return max([_MIN_RUN_SECS] + [_DURATION_MARGIN * s for s in alike])


def check(cfg: CheckConfig, out=sys.stdout) -> int:
  """The whole check, printed to `out` as it goes and then as tables.

  Args:
    cfg: what to run.
    out: where the progress lines and the report go.

  Returns:
    EXIT_OK without a GPU, or when every run finished and every export passed its parity
    check; EXIT_FAILED when nvidia-smi sees a GPU that TensorFlow does not, a run failed or
    timed out, or an export failed its parity check (the work directory is then kept).
  """
  start = time.monotonic()
  gpus, why_none = list_gpus()
  if not gpus:
    print(f"gpu_check: no GPU on this machine ({why_none}); nothing to check.", file=out)
    return EXIT_OK
  print(f"gpu_check: nvidia-smi sees {len(gpus)} GPU(s): " + "; ".join(gpus), file=out,
        flush=True)
  tf_info, warnings = probe()
  if not tf_info or not tf_info["gpus"]:
    if tf_info is None:
      why = "TensorFlow could not list its devices"
    elif not tf_info["built_with_cuda"]:
      why = f"TensorFlow {tf_info['tf_version']} here is a build without CUDA; {_REQUIREMENTS_HINT}"
    else:
      why = f"the CUDA libraries it loads are missing from this Python; {_REQUIREMENTS_HINT}"
    print(f"gpu_check: FAILED: nvidia-smi sees {len(gpus)} GPU(s) but TensorFlow in "
          f"{sys.executable} sees none: {why}.", file=out)
    for w in warnings[-5:]:
      print(f"  {w}", file=out)
    return EXIT_FAILED
  smi = smi_devices() or [{"index": str(i), "name": g} for i, g in enumerate(gpus)]
  own_dir = cfg.work_dir is None
  work_dir = tempfile.mkdtemp(prefix="gpu_check-") if own_dir else cfg.work_dir
  os.makedirs(work_dir, exist_ok=True)
  runs = plan(len(tf_info["gpus"]))
  outcomes: List[Outcome] = []
  for i, run in enumerate(runs, 1):
    left = cfg.budget_secs - (time.monotonic() - start)
    if left < expected_secs(run, outcomes):
      outcomes.append(Outcome(run, "skipped"))
      continue
    o = execute(run, work_dir, cfg.train_script, cfg.run_steps, timeout_secs=left,
                sampler_factory=GpuSampler)
    outcomes.append(o)
    print(f"[{i:2d}/{len(runs)}] {run.name:34s} {_rate_cell(o):>12s} steps/s  "
          f"{o.seconds:5.1f} s  {'ok' if o.ok else 'FAILED: ' + (o.error or 'export parity')}",
          file=out, flush=True)
  print("\n" + report(smi, tf_info, outcomes, time.monotonic() - start), file=out)
  failed = any(not o.ok and o.status != "skipped" for o in outcomes)
  if own_dir and not failed:
    shutil.rmtree(work_dir, ignore_errors=True)
  else:
    print(f"runs, logs and exports: {work_dir}", file=out)
  return EXIT_FAILED if failed else EXIT_OK
