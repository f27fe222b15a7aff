"""The one shared run loop: any model_fn, any dataset, through tf.estimator.train_and_evaluate.

`train(cfg)` is what `//scripts:train` runs: it checks the data and the model_dir, saves the
resolved config and a run record, builds the Estimator (estimator_app/estimator.py) with
step-based cadence (a full evaluation of every new checkpoint, quick validations in between,
extra eval sets side by side), then runs this task's role (local, chief, worker, ps or
evaluator) to `cfg.run.train_steps`, resuming from the latest checkpoint, and returns the final
evaluation.
"""

import concurrent.futures
import dataclasses
import datetime
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from estimator_app.analysis import tensorboard_logs
from estimator_app.checkpoints import info as checkpoint_info
from estimator_app.checkpoints import retention
from estimator_app.serving import export
from estimator_app.serving import validation as serving_validation
from estimator_app.training import distribution
from estimator_app.training import early_stopping
from estimator_app.training import hooks as hooks_lib
from estimator_app.training import reused_eval
from estimator_app.training import input_diagnosis
from estimator_app.training import preemption
from estimator_app.training import run_record
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import splits
from model_fns import metrics as metrics_lib

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
                clock: Optional[hooks_lib.TrainingClock] = None,
                evals: Optional["EvalLog"] = None, quick_examples: Optional[int] = None
                ) -> List[tf.estimator.SessionRunHook]:
  """Hooks around every training step: progress, preemption, NaN guard, quick eval, profiling,
  early stopping. `clock` times the logged throughput (paused by evaluations); `evals` adds
  the best evaluation so far to the progress lines; `quick_examples` is what a quick
  evaluation reads (for its log line)."""
  # Not estimator.config.is_chief: under multi_worker_mirrored every task's RunConfig says
  # chief until the distribute coordinator copies it.
  is_chief = distribution.writes_outputs(task)
  cadence = cfg.cadence  # every cadence a multiple of steps_per_run (config check)
  steps_per_run = cadence.steps_per_run
  clock = clock or hooks_lib.TrainingClock()
  # Step logging first: its before_run resumes the clock before the other hooks' work.
  hooks = [hooks_lib.StepLoggingHook(cadence.log_every_steps, batch_size=cfg.data.batch_size,
                                     output_dir=cfg.run.model_dir if is_chief else None,
                                     steps_per_run=steps_per_run, clock=clock,
                                     total_steps=cadence.train_steps,
                                     best=evals.describe_best if evals else None),
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
        clock, estimator, primary_eval, steps=quick_batches, name=estimator_lib.QUICK_EVAL,
        every_n_steps=cadence.quick_eval_steps, steps_per_run=steps_per_run,
        skip_multiples_of=cadence.checkpoint_steps, total_steps=cadence.train_steps,
        examples=quick_examples))
  if cadence.profile and is_chief:
    hooks.append(hooks_lib.ProfileStepsHook(cfg.run.model_dir, *cadence.profile))
  if cfg.run.early_stopping_metric:
    hooks.append(early_stopping.early_stopping_hook(
        estimator, cfg.run.early_stopping_metric, cfg.run.early_stopping_higher_is_better,
        cadence.patience_steps))
  return hooks


EXPORT_DIR = "export"  # model_dir/export/{latest,best,final}/<version>: TF Serving model bases
FINAL_EXPORT = "final"


