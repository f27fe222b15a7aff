"""The one shared run loop: any model_fn, any dataset, through tf.estimator.train_and_evaluate.

`train(cfg)` is what `//scripts:train` runs: it checks the data and the model_dir, saves the
resolved config and a run record, builds the Estimator with step-based cadence (a full
evaluation of every new checkpoint, quick validations in between, extra eval sets side by side),
trains to `cfg.run.train_steps` (resuming from the latest checkpoint), and returns the final
evaluation.
"""

import dataclasses
import datetime
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from estimator_app import config as config_lib
from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention as checkpoints
from estimator_app.checkpoints import warm_start as warm_start_lib
from estimator_app.serving import export
from estimator_app.training import distribution
from estimator_app.training import early_stopping
from estimator_app.training import hooks as hooks_lib
from estimator_app.training import input_diagnosis as diagnose
from estimator_app.training import preemption
from estimator_app.training import run_record
from input_fns import digits
from input_fns import input_fn as dataset
from input_fns import manifest as manifest_lib
from input_fns import mixture
from input_fns import splits
from input_fns import writer
from model_fns import model_fn as model_fn_lib

PRIMARY_EVAL = "eval"  # the primary eval set's TensorBoard run is model_dir/eval
QUICK_EVAL = "quick"  # model_dir/eval_quick


