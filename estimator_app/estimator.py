"""What builds an Estimator from an experiment config: the data, the input_fns, the model_fn.

Entry points: `open_data` (every manifest a run reads, checked to fit together),
`train_input_fn` / `eval_input_fn`, `build_estimator` (the training Estimator of a task, or a
one-device one for evaluation, prediction and export), `prepare_warm_start`,
`check_trained_spec` and `evaluate` (one checkpoint on one split). The run loop that uses them
is `estimator_app/runner.py`; `estimator_app/analysis/` evaluates and predicts through them.
"""

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
from absl import logging

from estimator_app import config as config_lib
from estimator_app.checkpoints import warm_start as warm_start_lib
from estimator_app.training import distribution
from estimator_app.training import reused_eval
from input_fns import digits
from input_fns import feature_spec as fs
from input_fns import input_fn as input_fn_lib
from input_fns import manifest as manifest_lib
from input_fns import mixture
from input_fns import splits
from input_fns import writer
from model_fns import head as head_lib
from model_fns import model_fn as model_fn_lib

PRIMARY_EVAL = "eval"  # the primary eval set's TensorBoard run is model_dir/eval
QUICK_EVAL = "quick"  # model_dir/eval_quick


def load_dataset(data_dir: str, create_default: bool, seed: int = 0) -> manifest_lib.Manifest:
  """Returns the dataset at `data_dir`.

  Args:
    data_dir: a dataset directory.
    create_default: write the embedded digits dataset there if it holds no manifest yet.
    seed: split seed for the embedded input_fn_lib.

  Raises:
    manifest_lib.ManifestError: no dataset there (and create_default is False).
  """
  if not create_default or tf.io.gfile.exists(os.path.join(data_dir, manifest_lib.FILENAME)):
    return manifest_lib.read(data_dir)
  logging.info("writing the embedded digits dataset to %s", data_dir)
  return writer.write_dataset(
      data_dir, digits.SPEC, digits.examples(eval_fraction=0.2, seed=seed), num_shards=2,
      source={"format": digits.NAME, "eval_fraction": 0.2, "seed": seed})


@dataclasses.dataclass(frozen=True)
class Data:
  """The datasets of one run, read once from their manifests.

  Attributes:
    primary: data_dir: its feature spec is the model's; its eval split is the primary eval set,
      and its train split trains unless train_sources is given.
    train_sources: a weighted mixture of training datasets ((manifest, weight), ...), or ().
    eval_sets: extra named eval sets: name -> dataset (its eval split).
  """
  primary: manifest_lib.Manifest
  train_sources: Tuple[Tuple[manifest_lib.Manifest, float], ...]
  eval_sets: Mapping[str, manifest_lib.Manifest]

  @property
  def spec(self):
    return self.primary.spec

  @property
  def directories(self) -> List[str]:
    """Every dataset directory the run reads, data_dir first, each once."""
    dirs = [self.primary.directory] + [m.directory for m, _ in self.train_sources] + [
        m.directory for m in self.eval_sets.values()]
    return list(dict.fromkeys(dirs))


def open_data(cfg: config_lib.ExperimentConfig, create_default: bool = False) -> Data:
  """Reads every manifest the run uses and checks they fit together.

  Raises:
    input_fns.errors.UserInputError: a missing/malformed dataset, a reserved or repeated eval
      set name, or datasets whose feature spec differs from data_dir's.
  """
  primary = load_dataset(cfg.data.data_dir, create_default=create_default)
  sources = ()
  if cfg.data.train_data:
    sources = mixture.read_sources(mixture.parse_sources(cfg.data.train_data, "--train_data"))
    for m, _ in sources:
      if m.spec != primary.spec:
        raise config_lib.ConfigError(f"--train_data {m.directory} has a different feature spec "
                                     f"from --data_dir {primary.directory}: "
                                     f"{fs.describe_difference(primary.spec, m.spec)}")
  eval_sets = {}
  named = mixture.parse_eval_sets(cfg.data.eval_sets, "--eval_sets") if cfg.data.eval_sets else ()
  for name, m in mixture.read_eval_sets(named):
    if name in (PRIMARY_EVAL, QUICK_EVAL) or name in eval_sets:
      raise config_lib.ConfigError(f"--eval_sets: name {name!r} is reserved or given twice")
    if m.spec != primary.spec:
      raise config_lib.ConfigError(
          f"eval set {name!r} at {m.directory} has a different feature spec from {primary.directory}"
          f": {fs.describe_difference(primary.spec, m.spec)}")
    m.shards(splits.EVAL)
    eval_sets[name] = m
  return Data(primary, tuple(sources), eval_sets)