def serving_exporters(cfg: config_lib.ExperimentConfig, data: estimator_lib.Data
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
  if options.validate_examples:
    serving_validation.prestart()  # its TensorFlow import overlaps training, not the 1st export
  keep = cfg.run.exports_to_keep
  periodic = export.make_exporters(model, examples, export.ExportersConfig(
      keep_latest=keep, keep_best=keep, keep_final=0, best_metric=cfg.run.best_metric,
      higher_is_better=cfg.run.best_metric_higher_is_better, options=options))
  return periodic, export.FinalExporter(model, examples, options, keep=keep, name=FINAL_EXPORT)


class OverlappedExports:
  """Runs the periodic serving exporters beside training, one checkpoint at a time.

  Each export (SavedModel, warm-up, validation in the serving process, then the atomic rename
  that makes the version visible) runs on one background thread, so training goes on while a
  checkpoint is exported: same guarantees (a version appears only once validated), less wall
  time (on the main job the exports were a quarter of it). At most one checkpoint is in flight:
  the exports of the next evaluation first wait for the previous ones, and so does the final
  export. Its checkpoint therefore outlives it whenever the run keeps 2 or more checkpoints
  (train only wraps the exporters then); an export that fails raises its error at that wait.
  """

  def __init__(self):
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                       thread_name_prefix="export")
    self._pending: List[Tuple[str, concurrent.futures.Future]] = []

  def wrap(self, exporter: tf.estimator.Exporter) -> tf.estimator.Exporter:
    return _Overlapped(self, exporter)

  def submit(self, checkpoint_path: str, fn: Callable[[], Any]) -> None:
    self.wait(unless=checkpoint_path)
    self._pending.append((checkpoint_path, self._pool.submit(fn)))

  def wait(self, unless: Optional[str] = None) -> None:
    """Waits for the pending exports (of checkpoints other than `unless`); raises their error."""
    while self._pending and self._pending[0][0] != unless:
      _, future = self._pending.pop(0)
      future.result()
    if unless is None:
      return
    self._pending = [(c, f) for c, f in self._pending if c == unless]


class _Overlapped(tf.estimator.Exporter):
  """An EvalSpec exporter whose exports OverlappedExports runs beside training."""

  def __init__(self, runner: OverlappedExports, inner: tf.estimator.Exporter):
    self._runner = runner
    self._inner = inner

  @property
  def name(self):
    return self._inner.name

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    self._runner.submit(checkpoint_path, lambda: self._inner.export(
        estimator, export_path, checkpoint_path, eval_result, is_the_final_export))
    return None


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