def load_dataset(data_dir: str, create_default: bool, seed: int = 0) -> manifest_lib.Manifest:
  """Returns the dataset at `data_dir`.

  Args:
    data_dir: a dataset directory.
    create_default: write the embedded digits dataset there if it holds no manifest yet.
    seed: split seed for the embedded dataset.

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
                                     f"from --data_dir {primary.directory}")
  eval_sets = {}
  named = mixture.parse_eval_sets(cfg.data.eval_sets, "--eval_sets") if cfg.data.eval_sets else ()
  for name, m in mixture.read_eval_sets(named):
    if name in (PRIMARY_EVAL, QUICK_EVAL) or name in eval_sets:
      raise config_lib.ConfigError(f"--eval_sets: name {name!r} is reserved or given twice")
    if m.spec != primary.spec:
      raise config_lib.ConfigError(
          f"eval set {name!r} at {m.directory} has a different feature spec from {primary.directory}")
    m.shards(splits.EVAL)
    eval_sets[name] = m
  return Data(primary, tuple(sources), eval_sets)


VERIFIED_SHARDS = "verified_shards.json"  # in model_dir: shards whose sha256 already passed


def _input_config(cfg: config_lib.ExperimentConfig, training: bool, num_workers: int = 1,
                  worker_index: int = 0) -> dataset.InputConfig:
  return dataset.InputConfig(
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
    input_fn = dataset.make_mixture_input_fn(data.train_sources, splits.TRAIN, input_cfg)
  else:
    input_fn = dataset.make_input_fn(data.primary, splits.TRAIN, input_cfg, training=True)
  return model_fn_lib.stacked_input_fn(input_fn, cfg.optimization.steps_per_run if stacked else 1)


def eval_input_fn(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest,
                  split: str = splits.EVAL, ordered: bool = False):
  """Every example of a split once; `ordered` reads the shards one after another, in order."""
  input_cfg = _input_config(cfg, False)
  if ordered:
    input_cfg = dataclasses.replace(input_cfg, cycle_length=1)
  return dataset.make_input_fn(m, split, input_cfg, training=False)


def build_model_fn(cfg: config_lib.ExperimentConfig, spec, optimization=None):
  return model_fn_lib.build_model_fn(cfg.model_def, cfg.hparams, spec,
                                     optimization or cfg.train_config)


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
  return tf.estimator.Estimator(build_model_fn(cfg, spec, optimization), config=run_config,
                                warm_start_from=warm_start)


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


def _stopped_early_before(cfg: config_lib.ExperimentConfig,
                          estimator: tf.estimator.Estimator) -> bool:
  """Whether model_dir's eval history already says stop (a rerun of an early-stopped run).

  Without this check a rerun would train on until its next evaluation before the hook saw
  the same history and stopped again, moving the latest checkpoint past the stopping point.
  """
  if not cfg.run.early_stopping_metric or tf.train.latest_checkpoint(cfg.run.model_dir) is None:
    return False
  stop = early_stopping.NoImprovement(
      estimator.eval_dir(), cfg.run.early_stopping_metric, cfg.run.early_stopping_higher_is_better,
      cfg.cadence.patience_steps)
  if not stop():
    return False
  logging.info("%s stopped early before (see the log line above); not training further. "
               "Use --fresh to start over, or another --early_stopping_patience_steps",
               cfg.run.model_dir)
  return True


def train_hooks(cfg: config_lib.ExperimentConfig, estimator: tf.estimator.Estimator,
                primary_eval, task: Optional[distribution.ClusterTask] = None,
                clock: Optional[hooks_lib.TrainingClock] = None
                ) -> List[tf.estimator.SessionRunHook]:
  """Hooks around every training step: logging, preemption, NaN guard, quick eval, profiling,
  early stopping. `clock` times the logged throughput (paused by evaluations)."""
  # Not estimator.config.is_chief: under multi_worker_mirrored every task's RunConfig says
  # chief until the distribute coordinator copies it.
  is_chief = distribution.writes_outputs(task)
  cadence = cfg.cadence  # every cadence a multiple of steps_per_run (config check)
  steps_per_run = cadence.steps_per_run
  clock = clock or hooks_lib.TrainingClock()
  # Step logging first: its before_run resumes the clock before the other hooks' work.
  hooks = [hooks_lib.StepLoggingHook(cadence.log_every_steps, batch_size=cfg.data.batch_size,
                                     output_dir=cfg.run.model_dir if is_chief else None,
                                     steps_per_run=steps_per_run, clock=clock),
           preemption.PreemptionHook(cfg.run.model_dir, is_chief=is_chief),
           hooks_lib.NanGuardHook(cfg.run.model_dir, manage_checkpoints=is_chief)]
  if steps_per_run > 1:
    hooks.append(hooks_lib.StopAtStepHook(cadence.train_steps))
    if is_chief:
      hooks.append(hooks_lib.MultiStepSummarySaverHook(steps_per_run, cadence.summary_steps,
                                                       cfg.run.model_dir))
  if cadence.quick_eval_steps > 0 and distribution.can_quick_eval(task):
    quick_batches = max(1, math.ceil(cfg.run.quick_eval_examples / cfg.data.eval_batch_size))
    hooks.append(hooks_lib.QuickEvalHook(
        clock, estimator, primary_eval, steps=quick_batches, name=QUICK_EVAL,
        every_n_iter=cadence.quick_eval_steps // steps_per_run))  # it counts session.runs
  if cadence.profile and is_chief:
    hooks.append(hooks_lib.ProfileStepsHook(cfg.run.model_dir, *cadence.profile))
  if cfg.run.early_stopping_metric:
    hooks.append(early_stopping.early_stopping_hook(
        estimator, cfg.run.early_stopping_metric, cfg.run.early_stopping_higher_is_better,
        cadence.patience_steps))
  return hooks


EXPORT_DIR = "export"  # model_dir/export/{latest,best,final}/<version>: TF Serving model bases
FINAL_EXPORT = "final"


def serving_exporters(cfg: config_lib.ExperimentConfig, data: Data
                      ) -> Tuple[List[tf.estimator.Exporter], Optional[tf.estimator.Exporter]]:
  """(latest and best exporters for the EvalSpec, the final exporter), or ([], None).

  The final export is made by `train` itself after training rather than by the EvalSpec, so a
  run that stops early or resumes at train_steps still ends with one.
  """
  if not cfg.run.export:
    return [], None
  model = export.ServingModel(cfg.model_def, cfg.hparams, data.spec, cfg.data.preprocessing,
                              cfg.optimization)
  examples = export.read_examples(data.primary, splits.EVAL, 32)
  options = export.ExportOptions(model_name=os.path.basename(cfg.data.data_dir.rstrip("/")))
  keep = cfg.run.exports_to_keep
  periodic = export.make_exporters(model, examples, export.ExportersConfig(
      keep_latest=keep, keep_best=keep, keep_final=0, best_metric=cfg.run.best_metric,
      higher_is_better=cfg.run.best_metric_higher_is_better, options=options))
  return periodic, export.FinalExporter(model, examples, options, keep=keep, name=FINAL_EXPORT)


def _final_export(estimator: tf.estimator.Estimator, exporter: tf.estimator.Exporter,
                  eval_result: Mapping[str, object]) -> str:
  """Exports the latest checkpoint as the final export, unless the newest final export is it."""
  checkpoint = tf.train.latest_checkpoint(estimator.model_dir)
  base = os.path.join(estimator.model_dir, EXPORT_DIR, exporter.name)
  versions = export.list_versions(base) if tf.io.gfile.exists(base) else []
  if versions:
    newest = os.path.join(base, str(versions[-1]))
    meta = export.read_metadata(newest) or {}
    if os.path.basename(str(meta.get("checkpoint", ""))) == os.path.basename(checkpoint):
      return newest
  return exporter.export(estimator, base, checkpoint, eval_result, is_the_final_export=True)


class _EvalSetsExporter(tf.estimator.Exporter):
  """Evaluates the extra named eval sets on the checkpoint the primary set just evaluated.

  train_and_evaluate calls exporters after every evaluation (also on a distributed evaluator),
  which is exactly the cadence extra eval sets need; each set gets its own TensorBoard run
  (model_dir/eval_<name>).
  """

  def __init__(self, input_fns: Mapping[str, object]):
    self._input_fns = dict(input_fns)
    self.last_results: Dict[str, Dict[str, float]] = {}

  @property
  def name(self):
    return "eval_sets"

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    del export_path, eval_result, is_the_final_export
    for name, input_fn in self._input_fns.items():
      result = estimator.evaluate(input_fn, checkpoint_path=checkpoint_path, name=name)
      self.last_results[name] = checkpoints.scalars(result)
      logging.info("eval set %s at %s: %s", name, os.path.basename(checkpoint_path),
                   _format_metrics(self.last_results[name]))
    return None


def _format_metrics(m: Mapping[str, float]) -> str:
  keys = [k for k in ("accuracy", "loss", "global_step") if k in m]
  return ", ".join(f"{k}={m[k]:.4g}" for k in keys)


def prepare_model_dir(cfg: config_lib.ExperimentConfig, fresh: bool) -> Optional[str]:
  """Checks that model_dir can take this run; with `fresh`, moves an old run aside.

  Returns:
    Where an old run was moved to (with `fresh`), else None.

  Raises:
    config_lib.ConfigError: model_dir is a file, or holds another architecture's run.
  """
  model_dir = cfg.run.model_dir
  if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
    raise config_lib.ConfigError(f"--model_dir {model_dir} is a file, expected a directory")
  if not tf.io.gfile.exists(model_dir) or not tf.io.gfile.listdir(model_dir):
    return None
  if fresh:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = f"{model_dir.rstrip('/')}.old-{stamp}"
    tf.io.gfile.rename(model_dir, aside)
    logging.warning("--fresh: moved the previous run in %s to %s", model_dir, aside)
    return aside
  saved = config_lib.load_saved(model_dir)
  if saved is not None:
    config_lib.check_resumable(saved, cfg)
  elif tf.train.latest_checkpoint(model_dir):
    raise config_lib.ConfigError(
        f"--model_dir {model_dir} holds checkpoints but no {config_lib.CONFIG_FILENAME}: it was "
        f"not made by this pipeline; use another --model_dir or --fresh")
  return None


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What a finished run reports.

  Attributes:
    global_step: the final global step.
    metrics: eval set name ("eval" is the primary) -> final scalar metrics.
    model_dir: where checkpoints and TensorBoard logs are.
    exports: exporter name -> directory of its newest SavedModel version.
  """
  global_step: int
  metrics: Mapping[str, Mapping[str, float]]
  model_dir: str
  exports: Mapping[str, str]


