"""estimator_app.training.local_cluster: real multi-process TF_CONFIG clusters on 127.0.0.1.

Launcher mechanics run over a stand-in task script (fast); real clusters run the distribution
test driver (parameter servers + evaluator; multi_worker_mirrored) and the real
scripts/train.py entry point, the way users run it. The command's own flags and exit codes are
tested in tests/scripts/local_cluster_test.py.
"""

import glob
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from estimator_app import estimator as estimator_lib
from estimator_app.training import distribution
from estimator_app.training import local_cluster
from input_fns import digits
from input_fns import writer
from tests.testing import distributed_driver

# scripts/train.py comes with //scripts:train_lib (a data dependency) in the runfiles too.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
_TRAIN_PY = os.path.join(_REPO, "scripts", "train.py")

# A stand-in task: prints its role, writes its pid, then behaves as TASK_BEHAVIOUR says.
_FAKE_TASK = textwrap.dedent("""
    import json, os, signal, sys, time
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    name = f"{task['type']}:{task['index']}"
    with open(os.path.join(sys.argv[1], name.replace(":", "_") + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    print(f"hello from {name}", flush=True)
    print(f"{name} sees CUDA_VISIBLE_DEVICES="
          f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')} TF_FORCE_GPU_ALLOW_GROWTH="
          f"{os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH', '<unset>')}", flush=True)
    behaviour = json.loads(sys.argv[2]).get(name, "ok")
    if task["type"] == "ps" or behaviour == "hang":
        time.sleep(3600)
    if behaviour == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
    if behaviour == "fail":
        print("something broke", flush=True)
        sys.exit(3)
    time.sleep(0.5)
    """)


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:  # a zombie is not alive
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except OSError:
    return False


