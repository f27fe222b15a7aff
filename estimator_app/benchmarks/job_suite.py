"""The main job end to end: `scripts/train.py` against a plain Estimator script, fresh processes.

  ./bazelw run //scripts:benchmark -- --suite=job
  ./bazelw run //scripts:benchmark -- --suite=job --scale=0.1 --repetitions=1   # smoke run

Data: MNIST-sized learnable synthetic examples (28x28x1 uint8, 10 classes: a fixed template per
class plus noise; 60,000 x scale train, 10,000 x scale eval), written once under work_dir.
Model `dnn` (784-128-10 by default), batch 100, 1500 x scale steps. Variants, alternated in
fresh processes (harness.alternate, one warm-up call each), each timed from spawn to exit:

  job/train_py        python -m scripts.train with the job's defaults: a checkpoint, a full
                      evaluation, a latest export (and a best one when it improves) every
                      quarter of the run, quick evaluations between, a final export; every
                      export validated in a separate process before it becomes visible
  job/plain_script    the same model_fn and input_fns in a bare tf.estimator.Estimator:
                      train(max_steps), evaluate once, export_saved_model once, no validation

Ratios: job/vs_plain = train_py / plain_script (wall time; target <= 1.3) and
job/non_training_share = 1 - train / total of the job's own breakdown (target <= 0.25), read
from the final summary train.py prints (`in 1:05: train 0:35 (54%), evals 0:08, ...`); the
set-up, evals and exports shares are reported beside it.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import options as options_lib
from estimator_app.benchmarks import startup_suite

SUITE = "job"
MODEL = "dnn"
BATCH = 100
STEPS = 1500
TRAIN_EXAMPLES = 60_000
EVAL_EXAMPLES = 10_000
TARGETS = {"job/vs_plain": ("<=", 1.3), "job/non_training_share": ("<=", 0.25)}
# train.py's summary line: "Trained dnn on DIR to step 1500 in 1:05: train 0:35 (54%), ..."
_SUMMARY = re.compile(r"to step \d+ in ([\d:]+): (.*)\.$", re.M)
_PART = re.compile(r"(train|evals|exports|set-up) ([\d:]+)")
_TRAIN_SHARE = re.compile(r"train [\d:]+ \((\d+)%\)")


def _seconds(text: str) -> float:
  value = 0.0
  for part in text.split(":"):
    value = value * 60 + float(part)
  return value


def parse_breakdown(stdout: str) -> Dict[str, float]:
  """{"total": s, "train": s, "evals": s, "exports": s, "set-up": s, "train_share": fraction}
  from train.py's output (seconds to the second; the train share to the percent).

  Raises:
    ValueError: no summary line in the output.
  """
  found = _SUMMARY.search(stdout)
  if not found:
    raise ValueError(f"no 'Trained ... in M:SS: ...' summary line in:\n{stdout[-2000:]}")
  out = {"total": _seconds(found.group(1))}
  out.update({name: _seconds(value) for name, value in _PART.findall(found.group(2))})
  share = _TRAIN_SHARE.search(found.group(2))
  out["train_share"] = int(share.group(1)) / 100 if share else 0.0
  return out


def learnable(n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """n examples a dnn learns to ~90%+: a fixed random template per class plus noise."""
  templates = np.random.default_rng(1234).integers(0, 256, (10, 28, 28, 1))
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n).astype(np.int64)
  noise = rng.normal(0, 140, (n, 28, 28, 1))
  return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels


def write_data(work_dir: str, scale: float) -> str:
  """The train and eval splits as TFRecords under work_dir (reused when already there)."""
  # Imported here: the parent only spawns processes and needs no TensorFlow for that.
  from input_fns import feature_spec as fs  # pylint: disable=g-import-not-at-top
  from input_fns import manifest as manifest_lib  # pylint: disable=g-import-not-at-top
  from input_fns import writer  # pylint: disable=g-import-not-at-top
  n_train, n_eval = max(1000, int(TRAIN_EXAMPLES * scale)), max(500, int(EVAL_EXAMPLES * scale))
  data_dir = os.path.join(work_dir, "job", f"learnable_{n_train}_{n_eval}")
  if os.path.exists(os.path.join(data_dir, manifest_lib.FILENAME)):
    return data_dir
  spec = fs.image_spec(28, 28, 1, [str(i) for i in range(10)])

  def examples():
    for split, n, seed in (("train", n_train, 0), ("eval", n_eval, 1)):
      images, labels = learnable(n, seed)
      for x, y in zip(images, labels):
        yield split, {"image": x}, int(y)

  writer.write_dataset(data_dir, spec, examples(), num_shards=4,
                       source={"format": "synthetic", "train": n_train, "eval": n_eval})
  return data_dir


def _flags(data_dir: str, model_dir: str, steps: int) -> List[str]:
  return [f"--model={MODEL}", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
          f"--train_steps={steps}", f"--batch_size={BATCH}"]


def plain_main(argv: List[str]) -> None:
  """The plain script: Estimator.train, evaluate once, export once (run in its own process)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from estimator_app import config as config_lib  # pylint: disable=g-import-not-at-top
  from estimator_app import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from input_fns import preprocessing  # pylint: disable=g-import-not-at-top
  from input_fns import splits  # pylint: disable=g-import-not-at-top
  values = dict(a[2:].split("=", 1) for a in argv)
  cfg = config_lib.from_layers([({
      "model": values["model"],
      "data": {"data_dir": values["data_dir"], "batch_size": int(values["batch_size"])},
      "run": {"model_dir": values["model_dir"], "train_steps": int(values["train_steps"])},
  }, "plain script")])
  data = estimator_lib.open_data(cfg)
  estimator = tf.estimator.Estimator(estimator_lib.build_model_fn(cfg, data.spec),
                                     model_dir=cfg.run.model_dir)
  estimator.train(estimator_lib.train_input_fn(cfg, data), max_steps=cfg.run.train_steps)
  result = estimator.evaluate(estimator_lib.eval_input_fn(cfg, data.primary, splits.EVAL))

  def receiver():  # raw features in, the evaluation preprocessing in the graph
    raw = {f.name: tf.compat.v1.placeholder(f.dtype, [None, *f.shape], name=f.name)
           for f in data.spec.features}
    chain = preprocessing.parse_chain(cfg.data.preprocessing)
    features = preprocessing.apply(chain, dict(raw), data.spec, training=False)
    return tf.estimator.export.ServingInputReceiver(features, raw)

  estimator.export_saved_model(os.path.join(cfg.run.model_dir, "export"), receiver)
  print(f"plain script: accuracy {result['accuracy']:.4f} at step {result['global_step']}")