def _seed_everything(cfg: config_lib.ExperimentConfig) -> None:
  """Seeds Python, NumPy and TF; with `deterministic`, also makes TF ops deterministic.

  RunConfig.tf_random_seed alone is not enough: unseeded Keras initializers draw their seeds
  from Python's `random` module.
  """
  tf.keras.utils.set_random_seed(cfg.run.seed)
  if cfg.run.deterministic:
    tf.config.experimental.enable_op_determinism()


def train(cfg: config_lib.ExperimentConfig, fresh: bool = False, create_default_data: bool = False,
          argv: Optional[Sequence[str]] = None) -> RunResult:
  """Trains and evaluates `cfg`; resumes from model_dir's latest checkpoint if there is one.

  Args:
    cfg: the resolved experiment config (paths absolute).
    fresh: move an existing run in model_dir aside instead of resuming it.
    create_default_data: write the embedded digits dataset to data_dir if it has none.
    argv: the full command line (sys.argv: program and flags), recorded in the run record.

  Returns:
    The final evaluation of every eval set.

  Raises:
    input_fns.errors.UserInputError: bad data, config or model_dir (nothing in model_dir is changed).
  """
  task = distribution.current_task()  # TF_CONFIG is validated before anything starts
  distribution.configure_gpus(cfg.distribution)  # before anything initialises the devices
  strategies = distribution.make_strategies(cfg.distribution, task)
  distribution.check_batch_size(cfg.data.batch_size, strategies[0])
  if task is not None and task.is_ps:
    distribution.serve_parameter_server(cfg.distribution, task)  # until the job is stopped
  chief = distribution.writes_outputs(task)
  if create_default_data and not chief:
    distribution.wait_for_path(os.path.join(cfg.data.data_dir, manifest_lib.FILENAME),
                               cfg.distribution.session_timeout_secs,
                               "the dataset the chief writes,")
  data = open_data(cfg, create_default=create_default_data and chief)
  if chief:
    prepare_model_dir(cfg, fresh)
  _seed_everything(cfg)
  logging.info(config_lib.cadence_summary(cfg))
  for warning in config_lib.warnings(cfg):
    logging.warning(warning)
  if chief:
    config_lib.save(cfg)
    run_record.append(cfg.run.model_dir, run_record.make(
        cfg.run.seed, cfg.run.deterministic, data.directories, argv,
        config=cfg.to_json_dict(), resolved=dataclasses.asdict(cfg.cadence)))

  input_part = distribution.per_worker_input(task, strategies[0])
  train_in = train_input_fn(cfg, data, *input_part)
  warm_start = prepare_warm_start(cfg, data.spec, train_input_fn(cfg, data, *input_part,
                                                                 stacked=False), chief)
  estimator = build_estimator(cfg, data.spec, warm_start, task=task, strategies=strategies)
  primary_eval = eval_input_fn(cfg, data.primary)
  extra = _EvalSetsExporter({name: eval_input_fn(cfg, m) for name, m in data.eval_sets.items()})
  # The chief and the evaluator both evaluate the final checkpoint into the same directories.
  distribution.own_event_files(task, [estimator.eval_dir()] +
                               [estimator.eval_dir(name) for name in data.eval_sets])
  exporters = [extra] if data.eval_sets else []
  if cfg.run.keep_best > 0:
    exporters.append(checkpoints.BestCheckpointExporter(
        cfg.run.best_metric, cfg.run.best_metric_higher_is_better, keep=cfg.run.keep_best))
  periodic_exports, final_exporter = serving_exporters(cfg, data) if chief else ([], None)
  if task is None:  # in a cluster only the chief exports, at the end (below)
    exporters.extend(periodic_exports)
  eval_spec = tf.estimator.EvalSpec(primary_eval, steps=None, name=None, exporters=exporters,
                                    **distribution.eval_spec_timing(task))
  if task is None and _stopped_early_before(cfg, estimator):
    outcome = (None, None)  # as a run resumed at train_steps: evaluate and export below
  elif task is not None and task.is_evaluator:
    # Not train_and_evaluate's own evaluator loop: that one ends the process when the chief's
    # keep_checkpoint_max retention deletes the checkpoint it is about to restore.
    checkpoints.evaluate_new_checkpoints(estimator, eval_spec, cfg.run.train_steps)
    outcome = None
  else:
    clock = hooks_lib.TrainingClock()  # logged throughput leaves out evaluations and exports
    outcome = tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(train_in, max_steps=cfg.run.train_steps,
                               hooks=train_hooks(cfg, estimator, primary_eval, task, clock),
                               saving_listeners=[hooks_lib.PauseClockListener(clock)]),
        eval_spec)
  if task is not None:  # a cluster: nothing to return on any task but the chief
    if not task.is_chief:
      latest = tf.train.latest_checkpoint(cfg.run.model_dir)
      return RunResult(global_step=checkpoint_info.checkpoint_step(latest) if latest else 0,
                       metrics={}, model_dir=cfg.run.model_dir, exports={})
    # The chief evaluates the final checkpoint itself (the evaluator may be missing or still
    # busy) and is the one task that runs the SavedModel exporters.
    eval_result, _ = distribution.final_evaluate_and_export(estimator, primary_eval, [])
    for name, input_fn in extra._input_fns.items():  # pylint: disable=protected-access
      extra.last_results[name] = checkpoints.scalars(estimator.evaluate(input_fn, name=name))
  else:
    eval_result = outcome[0]
  if eval_result is None:  # resumed at or past train_steps: nothing new was evaluated
    eval_result = estimator.evaluate(primary_eval)
    for name, input_fn in extra._input_fns.items():  # pylint: disable=protected-access
      extra.last_results[name] = checkpoints.scalars(estimator.evaluate(input_fn, name=name))
  exports = {}
  if final_exporter is not None:
    exports[FINAL_EXPORT] = _final_export(estimator, final_exporter, eval_result)
  metrics = {PRIMARY_EVAL: checkpoints.scalars(eval_result), **extra.last_results}
  return RunResult(global_step=int(metrics[PRIMARY_EVAL]["global_step"]), metrics=metrics,
                   model_dir=cfg.run.model_dir, exports=exports)


