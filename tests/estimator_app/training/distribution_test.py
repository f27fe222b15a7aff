"""TF_CONFIG validation, strategy/cluster checks, RunConfig wiring, and MirroredStrategy over
two logical CPU devices matching a single-device run."""

import json
import os
import subprocess
import sys
import time
from unittest import mock

import tensorflow as tf

# Two logical CPU devices for MirroredStrategy; only possible before TF initialises its devices.
_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _CPUS[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top

import numpy as np  # pylint: disable=g-import-not-at-top

from estimator_app import config as config_lib  # pylint: disable=g-import-not-at-top
from estimator_app.training import distribution  # pylint: disable=g-import-not-at-top
from estimator_app import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
from estimator_app import runner  # pylint: disable=g-import-not-at-top
from input_fns import errors  # pylint: disable=g-import-not-at-top
from tests.testing import distributed_driver  # pylint: disable=g-import-not-at-top

CLUSTER = {"chief": ["127.0.0.1:2220"], "worker": ["127.0.0.1:2221", "127.0.0.1:2222"],
           "ps": ["127.0.0.1:2223"]}


def _tf_config(cluster=None, task_type="worker", index=0, **extra):
  d = {"cluster": CLUSTER if cluster is None else cluster,
       "task": {"type": task_type, "index": index}}
  d.update(extra)
  return json.dumps(d)


def _task(task_type="worker", index=0, cluster=None):
  return distribution.parse_tf_config(_tf_config(cluster, task_type, index))


class TfConfigTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("not_json", '{"cluster": {"chief": ["a:1"]', "is not valid JSON"),
      ("not_an_object", '["chief", "worker"]', "must be a JSON object"),
      ("no_cluster", json.dumps({"task": {"type": "worker", "index": 0}}), 'no "cluster"'),
      ("evaluator_in_cluster",
       _tf_config(dict(CLUSTER, evaluator=["127.0.0.1:2229"]), "evaluator"),
       'lists "evaluator" in "cluster"'),
      ("two_chiefs", _tf_config(dict(CLUSTER, chief=["h:1", "h:2"])), "2 chief task(s)"),
      ("no_chief", _tf_config({"worker": ["h:1", "h:2"], "ps": ["h:3"]}), "0 chief task(s)"),
      ("chief_and_master", _tf_config(dict(CLUSTER, master=["h:9"])), 'both "chief" and "master"'),
      ("address_without_port", _tf_config(dict(CLUSTER, ps=["localhost"])),
       "cluster.ps[0] is 'localhost'"),
      ("port_out_of_range", _tf_config(dict(CLUSTER, ps=["h:70000"])), "port in 1-65535"),
      ("address_not_a_string", _tf_config(dict(CLUSTER, ps=[2223])), 'expected a "host:port"'),
      ("bad_host", _tf_config(dict(CLUSTER, ps=["bad host:1"])), "cluster.ps[0]"),
      ("job_not_a_list", _tf_config(dict(CLUSTER, ps="h:1")), "expected a non-empty list"),
      ("duplicate_address", _tf_config(dict(CLUSTER, ps=["127.0.0.1:2221"])),
       "every task needs its own address"),
      ("unknown_job", _tf_config(dict(CLUSTER, trainer=["h:5"])), "unknown job(s) ['trainer']"),
      ("no_task", json.dumps({"cluster": CLUSTER}), 'no "task"'),
      ("unknown_task_type", _tf_config(task_type="boss"), "task type 'boss' is not one of"),
      ("task_type_not_in_cluster", _tf_config({"chief": ["h:1"], "worker": ["h:2"]}, "ps"),
       "task type 'ps' has no job in cluster"),
      ("index_out_of_range", _tf_config(task_type="worker", index=2),
       "index 2 is out of range for 'worker': expected an integer in [0, 2)"),
      ("negative_index", _tf_config(task_type="chief", index=-1), "index -1 is out of range"),
      ("index_not_a_number", _tf_config(task_type="chief", index="first"),
       "index 'first' is out of range"),
      ("second_evaluator", _tf_config(task_type="evaluator", index=1), "in [0, 1)"),
      ("master_with_evaluator", _tf_config({"master": ["h:1"], "ps": ["h:2"]}, "evaluator"),
       "legacy master evaluates itself"),
  )
  def test_malformed_tf_config_is_one_clear_sentence(self, text, expected):
    with self.assertRaises(distribution.TfConfigError) as cm:
      distribution.parse_tf_config(text)
    message = str(cm.exception)
    self.assertIn(expected, message)
    self.assertTrue(message.startswith("TF_CONFIG "), message)
    self.assertNotIn("\n", message)
    self.assertIsInstance(cm.exception, errors.UserInputError)

  def test_roles_of_a_valid_cluster(self):
    chief = _task("chief")
    self.assertTrue(chief.is_chief and chief.trains)
    self.assertEqual((chief.num_workers, chief.num_ps, chief.worker_index), (3, 1, 0))
    worker = _task("worker", 1)
    self.assertFalse(worker.is_chief)
    self.assertEqual(worker.worker_index, 2)
    self.assertEqual(worker.name, "worker:1")
    ps = _task("ps")
    self.assertTrue(ps.is_ps and not ps.trains)
    self.assertIsNone(ps.worker_index)
    evaluator = _task("evaluator")
    self.assertTrue(evaluator.is_evaluator and not evaluator.trains)
    self.assertNotIn("evaluator", evaluator.cluster)

  def test_legacy_master_is_the_chief(self):
    task = _task("master", cluster={"master": ["h:1"], "worker": ["h:2"], "ps": ["h:3"]})
    self.assertTrue(task.is_chief)
    self.assertTrue(distribution.writes_outputs(task))
    self.assertEqual(_task("worker", cluster={"master": ["h:1"], "worker": ["h:2"],
                                              "ps": ["h:3"]}).worker_index, 1)

  def test_accepted_addresses_and_local_runs(self):
    task = distribution.parse_tf_config(_tf_config(
        {"chief": ["trainer-chief-0.ns.svc.cluster.local:2222"], "worker": ["[::1]:2223"],
         "ps": ["10.0.0.3:2224"]}, "worker", "0", environment="cloud"))
    self.assertEqual(task.task_index, 0)
    for text in (None, "", "  ", "{}"):
      self.assertIsNone(distribution.parse_tf_config(text))
    self.assertIsNone(distribution.current_task({}))
    self.assertEqual(distribution.current_task({"TF_CONFIG": _tf_config()}).name, "worker:0")


class StrategyCheckTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("mwms_without_cluster", "multi_worker_mirrored", None, "needs a cluster"),
      ("ps_without_cluster", "parameter_server", None, "needs a cluster"),
      ("mirrored_in_cluster", "mirrored", CLUSTER, "is for one machine without TF_CONFIG"),
      ("mirrored_chief_alone", "mirrored", {"chief": ["h:1"]}, "one-machine job"),
      ("mwms_with_ps", "multi_worker_mirrored", CLUSTER, "lists ps tasks"),
      ("ps_without_ps", "parameter_server", {"chief": ["h:1"], "worker": ["h:2"]},
       "lists no ps task"),
      ("default_cluster_without_ps", "default", {"chief": ["h:1"], "worker": ["h:2"]},
       "lists no ps task"),
  )
  def test_strategy_must_fit_the_cluster(self, strategy, cluster, expected):
    task = None if cluster is None else _task("chief", cluster=cluster)
    with self.assertRaisesRegex(distribution.DistributionError, expected):
      distribution.make_strategies(distribution.DistributionConfig(strategy=strategy), task)

  def test_bad_flag_values(self):
    with self.assertRaisesRegex(distribution.DistributionError, "--strategy='horovod'"):
      distribution.DistributionConfig(strategy="horovod")
    with self.assertRaisesRegex(distribution.DistributionError, "--devices"):
      distribution.DistributionConfig(devices="/cpu:0")
    with self.assertRaisesRegex(distribution.DistributionError, "--num_gpus=-2"):
      distribution.DistributionConfig(num_gpus=-2)
    with self.assertRaisesRegex(distribution.DistributionError, "--num_gpus=2 with"):
      distribution.check(distribution.DistributionConfig(num_gpus=2), _task("chief"))
    with self.assertRaisesRegex(distribution.DistributionError, "machine has 0 GPU"):
      distribution.make_strategies(distribution.DistributionConfig(strategy="mirrored",
                                                                   num_gpus=2))

  def test_a_chief_alone_needs_no_ps(self):
    alone = _task("chief", cluster={"chief": ["h:1"]})
    for strategy in ("default", "multi_worker_mirrored"):
      distribution.check(distribution.DistributionConfig(strategy=strategy), alone)
    with self.assertRaisesRegex(distribution.DistributionError, "lists no ps task"):
      distribution.check(distribution.DistributionConfig(strategy="parameter_server"), alone)

  def test_default_and_parameter_server_use_no_strategy(self):
    for strategy in ("default", "parameter_server"):
      cfg = distribution.DistributionConfig(strategy=strategy)
      self.assertEqual(distribution.make_strategies(cfg, _task("worker")), (None, None))
    self.assertEqual(distribution.make_strategies(distribution.DistributionConfig()),
                     (None, None))