VERIFIED_SHARDS = "verified_shards.json"  # in model_dir: shards whose sha256 already passed


def _input_config(cfg: config_lib.ExperimentConfig, training: bool, num_workers: int = 1,
                  worker_index: int = 0) -> input_fn_lib.InputConfig:
  return input_fn_lib.InputConfig(
      num_workers=num_workers, worker_index=worker_index,
      batch_size=cfg.data.batch_size if training else cfg.data.eval_batch_size,
      preprocessing=cfg.data.preprocessing,
      shuffle_buffer=cfg.data.shuffle_buffer,
      seed=cfg.run.seed if training else None,
      cache=cfg.data.cache and training,
      verify=cfg.data.verify,
      # Without it every start (and every periodic evaluation) would re-hash every shard.
      verify_cache=os.path.join(cfg.run.model_dir, VERIFIED_SHARDS) if cfg.data.verify else None)


def train_input_fn(cfg: config_lib.ExperimentConfig, data: Data, num_workers: int = 1,
                   worker_index: int = 0, stacked: bool = True):
  """Training batches (a weighted mixture with --train_data); a parameter-server worker reads
  its own part (num_workers, worker_index). With --steps_per_run K and `stacked`, K stacked
  batches per element (what the K-step train op takes); without, one batch per element."""
  input_cfg = _input_config(cfg, True, num_workers, worker_index)
  if data.train_sources:
    input_fn = input_fn_lib.make_mixture_input_fn(data.train_sources, splits.TRAIN, input_cfg)
  else:
    input_fn = input_fn_lib.make_input_fn(data.primary, splits.TRAIN, input_cfg, training=True)
  return model_fn_lib.stacked_input_fn(input_fn, cfg.optimization.steps_per_run if stacked else 1)


def eval_input_fn(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest,
                  split: str = splits.EVAL, ordered: bool = False):
  """Every example of a split once; `ordered` reads the shards one after another, in order."""
  input_cfg = _input_config(cfg, False)
  if ordered:
    input_cfg = dataclasses.replace(input_cfg, cycle_length=1)
  return input_fn_lib.make_input_fn(m, split, input_cfg, training=False)


def build_model_fn(cfg: config_lib.ExperimentConfig, spec, optimization=None):
  return model_fn_lib.build_model_fn(cfg.model_def, cfg.hparams, spec,
                                     optimization or cfg.train_config)


def resolve_for_data(cfg: config_lib.ExperimentConfig,
                     spec: fs.FeatureSpec) -> config_lib.ExperimentConfig:
  """`cfg` with what depends on the dataset's label kind resolved (before it is saved).

  * best_metric "" -> the head's headline metric and its direction (accuracy, auc, or
    average_loss lower-is-better for regression).
  * label smoothing is a classification setting: for a regression label it becomes 0 (the
    default recipe's 0.1 quietly, a value the user chose with a warning).
  """
  head = head_lib.make_head(spec.label_kind, spec.label_names)
  run = cfg.run
  if not run.best_metric:
    run = dataclasses.replace(run, best_metric=head.headline_metric,
                              best_metric_higher_is_better=head.higher_is_better)
  optimization = cfg.optimization
  if spec.label_kind == fs.REGRESSION and optimization.label_smoothing:
    if optimization.label_smoothing != config_lib.DEFAULT_OPTIMIZATION.label_smoothing:
      logging.warning("--label_smoothing=%g does not apply to a regression label; training "
                      "without it", optimization.label_smoothing)
    optimization = dataclasses.replace(optimization, label_smoothing=0.0)
  if run is cfg.run and optimization is cfg.optimization:
    return cfg
  return dataclasses.replace(cfg, run=run, optimization=optimization)