def check_trained_spec(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest) -> None:
  """Refuses a dataset whose feature spec differs from the one the run trained on (the
  model's graph would not build on its features).

  Raises:
    input_fns.errors.UserInputError: naming both directories.
  """
  if not tf.io.gfile.exists(os.path.join(cfg.data.data_dir, manifest_lib.FILENAME)):
    return  # the training data is gone (another machine): nothing to compare with
  if manifest_lib.read(cfg.data.data_dir).spec != m.spec:
    raise config_lib.ConfigError(
        f"{m.directory} has a different feature spec from {cfg.data.data_dir}, the data "
        f"this model was trained on")


def diagnose_input(cfg: config_lib.ExperimentConfig, create_default_data: bool = False,
                   seconds: float = 5.0) -> diagnose.Diagnosis:
  """Is this run input-bound? Measures the training input_fn against the model's consumption
  (estimator_app/training/input_diagnosis.py), logs the verdict and the knob to turn."""
  data = open_data(cfg, create_default=create_default_data)
  return diagnose.diagnose_input(train_input_fn(cfg, data), build_model_fn(cfg, data.spec),
                                 seconds=seconds,
                                 log_dir=os.path.join(cfg.run.model_dir, "diagnose_input"))


def evaluate(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest, split: str,
             checkpoint_path: str, name: Optional[str] = None) -> Dict[str, object]:
  """Full evaluation of one checkpoint on one split; returns every metric (non-scalar too)."""
  estimator = build_estimator(cfg, m.spec)
  return estimator.evaluate(eval_input_fn(cfg, m, split), checkpoint_path=checkpoint_path,
                            name=name)
