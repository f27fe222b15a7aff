"""deploy/: the cluster job templates name real flags with valid values, run the same flags on
every task, keep data and model_dir on gs://, and restart preempted tasks; the GPU image
installs exactly the CUDA wheels TensorFlow asks for, and every GPU job runs it."""

import glob
import importlib.metadata
import os
import re

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized

from estimator_app import config as config_lib
from estimator_app.training import distribution
from estimator_app.training import preemption
from scripts import experiment_flags
from scripts import train  # pylint: disable=unused-import (defines the train.py flags)

FLAGS = flags.FLAGS
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DEPLOY = os.path.join(_ROOT, "deploy")
_LOCK = os.path.join(_ROOT, "requirements_lock.txt")
_GPU_REQUIREMENTS = "requirements_gpu.txt"
_VARS = {"JOB": "digits-test", "NAMESPACE": "training", "IMAGE": "gcr.io/p/image:v1",
         "IMAGE_GPU": "gcr.io/p/image:v1-gpu", "BUCKET": "bucket-1",
         "GCP_SERVICE_ACCOUNT": "trainer"}
_TEMPLATES = sorted(os.path.relpath(p, _DEPLOY)
                    for p in glob.glob(os.path.join(_DEPLOY, "**", "*.yaml"), recursive=True))
_CUDA_EXTRA = "and-cuda"


def _read(relpath):
  with open(os.path.join(_DEPLOY, relpath)) as f:
    return f.read()


def _render(relpath):
  """The template with every placeholder filled (envsubst's job); unknown ones fail."""
  text = _read(relpath)
  unknown = set(re.findall(r"\$\{(\w+)\}", text)) - set(_VARS)
  if unknown:
    raise AssertionError(f"{relpath}: undocumented placeholders {sorted(unknown)}")
  return re.sub(r"\$\{(\w+)\}", lambda m: _VARS[m.group(1)], text)


def _normalize(name):
  """A distribution name as pip compares them (PEP 503)."""
  return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path):
  """{normalized name (with [extras]): version} of a requirements file; every line `name==v`."""
  pins = {}
  with open(path) as f:
    for line in f:
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      m = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[\w,-]+\])?==([\w.+!-]+)", line)
      if not m:
        raise AssertionError(f"{path}: {line!r} is not pinned exactly (name==version)")
      pins[_normalize(m.group(1)) + (m.group(2) or "")] = m.group(3)
  return pins


def _tensorflow_cuda_requirements():
  """{name: version} of the `and-cuda` extra, from the installed TensorFlow's METADATA."""
  dist = importlib.metadata.distribution("tensorflow")
  out = {}
  for req in dist.requires or ():
    if not re.search(r"extra\s*==\s*['\"]" + _CUDA_EXTRA + r"['\"]", req):
      continue
    # "nvidia-cublas-cu12 (==12.2.5.6) ; extra == 'and-cuda'" (or without the parentheses).
    m = re.match(r"^([A-Za-z0-9._-]+)\s*\(?\s*==\s*([\w.+!-]+)\s*\)?\s*;", req)
    if not m:
      raise AssertionError(f"tensorflow {dist.version} asks for {req!r}: not an exact pin")
    out[_normalize(m.group(1))] = m.group(2)
  return dist.version, out


def _dockerfile(relpath):
  """[(INSTRUCTION, arguments)] of a Dockerfile: comments dropped, continuations joined."""
  text = re.sub(r"\\\n", " ", "\n".join(
      l for l in _read(relpath).splitlines() if not l.lstrip().startswith("#")))
  out = []
  for line in text.splitlines():
    if line.strip():
      word, _, rest = line.strip().partition(" ")
      out.append((word.upper(), " ".join(rest.split())))
  return out