def _run(argv: List[str], cwd: str, env: Dict[str, str]) -> Tuple[float, str]:
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                        timeout=1800)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n"
                       f"{proc.stderr[-3000:]}")
  return seconds, proc.stdout + proc.stderr


def run(opts: options_lib.BenchmarkOptions) -> Tuple[List[harness.Figure], Dict[str, object]]:
  """Times both variants `opts.repetitions` times, alternated; returns (figures, ratios)."""
  os.makedirs(opts.work_dir, exist_ok=True)
  data_dir = write_data(opts.work_dir, opts.scale)
  steps = max(100, int(STEPS * opts.scale))
  src = startup_suite.source_root()
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("BUILD_", "RUNFILES", "PYTHON"))}
  env.update(PYTHONPATH=src, TF_CPP_MIN_LOG_LEVEL="3")
  breakdowns: List[Dict[str, float]] = []

  def job() -> float:
    model_dir = tempfile.mkdtemp(prefix="job-", dir=opts.work_dir)
    seconds, output = _run([sys.executable, "-m", "scripts.train",
                            *_flags(data_dir, os.path.join(model_dir, "run"), steps)], src, env)
    breakdowns.append(parse_breakdown(output))
    return seconds

  def plain() -> float:
    model_dir = tempfile.mkdtemp(prefix="plain-", dir=opts.work_dir)
    return _run([sys.executable, "-m", "estimator_app.benchmarks.job_suite",
                 *_flags(data_dir, os.path.join(model_dir, "run"), steps)], src, env)[0]

  samples = harness.alternate({"job/train_py": job, "job/plain_script": plain},
                              repetitions=opts.repetitions)
  measured = breakdowns[1:]  # the first call is the warm-up
  figures = [harness.figure(SUITE, name, "s", s) for name, s in samples.items()]
  for part in ("train", "evals", "exports", "set-up"):
    figures.append(harness.figure(SUITE, f"job/train_py_{part.replace('-', '')}", "s",
                                  [b.get(part, 0.0) for b in measured]))
  med = {f.name: f.median for f in figures}
  ratios: Dict[str, object] = {
      "job/vs_plain": med["job/train_py"] / med["job/plain_script"],
      "job/non_training_share": 1.0 - float(np.median([b["train_share"] for b in measured])),
  }
  for name, (op, bound) in TARGETS.items():
    value = ratios[name]
    ratios[f"{name} target"] = (f"{value:.3f} {op} {bound:g}: "
                                f"{'met' if value <= bound else 'MISSED'}")
  return figures, ratios


if __name__ == "__main__":
  plain_main(sys.argv[1:])
