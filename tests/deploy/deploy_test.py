"""deploy/: the cluster job templates name real flags with valid values, run the same flags on
every task, keep data and model_dir on gs://, and restart preempted tasks."""

import os
import re

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized

from estimator_app import distribution
from estimator_app import preemption
from scripts import experiment_flags
from scripts import train  # pylint: disable=unused-import (defines the train.py flags)

FLAGS = flags.FLAGS
_DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "deploy")
_VARS = {"JOB": "digits-test", "NAMESPACE": "training", "IMAGE": "gcr.io/p/image:v1",
         "BUCKET": "bucket-1", "GCP_SERVICE_ACCOUNT": "trainer"}


def _render(relpath):
  with open(os.path.join(_DEPLOY, relpath)) as f:
    text = f.read()
  unknown = set(re.findall(r"\$\{(\w+)\}", text)) - set(_VARS)
  if unknown:
    raise AssertionError(f"{relpath}: undocumented placeholders {sorted(unknown)}")
  return re.sub(r"\$\{(\w+)\}", lambda m: _VARS[m.group(1)], text)


def _args(text):
  """The flags of the `args: &args` list every task shares."""
  lines = text.splitlines()
  start = next(i for i, l in enumerate(lines) if l.strip() == "args: &args")
  out = []
  for line in lines[start + 1:]:
    item = re.match(r"^\s*- (--\S+)", line)
    if not item:
      break
    out.append(item.group(1))
  return out


class ManifestTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("tfjob_parameter_server", "kubeflow/tfjob.yaml", ("Chief", "Worker", "PS", "Evaluator"),
       "parameter_server"),
      ("tfjob_multi_worker_mirrored", "kubeflow/tfjob-multi-worker-mirrored.yaml",
       ("Chief", "Worker", "Evaluator"), "multi_worker_mirrored"),
  )
  def test_tfjob(self, relpath, roles, strategy):
    text = _render(relpath)
    found = re.findall(r"^    (\w+):\n      replicas:", text, re.M)
    self.assertEqual(tuple(found), roles)
    self.assertEqual(text.count("- name: tensorflow"), len(roles))
    self.assertEqual(text.count("args: *args"), len(roles) - 1)  # same flags on every task
    self.assertEqual(text.count("restartPolicy: ExitCode"), len(roles))
    grace = [int(g) for g in re.findall(r"terminationGracePeriodSeconds: (\d+)", text)]
    self.assertNotEmpty(grace)
    self.assertTrue(all(g > preemption.DEFAULT_GRACE_SECS for g in grace), grace)
    self.assertIn("cleanPodPolicy: Running", text)  # the ps pods go when the chief is done
    self._check_flags(_args(text), strategy)

  def test_vertex_custom_job(self):
    text = _render("vertex/custom_job.yaml")
    self.assertEqual(text.count("- machineSpec:"), 4)  # chief, workers, ps, evaluator
    self.assertEqual(text.count("args: *args"), 3)
    self._check_flags(_args(text), "parameter_server")

  def test_dockerfile_runs_train_py_with_the_locked_environment(self):
    with open(os.path.join(_DEPLOY, "Dockerfile")) as f:
      text = f.read()
    self.assertIn("pip install --no-cache-dir -r requirements_lock.txt", text)
    for package in ("input_fns", "model_fns", "estimator_app", "scripts"):
      self.assertIn(f"COPY {package} {package}", text)
    self.assertIn('ENTRYPOINT ["python", "/app/scripts/train.py"]', text)

  def _check_flags(self, args, strategy):
    names = [a[2:].split("=", 1)[0] for a in args]
    self.assertLen(set(names), len(names))
    for name in names:
      self.assertIn(name, FLAGS, f"--{name} is not a flag of scripts/train.py")
    with flagsaver.flagsaver():
      FLAGS(["train"] + args)
      cfg = experiment_flags.config_from_flags()  # every value valid, as training reads it
    self.assertTrue(cfg.data.data_dir.startswith("gs://bucket-1/"), cfg.data.data_dir)
    self.assertTrue(cfg.run.model_dir.startswith("gs://bucket-1/runs/digits-test"))
    self.assertEqual(cfg.distribution.strategy, strategy)
    self.assertIn(strategy, distribution.STRATEGIES)


if __name__ == "__main__":
  absltest.main()