def build_estimator(cfg: config_lib.ExperimentConfig, spec,
                    warm_start: Optional[tf.estimator.WarmStartSettings] = None,
                    task: Optional[distribution.ClusterTask] = None,
                    strategies=None) -> tf.estimator.Estimator:
  """The Estimator for `cfg`'s model on data described by `spec`.

  With `strategies` (distribution.make_strategies) it is the training Estimator of this task:
  the strategy, device filters, XLA and the (optionally replica-scaled) learning rate. Without,
  it runs on one device (evaluation, prediction, export).
  """
  optimization = cfg.train_config
  if strategies is None:
    kwargs = dict(session_config=distribution.session_config(cfg.distribution, None,
                                                             training=False))
  else:
    kwargs = distribution.run_config_kwargs(cfg.distribution, task, strategies)
    lr = distribution.learning_rate(optimization.learning_rate, cfg.distribution, strategies[0])
    if lr != optimization.learning_rate:
      logging.info("--scale_learning_rate: learning rate %g x %d replicas = %g",
                   optimization.learning_rate, distribution.num_replicas(strategies[0]), lr)
      optimization = dataclasses.replace(optimization, learning_rate=lr)
  run_config = tf.estimator.RunConfig(
      model_dir=cfg.run.model_dir,
      tf_random_seed=cfg.run.seed,
      save_checkpoints_steps=cfg.cadence.checkpoint_steps,
      # With several steps per run train_hooks adds a summary hook that counts them instead.
      save_summary_steps=cfg.cadence.summary_steps if cfg.optimization.steps_per_run == 1 else 0,
      keep_checkpoint_max=cfg.run.keep_checkpoint_max,
      # StepLoggingHook logs loss, learning rate, examples/s and step time instead.
      log_step_count_steps=None,
      **kwargs)
  estimator = tf.estimator.Estimator(build_model_fn(cfg, spec, optimization), config=run_config,
                                     warm_start_from=warm_start)
  reused_eval.enable(estimator)  # each checkpoint's evaluation skips the graph set-up
  return estimator


def prepare_warm_start(cfg: config_lib.ExperimentConfig, spec, train_in,
                       save_report: bool = True) -> Optional[tf.estimator.WarmStartSettings]:
  """Plans the warm start, prints and (the chief) saves its report (loaded/missing/mismatched
  variables). `train_in` yields one batch per element (train_input_fn(stacked=False)): the
  plan builds the one-step model, whatever --steps_per_run is."""
  if not cfg.run.warm_start_from:
    return None
  variables = warm_start_lib.model_variables(build_model_fn(cfg, spec), train_in)
  return warm_start_lib.prepare_warm_start(
      cfg.run.warm_start_from, cfg.run.model_dir, variables, cfg.run.warm_start_vars,
      warm_start_lib.parse_name_map(cfg.run.warm_start_map), print_fn=logging.info,
      save_report=save_report)


def check_trained_spec(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest) -> None:
  """Refuses a dataset whose feature spec differs from the one the run trained on (the
  model's graph would not build on its features).

  Raises:
    input_fns.errors.UserInputError: naming both directories and how the specs differ
      (trained -> given).
  """
  if not tf.io.gfile.exists(os.path.join(cfg.data.data_dir, manifest_lib.FILENAME)):
    return  # the training data is gone (another machine): nothing to compare with
  trained = manifest_lib.read(cfg.data.data_dir).spec
  if trained != m.spec:
    raise config_lib.ConfigError(
        f"{m.directory} has a different feature spec from {cfg.data.data_dir}, the data "
        f"this model was trained on: {fs.describe_difference(trained, m.spec)}")


def evaluate(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest, split: str,
             checkpoint_path: str, name: Optional[str] = None,
             summary_dir: Optional[str] = None) -> Dict[str, object]:
  """Full evaluation of one checkpoint on one split; returns every metric (non-scalar too).

  Its TensorBoard summaries go to `summary_dir`/eval when given (e.g. beside the evaluation
  report, so they do not show up as one more run of the training), else to the run's
  model_dir/eval[_<name>].
  """
  if summary_dir:
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, model_dir=summary_dir))
  estimator = build_estimator(cfg, m.spec)
  return estimator.evaluate(eval_input_fn(cfg, m, split), checkpoint_path=checkpoint_path,
                            name=name)