def _containers(text):
  """(image, requests GPUs) of every container / worker pool of a rendered template."""
  chunks = re.split(r"^\s*- (?:name: tensorflow|machineSpec:).*$", text, flags=re.M)[1:]
  out = []
  for chunk in chunks:
    image = re.search(r"^\s*(?:image|imageUri): (\S+)", chunk, re.M)
    gpus = re.search(r"nvidia\.com/gpu\W+(\d+)|acceleratorCount: (\d+)", chunk)
    out.append((image.group(1) if image else None,
                bool(gpus) and int(gpus.group(1) or gpus.group(2)) > 0))
  return out


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

  def test_gpu_requirements_pin_exactly_the_cuda_wheels_tensorflow_asks_for(self):
    lock = _pins(_LOCK)
    tf_version, wanted = _tensorflow_cuda_requirements()
    self.assertEqual(tf_version, lock["tensorflow"])  # the METADATA read is the lock's TF
    self.assertGreaterEqual(len(wanted), 10, wanted)  # cublas, cudnn, ...: the extra was parsed
    gpu = _pins(os.path.join(_DEPLOY, _GPU_REQUIREMENTS))
    self.assertEqual(gpu.pop(f"tensorflow[{_CUDA_EXTRA}]", None), lock["tensorflow"])
    self.assertEqual(gpu, wanted)
    self.assertEmpty(set(gpu) & set(lock), "a CUDA wheel pinned in the lock too")

  def test_gpu_dockerfile_is_the_cpu_image_plus_the_cuda_wheels(self):
    cpu, gpu = _dockerfile("Dockerfile"), _dockerfile("Dockerfile.gpu")

    def only(steps, word):
      return [args for w, args in steps if w == word]

    self.assertEqual(only(gpu, "FROM"), only(cpu, "FROM"))
    self.assertEqual(only(gpu, "WORKDIR"), only(cpu, "WORKDIR"))
    self.assertEqual(only(gpu, "ENTRYPOINT"), only(cpu, "ENTRYPOINT"))
    packages = [a for a in only(cpu, "COPY") if a.split()[0] != "requirements_lock.txt"]
    self.assertLen(packages, 4)  # input_fns model_fns estimator_app scripts
    self.assertEqual([a for a in only(gpu, "COPY") if a in packages], packages)
    self.assertIn("requirements_lock.txt .", only(gpu, "COPY"))
    self.assertIn(f"deploy/{_GPU_REQUIREMENTS} .", only(gpu, "COPY"))
    # One pip run over both files, so the CUDA pins resolve together with the lock.
    self.assertEqual(only(gpu, "RUN"), [
        f"pip install --no-cache-dir -r requirements_lock.txt -r {_GPU_REQUIREMENTS}"])
    cpu_env = " ".join(only(cpu, "ENV"))
    gpu_env = " ".join(only(gpu, "ENV"))
    for setting in cpu_env.split():
      self.assertIn(setting, gpu_env.split())
    self.assertIn("NVIDIA_DRIVER_CAPABILITIES=compute,utility", gpu_env.split())

  @parameterized.named_parameters(
      *[(re.sub(r"\W", "_", t[:-len(".yaml")]), t) for t in _TEMPLATES])
  def test_every_container_that_requests_gpus_runs_the_gpu_image(self, relpath):
    containers = _containers(_render(relpath))
    self.assertNotEmpty(containers)
    for image, wants_gpus in containers:
      self.assertEqual(image, _VARS["IMAGE_GPU"] if wants_gpus else _VARS["IMAGE"],
                       f"{relpath}: a container {'with' if wants_gpus else 'without'} GPUs")
    header = "\n".join(l for l in _read(relpath).splitlines() if l.startswith("#"))
    if any(wants_gpus for _, wants_gpus in containers):
      self.assertIn("IMAGE_GPU=", header)  # the export line names the GPU image
      self.assertIn("docker build -f deploy/Dockerfile.gpu", header)

  def test_the_gpu_template_is_checked(self):
    # The GPU-image test above must not pass vacuously: this template requests GPUs.
    gpu_templates = [t for t in _TEMPLATES if any(g for _, g in _containers(_render(t)))]
    self.assertIn("kubeflow/tfjob-multi-worker-mirrored.yaml", gpu_templates)

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
    # The learning-rate schedule spans the whole job (it once ended at step 2000 of 20000),
    # and no cadence default is left at a value sized for the 2000-step demo.
    c = cfg.cadence
    if cfg.optimization.lr_schedule in ("cosine", "exponential"):
      self.assertEqual(cfg.train_config.decay_steps, cfg.run.train_steps)
    self.assertEqual(config_lib.warnings(cfg), [])
    self.assertLessEqual(c.checkpoint_steps, cfg.run.train_steps)
    self.assertGreaterEqual(cfg.run.train_steps // c.checkpoint_steps, 4)
    self.assertEqual(cfg.distribution.strategy, strategy)
    self.assertIn(strategy, distribution.STRATEGIES)


if __name__ == "__main__":
  absltest.main()