class RunConfigTest(tf.test.TestCase):

  def test_device_filters_keep_ps_tasks_from_waiting_for_others(self):
    cfg = distribution.DistributionConfig(strategy="parameter_server")
    self.assertEqual(list(distribution.session_config(cfg, _task("chief")).device_filters),
                     ["/job:ps", "/job:chief"])
    self.assertEqual(list(distribution.session_config(cfg, _task("worker", 1)).device_filters),
                     ["/job:ps", "/job:worker/task:1"])
    self.assertEmpty(distribution.session_config(cfg, _task("evaluator")).device_filters)
    self.assertEmpty(distribution.session_config(cfg, None).device_filters)
    self.assertTrue(distribution.session_config(cfg, None).allow_soft_placement)

  def test_xla_sets_the_jit_level(self):
    on = distribution.session_config(distribution.DistributionConfig(xla=True), None)
    off = distribution.session_config(distribution.DistributionConfig(), None)
    self.assertEqual(on.graph_options.optimizer_options.global_jit_level,
                     tf.compat.v1.OptimizerOptions.ON_1)
    self.assertEqual(off.graph_options.optimizer_options.global_jit_level,
                     tf.compat.v1.OptimizerOptions.DEFAULT)

  def test_gpu_memory_growth_on_by_default_and_no_xla_outside_training(self):
    cfg = distribution.DistributionConfig(xla=True)
    self.assertTrue(distribution.session_config(cfg, None).gpu_options.allow_growth)
    off = distribution.DistributionConfig(gpu_memory_growth=False)
    self.assertFalse(distribution.session_config(off, None).gpu_options.allow_growth)
    serving = distribution.session_config(cfg, None, training=False)
    self.assertEqual(serving.graph_options.optimizer_options.global_jit_level,
                     tf.compat.v1.OptimizerOptions.DEFAULT)
    distribution.configure_gpus(cfg)  # no GPU here: a no-op, not an error

  def test_collectives_are_nccl_on_gpus_and_ring_on_cpus(self):
    comm = tf.distribute.experimental.CollectiveCommunication
    auto = distribution.DistributionConfig(strategy="multi_worker_mirrored")
    self.assertEqual(distribution.collective_communication(auto, num_gpus=0), comm.RING)
    self.assertEqual(distribution.collective_communication(auto, num_gpus=8), comm.NCCL)
    ring = distribution.DistributionConfig(strategy="multi_worker_mirrored", collective="ring")
    self.assertEqual(distribution.collective_communication(ring, num_gpus=8), comm.RING)
    with self.assertRaisesRegex(distribution.DistributionError, "--collective='mpi'"):
      distribution.DistributionConfig(collective="mpi")

  def test_run_config_of_a_worker_keeps_the_filters_and_knows_its_place(self):
    env = {"TF_CONFIG": _tf_config(task_type="worker", index=1)}
    with mock.patch.dict(os.environ, env):
      cfg = distribution.DistributionConfig(strategy="parameter_server", max_worker_delay_secs=7,
                                            session_timeout_secs=90)
      task = distribution.current_task()
      rc = tf.estimator.RunConfig(model_dir=self.create_tempdir().full_path,
                                  **distribution.run_config_kwargs(cfg, task))
    self.assertEqual((rc.task_type, rc.task_id, rc.is_chief), ("worker", 1, False))
    self.assertEqual((rc.num_worker_replicas, rc.num_ps_replicas), (3, 1))
    self.assertEqual(list(rc.session_config.device_filters), ["/job:ps", "/job:worker/task:1"])
    self.assertEqual(rc.experimental_max_worker_delay_secs, 7)
    self.assertEqual(rc.session_creation_timeout_secs, 90)
    self.assertEqual(distribution.worker_start_delay_secs(cfg, task), 7)
    self.assertEqual(distribution.worker_start_delay_secs(cfg, _task("worker", 0)), 5)
    self.assertEqual(distribution.worker_start_delay_secs(cfg, _task("chief")), 0)

  def test_per_worker_input_gives_each_trainer_its_own_part(self):
    parts = [distribution.per_worker_input(_task(t, i), None)
             for t, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    self.assertEqual(parts, [(3, 0), (3, 1), (3, 2)])
    self.assertEqual(distribution.per_worker_input(_task("evaluator"), None), (1, 0))
    self.assertEqual(distribution.per_worker_input(None, None), (1, 0))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    self.assertEqual(distribution.per_worker_input(_task("chief"), strategy), (1, 0))

  def test_roles(self):
    self.assertTrue(distribution.writes_outputs(None))
    self.assertTrue(distribution.writes_outputs(_task("chief")))
    for t in ("worker", "ps", "evaluator"):
      self.assertFalse(distribution.writes_outputs(_task(t)))
    self.assertTrue(distribution.can_quick_eval(None))
    self.assertFalse(distribution.can_quick_eval(_task("chief")))
    self.assertEqual(distribution.eval_spec_timing(_task("evaluator"))["throttle_secs"],
                     distribution.EVALUATOR_POLL_SECS)
    self.assertEqual(distribution.eval_spec_timing(None)["throttle_secs"], 0)

  def test_wait_for_path(self):
    path = os.path.join(self.create_tempdir().full_path, "manifest.json")
    with self.assertRaisesRegex(distribution.DistributionError, "did not appear within 0 s"):
      distribution.wait_for_path(path, 0.2, "dataset manifest", poll_secs=0.05)
    with open(path, "w") as f:
      f.write("{}")
    distribution.wait_for_path(path, 0.2, "dataset manifest", poll_secs=0.05)


class MirroredTest(tf.test.TestCase, parameterized.TestCase):
  """Two replicas on two logical CPU devices against one device, same global batch."""

  def setUp(self):
    super().setUp()
    self.data_dir = os.path.join(self.create_tempdir().full_path, "digits")
    estimator_lib.load_dataset(self.data_dir, create_default=True)

  def _train(self, **args):
    run = dict(distributed_driver.DEFAULTS, data_dir=self.data_dir,
               model_dir=self.create_tempdir().full_path, train_steps=30)
    run.update(args)
    return distributed_driver.run(run)

  def test_mirrored_matches_single_device_after_the_same_examples(self):
    single = self._train()
    mirrored = self._train(strategy="mirrored", devices="/cpu:0,/cpu:1")
    self.assertEqual(mirrored["num_replicas"], 2)
    self.assertEqual(single["global_step"], mirrored["global_step"])
    # Same data per step (the global batch split in two halves), same initial weights: the
    # averaged gradient is the single-device gradient, up to float rounding.
    self.assertAllClose(single["metrics"]["loss"], mirrored["metrics"]["loss"], rtol=1e-3)
    self.assertAllClose(single["metrics"]["accuracy"], mirrored["metrics"]["accuracy"],
                        atol=0.01)
    # And training did something: the loss is well below log(10) of a uniform guess.
    self.assertLess(mirrored["metrics"]["loss"], 2.0)

  def test_steps_per_run_under_mirrored_matches_one_step_per_run(self):
    one = self._train(strategy="mirrored", devices="/cpu:0,/cpu:1")
    five = self._train(strategy="mirrored", devices="/cpu:0,/cpu:1", steps_per_run=5)
    self.assertEqual(five["global_step"], 30)
    self.assertEqual(five["steps_run"], 6)  # session.runs
    # The same steps on the same per-replica batches, merely 5 to a session.run.
    self.assertAllClose(one["metrics"]["loss"], five["metrics"]["loss"], rtol=1e-6)

  def test_scale_learning_rate_and_global_batch(self):
    strategy, _ = distribution.make_strategies(
        distribution.DistributionConfig(strategy="mirrored", devices="/cpu:0,/cpu:1"))
    cfg = distribution.DistributionConfig(strategy="mirrored", devices="/cpu:0,/cpu:1",
                                          scale_learning_rate=True)
    self.assertEqual(distribution.learning_rate(0.1, cfg, strategy), 0.2)
    self.assertEqual(distribution.learning_rate(0.1, distribution.DistributionConfig(), None),
                     0.1)
    distribution.check_batch_size(32, strategy)
    with self.assertRaisesRegex(distribution.DistributionError, "--batch_size=33"):
      distribution.check_batch_size(33, strategy)

  @parameterized.named_parameters(("float16", "float16"), ("bfloat16", "bfloat16"))
  def test_mirrored_trains_in_mixed_precision(self, precision):
    result = self._train(strategy="mirrored", devices="/cpu:0,/cpu:1", precision=precision,
                         train_steps=20)
    self.assertEqual(result["global_step"], 20)
    self.assertLess(result["metrics"]["loss"], 2.3)


class MirroredRunnerTest(tf.test.TestCase, parameterized.TestCase):
  """runner.train (what //scripts:train runs) under mirrored against one device: same seed,
  same data, same weights, with the real input pipeline (shuffle windows) and clipping on."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "digits")
    estimator_lib.load_dataset(cls.data_dir, create_default=True)

  def _train(self, clip_norm, **distribution_flags):
    model_dir = self.create_tempdir().full_path
    cfg = config_lib.from_dict({
        "model": "dnn", "hparams": {"dropout": 0.0},
        "data": {"data_dir": self.data_dir, "batch_size": 32},
        "optimization": {"optimizer": "sgd", "learning_rate": 0.1, "lr_schedule": "constant",
                         "clip_norm": clip_norm},
        "run": {"model_dir": model_dir, "train_steps": 20, "save_checkpoints_steps": 20,
                "log_every_steps": 10, "quick_eval_steps": 0, "keep_best": 0,
                "export": False},
        "distribution": distribution_flags}, "test")
    runner.train(cfg)
    weights = {}
    for step in (0, 20):
      path = os.path.join(model_dir, f"model.ckpt-{step}")
      weights[step] = {n: tf.train.load_variable(path, n)
                       for n, _ in tf.train.list_variables(path) if n.startswith("dnn/")}
    norms = [(e.step, v.simple_value)
             for f in tf.io.gfile.glob(os.path.join(model_dir, "events.out.tfevents.*"))
             for e in tf.compat.v1.train.summary_iterator(f) for v in e.summary.value
             if v.tag == "gradient_global_norm"]
    return weights, dict(norms)

  @parameterized.named_parameters(("no_clipping", 0.0), ("clipping", 0.05))
  def test_runner_train_under_mirrored_follows_one_device(self, clip_norm):
    single, single_norms = self._train(clip_norm)
    mirrored, mirrored_norms = self._train(clip_norm, strategy="mirrored",
                                           devices="/cpu:0,/cpu:1")
    self.assertNotEmpty(single[20])
    self.assertEqual(single[20].keys(), mirrored[20].keys())
    for name in single[0]:  # the same seed gives the same initial weights
      np.testing.assert_array_equal(single[0][name], mirrored[0][name], err_msg=name)
    for name in single[20]:  # and the same steps on the same examples the same weights
      self.assertAllClose(single[20][name], mirrored[20][name], atol=1e-6, msg=name)
    moved = max(float(np.max(np.abs(single[20][n] - single[0][n]))) for n in single[20])
    self.assertGreater(moved, 1e-3)  # training did move them
    if clip_norm:
      # The clipped quantity and the summary are the all-reduced gradient's norm, the
      # single-device gradient's (it was one replica's share, about half of it).
      self.assertNotEmpty(mirrored_norms)
      self.assertGreater(min(single_norms.values()), clip_norm)  # clipping was active
      for step, value in mirrored_norms.items():
        self.assertAllClose(value, single_norms[step], rtol=1e-4, msg=f"step {step}")
    else:
      self.assertEmpty(mirrored_norms)  # one replica's share would mislead: not summarised


# Writes 50 eval-like summaries into argv[1] as the TF_CONFIG task in argv[2], starting at the
# wall-clock second argv[3], so two of these open their event files in the same second.
_EVENT_WRITER = """
import sys, time
import tensorflow as tf
from estimator_app.training import distribution
logdir, tf_config, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
distribution.own_event_files(distribution.parse_tf_config(tf_config), [logdir])
time.sleep(max(0.0, start - time.time()))
with tf.Graph().as_default():
  writer = tf.compat.v1.summary.FileWriterCache.get(logdir)
for step in range(50):
  writer.add_summary(tf.compat.v1.Summary(value=[
      tf.compat.v1.Summary.Value(tag="accuracy", simple_value=step / 50)]), step)
  writer.flush()
"""


class EventFilesTest(tf.test.TestCase):

  def test_tasks_on_one_host_never_share_an_event_file(self):
    # The chief's final evaluation and the evaluator's both write model_dir/eval at the end of
    # a run; TF1 event file names carry only the second and the hostname.
    logdir = self.create_tempdir().full_path
    start = str(int(time.time()) + 3 + 0.2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", _EVENT_WRITER, logdir,
                               _tf_config(task_type=t, index=0), start], env=env)
             for t in ("chief", "evaluator")]
    for proc in procs:
      self.assertEqual(proc.wait(timeout=120), 0)
    files = os.listdir(logdir)
    self.assertEqual(sorted(f.rsplit(".", 1)[-1] for f in files), ["chief-0", "evaluator-0"],
                     files)
    for name in files:
      steps = [e.step for e in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name))
               if e.summary.value]
      self.assertEqual(steps, list(range(50)), name)

  def test_without_a_cluster_the_cache_is_untouched(self):
    logdir = self.create_tempdir().full_path
    distribution.own_event_files(None, [logdir])
    self.assertNotIn(logdir, tf.compat.v1.summary.FileWriterCache._cache)  # pylint: disable=protected-access


class XlaTest(tf.test.TestCase):

  def test_xla_compiles_the_training_graph(self):
    data_dir = os.path.join(self.create_tempdir().full_path, "digits")
    estimator_lib.load_dataset(data_dir, create_default=True)
    outputs = {}
    for xla in (False, True):
      args = dict(data_dir=data_dir, model_dir=self.create_tempdir().full_path, train_steps=10,
                  xla=xla)
      # XLA auto-clustering applies to CPUs only with this flag (GPUs need none).
      env = dict(os.environ, TF_XLA_FLAGS="--tf_xla_cpu_global_jit", TF_CPP_MIN_LOG_LEVEL="0",
                 PYTHONPATH=os.pathsep.join(sys.path))
      proc = subprocess.run([sys.executable, distributed_driver.__file__, json.dumps(args)],
                            env=env, capture_output=True, text=True, timeout=180, check=False)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      outputs[xla] = proc.stdout + proc.stderr
    self.assertIn("Compiled cluster using XLA", outputs[True])
    self.assertNotIn("Compiled cluster using XLA", outputs[False])


if __name__ == "__main__":
  tf.test.main()