def _eval_steps(eval_dir):
  """Global steps with an accuracy value in the event files of `eval_dir`."""
  steps = set()
  for path in glob.glob(os.path.join(eval_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      if any(v.tag == "accuracy" for v in event.summary.value):
        steps.add(event.step)
  return steps


def _nvidia_smi_output(count):
  """What `nvidia-smi -L` prints for `count` GPUs (GPU 0 in MIG mode, with a device line)."""
  lines = []
  for i in range(count):
    lines.append(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d}-0000-0000-0000-000000000000)")
    if i == 0:
      lines.append("  MIG 1g.18gb     Device  0: (UUID: MIG-00000000-0000-0000-0000-0000)")
  return "".join(line + "\n" for line in lines)


def _fake_nvidia_smi(stdout="", returncode=0, raises=None):
  calls = []

  def run(cmd, **kwargs):
    del kwargs
    calls.append(cmd)
    if raises:
      raise raises
    return subprocess.CompletedProcess(cmd, returncode, stdout=stdout)

  run.calls = calls
  return run


class GpuAssignmentTest(tf.test.TestCase, parameterized.TestCase):
  """Which GPUs each task sees, for fake hosts (this machine has none)."""

  _TASKS = ["ps:0", "chief:0", "worker:0", "evaluator:0"]

  @parameterized.named_parameters(
      ("no_gpu", 0, {}),
      ("one_gpu_shared_by_the_trainers", 1,
       {"ps:0": "-1", "chief:0": "0", "worker:0": "0", "evaluator:0": "-1"}),
      ("two_gpus_one_per_trainer", 2,
       {"ps:0": "-1", "chief:0": "0", "worker:0": "1", "evaluator:0": "-1"}),
      ("eight_gpus_split_evenly", 8,
       {"ps:0": "-1", "chief:0": "0,1,2,3", "worker:0": "4,5,6,7", "evaluator:0": "-1"}))
  def test_training_tasks_share_out_the_host_gpus(self, count, expected):
    gpus, source = local_cluster.detect_gpus({}, _fake_nvidia_smi(_nvidia_smi_output(count)))
    self.assertEqual(gpus, tuple(str(i) for i in range(count)))
    self.assertEqual(source, "nvidia-smi -L")
    self.assertEqual(local_cluster.assign_gpus(self._TASKS, gpus), expected)

  def test_a_gpu_left_over_by_the_even_split_goes_to_the_evaluator(self):
    tasks = ["ps:0", "ps:1", "chief:0", "worker:0", "worker:1", "evaluator:0"]
    self.assertEqual(local_cluster.assign_gpus(tasks, [str(i) for i in range(8)]),
                     {"ps:0": "-1", "ps:1": "-1", "chief:0": "0,1", "worker:0": "2,3",
                      "worker:1": "4,5", "evaluator:0": "6"})
    self.assertEqual(local_cluster.assign_gpus(tasks[:-1], ["0", "1", "2", "3"]),
                     {"ps:0": "-1", "ps:1": "-1", "chief:0": "0", "worker:0": "1",
                      "worker:1": "2"})
    self.assertEqual(local_cluster.assign_gpus(tasks, ["0", "1"]),  # round-robin, no spare
                     {"ps:0": "-1", "ps:1": "-1", "chief:0": "0", "worker:0": "1",
                      "worker:1": "0", "evaluator:0": "-1"})

  def test_cuda_visible_devices_is_the_pool_and_nvidia_smi_is_not_asked(self):
    run = _fake_nvidia_smi(_nvidia_smi_output(8))
    for visible, pool in [("3,5", ("3", "5")), (" 3, 5 ", ("3", "5")), ("", ()), ("-1", ()),
                          ("0,-1,2", ("0",)), ("GPU-abc,GPU-def", ("GPU-abc", "GPU-def"))]:
      gpus, source = local_cluster.detect_gpus({"CUDA_VISIBLE_DEVICES": visible}, run)
      self.assertEqual(gpus, pool, visible)
      self.assertEqual(source, f"CUDA_VISIBLE_DEVICES={visible!r}")
    self.assertEqual(run.calls, [])
    self.assertEqual(local_cluster.assign_gpus(self._TASKS, ("3", "5")),
                     {"ps:0": "-1", "chief:0": "3", "worker:0": "5", "evaluator:0": "-1"})

  def test_no_nvidia_smi_or_a_failing_one_means_no_gpus(self):
    self.assertEqual(local_cluster.detect_gpus({}, _fake_nvidia_smi(raises=FileNotFoundError())),
                     ((), "no nvidia-smi"))
    self.assertEqual(local_cluster.detect_gpus({}, _fake_nvidia_smi(returncode=9)),
                     ((), "nvidia-smi -L exited with 9"))
    self.assertEqual(local_cluster.detect_gpus(
        {}, _fake_nvidia_smi(raises=subprocess.TimeoutExpired("nvidia-smi", 30))),
        ((), "no nvidia-smi"))


class LauncherTest(tf.test.TestCase):
  """The launcher's own behaviour over stand-in tasks."""

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    self.script = os.path.join(self.dir, "task.py")
    with open(self.script, "w") as f:
      f.write(_FAKE_TASK)

  def _run(self, behaviour=None, **kwargs):
    cfg = local_cluster.LaunchConfig(
        train_args=(self.dir, json.dumps(behaviour or {})), train_script=self.script,
        **dict(dict(workers=2, ps=1, grace_secs=5, timeout_secs=60), **kwargs))
    out = io.StringIO()
    start = time.monotonic()
    code = local_cluster.run_cluster(cfg, out)
    return code, out.getvalue(), time.monotonic() - start

  def _pids(self):
    pids = {}
    for path in glob.glob(os.path.join(self.dir, "*.pid")):
      with open(path) as f:
        pids[os.path.basename(path)[:-4].replace("_", ":")] = int(f.read())
    return pids

  def test_generated_tf_configs_are_valid_and_ports_distinct(self):
    ports = local_cluster.free_ports(5)
    self.assertLen(set(ports), 5)
    cluster = local_cluster.cluster_spec(2, 2, ports)
    configs = local_cluster.task_configs(cluster, evaluator=True)
    self.assertEqual([n for n, _ in configs],
                     ["ps:0", "ps:1", "chief:0", "worker:0", "worker:1", "evaluator:0"])
    for name, text in configs:
      task = distribution.parse_tf_config(text)
      self.assertEqual(task.name, name)
      self.assertEqual(task.num_workers, 3)
    self.assertNotIn("ps", local_cluster.cluster_spec(1, 0, ports[:2]))

  def test_success_streams_prefixed_logs_and_stops_the_ps(self):
    code, out, _ = self._run()
    self.assertEqual(code, 0, out)
    for name in ("chief:0", "worker:0", "worker:1", "evaluator:0", "ps:0"):
      self.assertIn(f"[{name}] hello from {name}\n", out)
    self.assertRegex(out, r"exit codes: ps:0=-15, chief:0=0, worker:0=0, worker:1=0, "
                          r"evaluator:0=0; ok")
    self.assertFalse(any(_alive(p) for p in self._pids().values()))

  def test_each_task_is_started_with_its_own_gpus_and_the_plan_is_logged(self):
    environ = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    with mock.patch.dict(os.environ, environ, clear=True):
      code, out, _ = self._run(workers=2, ps=1, gpus=("0", "1"))
    self.assertEqual(code, 0, out)
    self.assertEqual(out.count("CUDA_VISIBLE_DEVICES per task"), 1)
    self.assertIn("[local_cluster] GPUs 0,1 (LaunchConfig.gpus), CUDA_VISIBLE_DEVICES per task: "
                  "ps:0=-1, chief:0=0, worker:0=1, worker:1=0, evaluator:0=-1\n", out)
    # chief:0 and worker:1 share GPU 0, so neither may reserve all of its memory.
    for name, devices, growth in [
        ("ps:0", "-1", "<unset>"), ("chief:0", "0", "true"), ("worker:0", "1", "<unset>"),
        ("worker:1", "0", "true"), ("evaluator:0", "-1", "<unset>")]:
      self.assertIn(f"[{name}] {name} sees CUDA_VISIBLE_DEVICES={devices} "
                    f"TF_FORCE_GPU_ALLOW_GROWTH={growth}\n", out)

  def test_without_gpus_tasks_keep_the_launchers_devices(self):
    code, out, _ = self._run(workers=1, ps=1, gpus=())
    self.assertEqual(code, 0, out)
    self.assertIn("[local_cluster] no GPUs (LaunchConfig.gpus): every task keeps this "
                  "environment's devices\n", out)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    for name in ("ps:0", "chief:0", "worker:0", "evaluator:0"):
      self.assertIn(f"[{name}] {name} sees CUDA_VISIBLE_DEVICES={visible} ", out)

  def test_a_failing_task_tears_everything_down(self):
    code, out, took = self._run({"worker:1": "fail", "chief:0": "hang", "evaluator:0": "hang"})
    self.assertEqual(code, local_cluster.EXIT_TASK_FAILED, out)
    self.assertIn("[worker:1] something broke", out)
    self.assertIn("worker:1 exited with code 3; stopping the other tasks", out)
    self.assertLess(took, 30)
    pids = self._pids()
    self.assertLen(pids, 5)
    self.assertFalse(any(_alive(p) for p in pids.values()))

  def test_timeout_and_sigkill_after_grace(self):
    code, out, took = self._run({"chief:0": "ignore_sigterm"}, timeout_secs=3, grace_secs=1)
    self.assertEqual(code, local_cluster.EXIT_TIMEOUT, out)
    self.assertIn("chief:0 still running 1 s after SIGTERM: SIGKILL", out)
    self.assertLess(took, 20)
    self.assertFalse(any(_alive(p) for p in self._pids().values()))


class ClusterTrainingTest(tf.test.TestCase):
  """Real clusters of the distribution test driver (the runner's wiring in miniature)."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.data_dir = os.path.join(self.root, "digits")
    estimator_lib.load_dataset(self.data_dir, create_default=True)

  def _cluster(self, workers, ps, evaluator, **args):
    model_dir = os.path.join(self.root, "run")
    run = dict(data_dir=self.data_dir, model_dir=model_dir, train_steps=60,
               save_checkpoints_steps=20)
    run.update(args)
    cfg = local_cluster.LaunchConfig(
        train_args=(json.dumps(run),), train_script=distributed_driver.__file__,
        workers=workers, ps=ps, evaluator=evaluator, timeout_secs=150, grace_secs=10)
    out = io.StringIO()
    start = time.monotonic()
    code = local_cluster.run_cluster(cfg, out)
    took = time.monotonic() - start
    text = out.getvalue()
    results = {m.group(1): json.loads(m.group(2))
               for m in re.finditer(r"^\[([a-z]+:\d)\] RESULT (.*)$", text, re.M)}
    print(f"cluster workers={workers} ps={ps} evaluator={evaluator}: {took:.1f} s")
    return code, text, results, model_dir

  def test_parameter_server_cluster_with_evaluator(self):
    # The chief alone would take 0.25 s a step; the worker starts 5 s late (after the chief
    # has initialised the variables, so it does not sit in the Estimator's 30 s readiness
    # poll) and runs at full speed, so both take part in the 60 steps.
    code, out, results, model_dir = self._cluster(
        workers=1, ps=1, evaluator=True, max_worker_delay_secs=5, step_sleep_secs=0.25,
        step_sleep_task="chief")
    self.assertEqual(code, 0, out[-5000:])
    self.assertRegex(out, r"exit codes: ps:0=-15, chief:0=0, worker:0=0, evaluator:0=0; ok")
    self.assertEqual(set(results), {"chief:0", "worker:0", "evaluator:0"})
    # Asynchronous steps of two trainers: each may take one step past train_steps. The
    # Estimator's StopAtStepHook predicts the next step from the global step fetched inside
    # the run, which can predate the other trainer's increment (seen in CI: 62).
    self.assertBetween(results["chief:0"]["global_step"], 60, 62)
    ckpt = tf.train.latest_checkpoint(model_dir)
    self.assertBetween(int(ckpt.rsplit("-", 1)[1]), 60, 62)
    # The evaluator evaluated, and last the final checkpoint; its events are in model_dir/eval.
    evaluated = results["evaluator:0"]["evaluated"]
    self.assertNotEmpty(evaluated)
    self.assertGreaterEqual(evaluated[-1], 60)
    self.assertGreaterEqual(max(_eval_steps(os.path.join(model_dir, "eval"))), 60)
    # Only the chief exported (once, at the end), and it has the final metrics.
    markers = glob.glob(os.path.join(model_dir, "export", "marker", "*.json"))
    self.assertLen(markers, 1)
    with open(markers[0]) as f:
      marker = json.load(f)
    self.assertEqual(marker["task"], {"type": "chief", "index": 0})
    self.assertTrue(marker["final"])
    self.assertGreater(results["chief:0"]["metrics"]["accuracy"], 0.5)
    self.assertEqual(results["worker:0"]["metrics"], {})
    # Both trained, each on its own half of the data, their steps adding up to train_steps.
    chief, worker = results["chief:0"], results["worker:0"]
    self.assertEqual((chief["input_part"], worker["input_part"]), ([2, 0], [2, 1]))
    self.assertGreater(worker["steps_run"], 0)
    self.assertGreater(chief["steps_run"], 0)
    self.assertBetween(chief["steps_run"] + worker["steps_run"], 60, 62)
    print(f"steps: chief {chief['steps_run']}, worker {worker['steps_run']}; evaluated "
          f"{results['evaluator:0']['evaluated']}")

  def test_multi_worker_mirrored_two_workers(self):
    code, out, results, model_dir = self._cluster(
        workers=1, ps=0, evaluator=False, strategy="multi_worker_mirrored")
    self.assertEqual(code, 0, out[-5000:])
    self.assertEqual(results["chief:0"]["num_replicas"], 2)
    self.assertEqual(results["worker:0"]["num_replicas"], 2)
    # Synchronous: exactly train_steps global steps, on both workers.
    self.assertEqual(results["chief:0"]["global_step"], 60)
    self.assertEqual(tf.train.latest_checkpoint(model_dir), os.path.join(model_dir,
                                                                         "model.ckpt-60"))
    self.assertGreater(results["chief:0"]["metrics"]["accuracy"], 0.5)

  def test_a_chief_alone_with_an_evaluator(self):
    # A one-machine job of a training service: TF_CONFIG names a chief and an evaluator only.
    code, out, results, model_dir = self._cluster(workers=0, ps=0, evaluator=True,
                                                  train_steps=40)
    self.assertEqual(code, 0, out[-5000:])
    self.assertEqual(results["chief:0"]["global_step"], 40)
    self.assertEqual(results["evaluator:0"]["evaluated"][-1], 40)
    self.assertGreaterEqual(max(_eval_steps(os.path.join(model_dir, "eval"))), 40)

  def test_evaluator_survives_retention_deleting_the_checkpoint_it_is_about_to_restore(self):
    # Seen as an evaluator exiting 1 once in five runs on a loaded machine: it picked a
    # checkpoint, and while it built its graph the chief saved keep_checkpoint_max more, so
    # the one it picked was deleted before it restored it ("ValueError: The passed save_path
    # is not a valid checkpoint"). race_retention makes that timing certain: the chief waits
    # after step 1 until the evaluator holds model.ckpt-0, which then waits until it is gone.
    code, out, results, model_dir = self._cluster(
        workers=0, ps=0, evaluator=True, train_steps=40, save_checkpoints_steps=10,
        keep_checkpoint_max=2, race_retention=True)
    self.assertEqual(code, 0, out[-5000:])
    self.assertRegex(out, r"exit codes: chief:0=0, evaluator:0=0; ok")
    evaluator = results["evaluator:0"]
    self.assertEqual(evaluator["held"], "model.ckpt-0")  # the race did happen
    self.assertIn("model.ckpt-0 was deleted by the chief's checkpoint retention", out)
    self.assertNotIn(0, evaluator["evaluated"])
    self.assertEqual(evaluator["evaluated"][-1], 40)
    self.assertGreaterEqual(max(_eval_steps(os.path.join(model_dir, "eval"))), 40)
    self.assertEqual(results["chief:0"]["global_step"], 40)

  def test_strategy_that_does_not_fit_the_cluster_stops_it(self):
    # multi_worker_mirrored refuses a cluster with ps tasks: every task fails at once with
    # its one-line error, and the launcher tears the rest down.
    code, out, _, _ = self._cluster(workers=1, ps=1, evaluator=False,
                                    strategy="multi_worker_mirrored")
    self.assertEqual(code, local_cluster.EXIT_TASK_FAILED)
    self.assertIn("error: --strategy=multi_worker_mirrored all-reduces between workers", out)


class TrainEntryPointTest(tf.test.TestCase):
  """The real entry point, scripts/train.py, as users run it (distribution flags wired)."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.data_dir = os.path.join(self.root, "digits")
    estimator_lib.load_dataset(self.data_dir, create_default=True)
    self.model_dir = os.path.join(self.root, "run")

  def _flags(self, **extra):
    # A worker started 5 s after the chief finds the variables initialised; one started with
    # it waits in the Estimator's 30 s readiness poll.
    flags = dict(data_dir=self.data_dir, model_dir=self.model_dir, model="dnn", train_steps=60,
                 save_checkpoints_steps=20, batch_size=32, log_every_steps=20,
                 max_worker_delay_secs=5, session_timeout_secs=120)
    flags.update(extra)
    return tuple(f"--{k}={v}" for k, v in flags.items())

  def test_train_py_parameter_server_cluster_with_evaluator(self):
    cfg = local_cluster.LaunchConfig(
        train_args=self._flags(strategy="parameter_server"), train_script=_TRAIN_PY,
        workers=1, ps=1, evaluator=True, timeout_secs=170, grace_secs=10)
    out = io.StringIO()
    code = local_cluster.run_cluster(cfg, out)
    text = out.getvalue()
    self.assertEqual(code, 0, text[-8000:])
    self.assertRegex(text, r"exit codes: ps:0=-15, chief:0=0, worker:0=0, evaluator:0=0; ok")
    ckpt = tf.train.latest_checkpoint(self.model_dir)
    self.assertBetween(int(ckpt.rsplit("-", 1)[1]), 60, 62)  # two async trainers: see above
    self.assertGreaterEqual(max(_eval_steps(os.path.join(self.model_dir, "eval"))), 60)
    self.assertIn("[chief:0] eval accuracy ", text)
    # Exports, when the run makes them, are SavedModels written by the chief alone.
    for path in glob.glob(os.path.join(self.model_dir, "export", "*", "*")):
      if os.path.basename(path).isdigit():
        self.assertTrue(os.path.exists(os.path.join(path, "saved_model.pb")), path)

  def test_train_py_multi_worker_mirrored_follows_one_device(self):
    # Two workers on one host under multi_worker_mirrored against scripts/train.py alone, same
    # seed. Each worker reads its own shards, so the examples of a step differ from the single
    # run's unless every example is the same one: then the gradient of every batch is the same,
    # and what is compared is the arithmetic of the strategy (initial weights, the all-reduce
    # that averages the replicas' gradients, clipping of the all-reduced gradient).
    same_dir = os.path.join(self.root, "one_digit")
    ((split, values, label),) = [e for e in digits.examples(eval_fraction=0.2, seed=0)
                                 if e[0] == "train"][:1]
    writer.write_dataset(same_dir, digits.SPEC,
                         [(s, values, label) for s in ["train"] * 256 + ["eval"] * 32],
                         num_shards=2, source={"format": "test", "same_example": True})
    common = dict(data_dir=same_dir, optimizer="sgd", learning_rate=0.05,
                  lr_schedule="constant", clip_norm=0.5, train_steps=20,
                  save_checkpoints_steps=20, export="false", keep_best=0)
    single_dir = os.path.join(self.root, "single")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, _TRAIN_PY,
                           *self._flags(model_dir=single_dir, **common)],
                          env=env, capture_output=True, text=True, timeout=170, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-8000:])
    cfg = local_cluster.LaunchConfig(
        train_args=self._flags(strategy="multi_worker_mirrored", **common),
        train_script=_TRAIN_PY, workers=1, ps=0, evaluator=False, timeout_secs=170,
        grace_secs=10)
    out = io.StringIO()
    code = local_cluster.run_cluster(cfg, out)
    self.assertEqual(code, 0, out.getvalue()[-8000:])
    # Synchronous: exactly train_steps global steps.
    self.assertEqual(tf.train.latest_checkpoint(self.model_dir),
                     os.path.join(self.model_dir, "model.ckpt-20"))

    def weights(model_dir, step):
      path = os.path.join(model_dir, f"model.ckpt-{step}")
      return {n: tf.train.load_variable(path, n)
              for n, _ in tf.train.list_variables(path) if n.startswith("dnn/")}

    start, single, mirrored = (weights(single_dir, 0), weights(single_dir, 20),
                               weights(self.model_dir, 20))
    self.assertNotEmpty(single)
    self.assertEqual(single.keys(), mirrored.keys())
    mirrored_start = weights(self.model_dir, 0)
    for name in start:  # the same seed gives the same initial weights on every worker
      np.testing.assert_array_equal(start[name], mirrored_start[name], err_msg=name)
    for name in single:
      self.assertAllClose(single[name], mirrored[name], atol=1e-5, msg=name)
    moved = max(float(np.max(np.abs(single[n] - start[n]))) for n in single)
    self.assertGreater(moved, 1e-3)  # training did move them
    worst = max(float(np.max(np.abs(single[n] - mirrored[n]))) for n in single)
    print(f"multi_worker_mirrored (2 workers) vs one device after 20 steps: max |weight "
          f"difference| {worst:.2e}, weights moved up to {moved:.3f}")

  def test_train_py_rejects_a_malformed_tf_config_in_one_line(self):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": {"chief": ["127.0.0.1:1"],
                                                 "evaluator": ["127.0.0.1:2"]},
                                     "task": {"type": "chief", "index": 0}}))
    proc = subprocess.run([sys.executable, _TRAIN_PY, *self._flags()], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(proc.returncode, 2, proc.stderr[-3000:])
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    self.assertLen(errors, 1, proc.stderr[-3000:])
    self.assertIn('TF_CONFIG lists "evaluator" in "cluster"', errors[0])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertFalse(os.path.exists(self.model_dir))  # nothing started


if __name__ == "__main__":
  tf.test.main()