class EvalSets(tf.estimator.Exporter):
  """The extra named eval sets (--eval_sets), evaluated together on one checkpoint.

  As an EvalSpec exporter it evaluates them on the checkpoint the primary set just evaluated:
  train_and_evaluate calls exporters after every evaluation (also on a distributed evaluator),
  which is exactly the cadence extra eval sets need. `evaluate` is the same evaluation for the
  end of a run. Each set gets its own TensorBoard run (model_dir/eval_<name>).
  """

  def __init__(self, input_fns: Mapping[str, Callable], total_steps: Optional[int] = None,
               examples: Optional[Mapping[str, int]] = None,
               clock: Optional[hooks_lib.TrainingClock] = None):
    self._input_fns = dict(input_fns)
    self._total = total_steps
    self._examples = dict(examples or {})
    self._clock = clock
    self.last_results: Dict[str, Dict[str, float]] = {}

  @property
  def name(self):
    return "eval_sets"

  @property
  def names(self) -> List[str]:
    return list(self._input_fns)

  def evaluate(self, estimator: tf.estimator.Estimator,
               checkpoint_path: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """Evaluates every set on `checkpoint_path` (default: the latest); returns their scalars."""
    for name, input_fn in self._input_fns.items():
      if self._clock is not None:
        self._clock.pause(hooks_lib.EVALS)
      result = estimator.evaluate(input_fn, checkpoint_path=checkpoint_path, name=name)
      self.last_results[name] = retention.scalars(result)
      logging.info(hooks_lib.format_eval(f"set {name}", int(result["global_step"]), self._total,
                                         self._examples.get(name), self.last_results[name]))
    return dict(self.last_results)

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    del export_path, eval_result, is_the_final_export
    self.evaluate(estimator, checkpoint_path)
    return None


class EvalLog(tf.estimator.Exporter):
  """One line per full evaluation, and the best one so far (for the progress lines).

  The first EvalSpec exporter: train_and_evaluate calls it right after each full evaluation,
  before the exporters, so the line (`eval 500/2000 full (359 ex): accuracy 0.9833 loss 0.17
  new best`) comes before the lines of the exports it triggers; from here on the clock
  charges the time to exports. A resumed run starts from the best value in the eval history.
  """

  def __init__(self, metric: str, higher_is_better: bool, total_steps: Optional[int],
               examples: Optional[int], clock: Optional[hooks_lib.TrainingClock] = None,
               history: Optional[Mapping[int, Mapping[str, float]]] = None):
    self._metric = metric
    self._higher = higher_is_better
    self._total = total_steps
    self._examples = examples
    self._clock = clock
    self.best: Optional[float] = None
    for metrics in (history or {}).values():
      if metric in metrics:
        self._is_new_best(float(metrics[metric]))

  @property
  def name(self):
    return "eval_log"

  def _is_new_best(self, value: float) -> bool:
    if self.best is not None and not (value > self.best if self._higher else value < self.best):
      return False
    self.best = value
    return True

  def describe_best(self) -> Optional[str]:
    return None if self.best is None else f"best {self._metric} {self.best:.4g}"

  def log(self, eval_result: Mapping[str, Any], kind: str = "full") -> None:
    metrics = retention.scalars(eval_result)
    new_best = self._metric in metrics and self._is_new_best(metrics[self._metric])
    logging.info(hooks_lib.format_eval(kind, int(metrics.get("global_step", 0)), self._total,
                                       self._examples, metrics, new_best))

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    del estimator, export_path, checkpoint_path, is_the_final_export
    self.log(eval_result)
    if self._clock is not None:
      self._clock.pause(hooks_lib.EXPORTS)
    return None


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
    seconds: where this process's time went: hooks_lib phases (setup, train, evals, exports)
      -> seconds, and "total".
  """
  global_step: int
  metrics: Mapping[str, Mapping[str, float]]
  model_dir: str
  exports: Mapping[str, str]
  seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)

  @property
  def primary(self) -> Optional[Mapping[str, float]]:
    """The primary eval set's final metrics (None on a worker or the evaluator)."""
    return self.metrics.get(estimator_lib.PRIMARY_EVAL)


def _seed_everything(cfg: config_lib.ExperimentConfig) -> None:
  """Seeds Python, NumPy and TF; with `deterministic`, also makes TF ops deterministic.

  RunConfig.tf_random_seed alone is not enough: unseeded Keras initializers draw their seeds
  from Python's `random` module.
  """
  tf.keras.utils.set_random_seed(cfg.run.seed)
  if cfg.run.deterministic:
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass(frozen=True)
class _Task:
  """What one task of a run has built before it runs its role."""
  cfg: config_lib.ExperimentConfig
  task: Optional[distribution.ClusterTask]
  estimator: tf.estimator.Estimator
  train_input_fn: Callable
  primary_eval: Callable
  eval_sets: EvalSets
  eval_spec: tf.estimator.EvalSpec
  final_exporter: Optional[tf.estimator.Exporter]
  clock: hooks_lib.TrainingClock  # where the time goes; logged throughput counts training only
  overlapped: Optional[OverlappedExports]  # the periodic exports running beside training
  evals: EvalLog
  quick_examples: int
  images: Optional[tensorboard_logs.ConfusionMatrixImage]  # an eval_spec exporter (not for
  #   regression: no classes, no confusion matrix)

  def train_and_evaluate(self):
    """tf.estimator.train_and_evaluate with this task's hooks; its (eval result, exports)."""
    hooks = train_hooks(self.cfg, self.estimator, self.primary_eval, self.task, self.clock,
                        self.evals, self.quick_examples)
    latest = tf.train.latest_checkpoint(self.cfg.run.model_dir)
    if latest:
      logging.info("resuming from %s (step %s of %d)", latest, checkpoint_info.checkpoint_step(latest),
                   self.cfg.run.train_steps)
    return tf.estimator.train_and_evaluate(
        self.estimator,
        tf.estimator.TrainSpec(self.train_input_fn, max_steps=self.cfg.run.train_steps,
                               hooks=hooks,
                               saving_listeners=[hooks_lib.PauseClockListener(self.clock)]),
        self.eval_spec)

  def evaluate(self):
    """Evaluates the latest checkpoint on the primary and the extra eval sets (logged)."""
    self.clock.pause(hooks_lib.EVALS)
    eval_result = self.estimator.evaluate(self.primary_eval)
    self.evals.log(eval_result)
    self.eval_sets.evaluate(self.estimator)
    return eval_result

  def result(self, eval_result: Optional[Mapping[str, object]]) -> RunResult:
    """The run's result: with `eval_result` (the chief's or the local process's final
    evaluation) its metrics and the final export; without (a worker, the evaluator) the step."""
    model_dir = self.cfg.run.model_dir
    if self.images is not None:
      self.images.wait()  # drawn beside training: all in TensorBoard before the report
    if eval_result is None:
      latest = tf.train.latest_checkpoint(model_dir)
      return RunResult(global_step=checkpoint_info.checkpoint_step(latest) if latest else 0,
                       metrics={}, model_dir=model_dir, exports={}, seconds=self._seconds())
    exports = {}
    if self.overlapped is not None:
      self.clock.pause(hooks_lib.EXPORTS)
      self.overlapped.wait()  # in version order, and the final export may reuse the last one
    if self.final_exporter is not None:
      self.clock.pause(hooks_lib.EXPORTS)
      exports[FINAL_EXPORT] = _final_export(self.estimator, self.final_exporter, eval_result)
    metrics = {estimator_lib.PRIMARY_EVAL: retention.scalars(eval_result),
               **self.eval_sets.last_results}
    return RunResult(global_step=int(metrics[estimator_lib.PRIMARY_EVAL]["global_step"]),
                     metrics=metrics, model_dir=model_dir, exports=exports,
                     seconds=self._seconds())

  def _seconds(self) -> Dict[str, float]:
    return {**self.clock.breakdown(), "total": self.clock.elapsed()}


def _run_local(t: _Task) -> RunResult:
  """One process: train and evaluate; a rerun of a finished or early-stopped run evaluates
  the latest checkpoint again. Exports as it goes and at the end."""
  eval_result = None
  if not _stopped_early_before(t.cfg, t.estimator):
    eval_result, _ = t.train_and_evaluate()  # None when resumed at or past train_steps
  if eval_result is None:
    eval_result = t.evaluate()
  return t.result(eval_result)


def _run_chief(t: _Task) -> RunResult:
  """A cluster's chief: trains, then evaluates the final checkpoint itself (the evaluator may
  be missing or still busy) and is the one task that exports."""
  t.train_and_evaluate()  # None on a cluster's chief
  t.clock.pause(hooks_lib.EVALS)
  eval_result, _ = distribution.final_evaluate_and_export(t.estimator, t.primary_eval, [t.images])
  t.evals.log(eval_result)
  t.eval_sets.evaluate(t.estimator)
  return t.result(eval_result)


def _run_worker(t: _Task) -> RunResult:
  t.train_and_evaluate()
  return t.result(None)


def _run_evaluator(t: _Task) -> RunResult:
  # Not train_and_evaluate's own evaluator loop: that one ends the process when the chief's
  # keep_checkpoint_max retention deletes the checkpoint it is about to restore.
  retention.evaluate_new_checkpoints(t.estimator, t.eval_spec, t.cfg.run.train_steps)
  return t.result(None)


_ROLES = {distribution.LOCAL: _run_local, distribution.CHIEF: _run_chief,
          distribution.WORKER: _run_worker, distribution.EVALUATOR: _run_evaluator}


def train(cfg: config_lib.ExperimentConfig, fresh: bool = False, create_default_data: bool = False,
          argv: Optional[Sequence[str]] = None) -> RunResult:
  """Trains and evaluates `cfg`; resumes from model_dir's latest checkpoint if there is one.

  Args:
    cfg: the resolved experiment config (paths absolute).
    fresh: move an existing run in model_dir aside instead of resuming it.
    create_default_data: write the embedded digits dataset to data_dir if it has none.
    argv: the full command line (sys.argv: program and flags), recorded in the run record.

  Returns:
    The final evaluation of every eval set (on a worker or the evaluator: only the step).

  Raises:
    input_fns.errors.UserInputError: bad data, config or model_dir (nothing in model_dir is changed).
  """
  clock = hooks_lib.TrainingClock()  # set-up counts from here
  task = distribution.current_task()  # TF_CONFIG is validated before anything starts
  role = distribution.role(task)
  distribution.configure_gpus(cfg.distribution)  # before anything initialises the devices
  strategies = distribution.make_strategies(cfg.distribution, task)
  distribution.check_batch_size(cfg.data.batch_size, strategies[0])
  if role == distribution.PS:
    distribution.serve_parameter_server(cfg.distribution, task)  # never returns
  chief = role in (distribution.LOCAL, distribution.CHIEF)
  if create_default_data and not chief:
    distribution.wait_for_path(os.path.join(cfg.data.data_dir, manifest_lib.FILENAME),
                               cfg.distribution.session_timeout_secs,
                               "the dataset the chief writes,")
  data = estimator_lib.open_data(cfg, create_default=create_default_data and chief)
  cfg = estimator_lib.resolve_for_data(cfg, data.spec)
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
    # The HParams tab: this run's settings beside its final eval metrics (after --fresh moved
    # an old run aside, before the Estimator opens the same event file for its summaries).
    tensorboard_logs.write_hparams(
        cfg.run.model_dir, tensorboard_logs.flatten_hparams(cfg.to_json_dict()),
        tuple(dict.fromkeys((cfg.run.best_metric, metrics_lib.AVERAGE_LOSS))))

  input_part = distribution.per_worker_input(task, strategies[0])
  warm_start = estimator_lib.prepare_warm_start(
      cfg, data.spec, estimator_lib.train_input_fn(cfg, data, *input_part, stacked=False), chief)
  estimator = estimator_lib.build_estimator(cfg, data.spec, warm_start, task=task,
                                            strategies=strategies)
  primary_eval = estimator_lib.eval_input_fn(cfg, data.primary)
  eval_sets = EvalSets({name: estimator_lib.eval_input_fn(cfg, m)
                        for name, m in data.eval_sets.items()}, cfg.run.train_steps,
                       {name: m.count(splits.EVAL) for name, m in data.eval_sets.items()}, clock)
  eval_examples = data.primary.count(splits.EVAL)
  evals = EvalLog(cfg.run.best_metric, cfg.run.best_metric_higher_is_better, cfg.run.train_steps,
                  eval_examples, clock, early_stopping.read_eval_metrics(estimator.eval_dir()))
  quick_examples = min(eval_examples, max(1, math.ceil(
      cfg.run.quick_eval_examples / cfg.data.eval_batch_size)) * cfg.data.eval_batch_size)
  # The chief and the evaluator both evaluate the final checkpoint into the same directories.
  distribution.own_event_files(task, [estimator.eval_dir()] +
                               [estimator.eval_dir(name) for name in eval_sets.names])
  confusion_image = (tensorboard_logs.ConfusionMatrixImage(data.spec.label_names)
                     if data.spec.label_kind != fs.REGRESSION else None)
  exporters = ([evals] + ([confusion_image] if confusion_image else [])
               + ([eval_sets] if eval_sets.names else []))
  if cfg.run.keep_best > 0:
    exporters.append(retention.BestCheckpointExporter(
        cfg.run.best_metric, cfg.run.best_metric_higher_is_better, keep=cfg.run.keep_best))
  periodic_exports, final_exporter = serving_exporters(cfg, data) if chief else ([], None)
  overlapped = None
  if role == distribution.LOCAL:  # in a cluster only the chief exports, at the end
    if periodic_exports and cfg.run.keep_checkpoint_max >= 2:
      overlapped = OverlappedExports()
      periodic_exports = [overlapped.wrap(e) for e in periodic_exports]
    exporters.extend(periodic_exports)
  eval_spec = tf.estimator.EvalSpec(primary_eval, steps=None, name=None, exporters=exporters,
                                    **distribution.eval_spec_timing(task))
  try:
    return _ROLES[role](_Task(cfg, task, estimator, estimator_lib.train_input_fn(
        cfg, data, *input_part), primary_eval, eval_sets, eval_spec, final_exporter, clock,
        overlapped, evals, quick_examples, confusion_image))
  finally:
    reused_eval.close(estimator)


def diagnose_input(cfg: config_lib.ExperimentConfig, create_default_data: bool = False,
                   seconds: float = 5.0) -> input_diagnosis.Diagnosis:
  """Is this run input-bound? Measures the training input_fn against the model's consumption
  (estimator_app/training/input_diagnosis.py), logs the verdict and the knob to turn."""
  data = estimator_lib.open_data(cfg, create_default=create_default_data)
  return input_diagnosis.diagnose_input(estimator_lib.train_input_fn(cfg, data),
                                        estimator_lib.build_model_fn(cfg, data.spec),
                                        seconds=seconds,
                                        log_dir=os.path.join(cfg.run.model_dir, "diagnose_input"))
