"""The frozen experiment config: built once by a script, passed down, saved beside checkpoints.

Precedence, lowest first: dataclass defaults < `--config=FILE.json` < command-line flags the user
actually set < `--hparams=key=value,...`. A config file has the same sections as
`ExperimentConfig`:

    {"model": "lenet5",
     "hparams": {"filters": [16, 32]},           # the model's HParams fields
     "optimization": {"optimizer": "momentum"},  # model_fns.train_config.TrainConfig fields
     "data": {"batch_size": 128},                # DataConfig fields
     "run": {"train_steps": 5000},               # RunSettings fields
     "distribution": {"strategy": "mirrored"}}   # distribution_config.DistributionConfig fields

`--hparams` keys name model hyperparameters first, then optimization fields (so
`--hparams=learning_rate=0.1` works). Every unknown key or mistyped value is an error that names
the file or flag, the section and the key.

Importing this module does not import TensorFlow (nor the models), so a script can define its
flags from these dataclasses and answer `--help` or a bad flag at once; the few functions that
read or write files (through tf.io.gfile, for gs:// paths) import it when called.
"""

import dataclasses
import json
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from estimator_app.paths import resolve_path  # pylint: disable=unused-import (re-exported)
from estimator_app.training import distribution_config
from input_fns import errors
from model_fns import hparams as hparams_lib
from model_fns import registry
from model_fns import train_config as train_config_lib

CONFIG_FILENAME = "config.json"


class ConfigError(errors.UserInputError):
  """A config file, flag or hparam is malformed, or conflicts with what model_dir holds."""


# Step counts whose default follows the run (see `Cadence`): 0, and -1 for quick_eval_steps,
# where 0 already means "off".
AUTO = 0
AUTO_QUICK_EVAL = -1

# The automatic checkpoint cadence: a quarter of the run, between these bounds. At least 100
# steps keeps a short run from spending its time evaluating and exporting; at most 5000 bounds
# what a crash that SIGTERM cannot catch (OOM kill, machine loss) throws away.
_CHECKPOINTS_PER_RUN = 4
_MIN_AUTO_CHECKPOINT_STEPS = 100
_MAX_AUTO_CHECKPOINT_STEPS = 5000
_LOG_LINES_PER_RUN = 10
_MAX_AUTO_LOG_STEPS = 100
_AUTO_PATIENCE_EVALUATIONS = 3


def _at_least(section, name: str, low: int) -> None:
  value = getattr(section, name)
  if value < low:
    raise ConfigError(f"--{name}={value}: expected {low} or more")


def parse_profile_steps(text: str) -> Optional[Tuple[int, int]]:
  """"START,END" -> (start, number of steps), or None for "".

  Raises:
    ConfigError: not two integers with 0 <= START < END.
  """
  if not text:
    return None
  try:
    start, end = (int(x) for x in text.split(","))
  except ValueError:
    raise ConfigError(f"--profile_steps={text!r}: expected START,END steps") from None
  if not 0 <= start < end:
    raise ConfigError(f"--profile_steps={text!r}: expected 0 <= START < END")
  return start, end - start


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data, and how it is read.

  Attributes:
    data_dir: dataset directory holding manifest.json (its train split trains, its eval split
      is the primary eval set).
    train_data: optional weighted mixture of training datasets, "dirA:0.7,dirB:0.3"; replaces
      data_dir's train split.
    eval_sets: optional extra named eval sets, "name=dir,name2=dir2" (each dir's eval split),
      evaluated beside the primary one on every checkpoint.
    preprocessing: comma-separated preset chain (input_fns/preprocessing.py), the same in
      training (with augmentation), evaluation and serving.
    batch_size: global training batch size (examples per step across all replicas).
    eval_batch_size: evaluation batch size.
    shuffle_buffer: examples held for shuffling.
    cache: cache the parsed training data in memory after the first epoch.
    verify: check every shard's sha256 against the manifest before training.
  """
  data_dir: str = "data/digits"
  train_data: str = ""
  eval_sets: str = ""
  preprocessing: str = "scale"
  batch_size: int = 64
  eval_batch_size: int = 256
  shuffle_buffer: int = 10000
  cache: bool = False
  verify: bool = True

  def __post_init__(self):
    _at_least(self, "batch_size", 1)
    _at_least(self, "eval_batch_size", 1)
    _at_least(self, "shuffle_buffer", 0)


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """How long, where, and what happens around training.

  Attributes:
    model_dir: checkpoints, TensorBoard logs, exports, config.json and run records.
    train_steps: global step to train to.
    save_checkpoints_steps: checkpoint cadence; every new checkpoint gets a full evaluation.
      0 (default): follows train_steps, a quarter of it, at least 100 steps (or train_steps)
      and at most 5000, so a 50-step run checkpoints once and a 100k-step run 20 times.
    keep_checkpoint_max: latest checkpoints kept (older ones are deleted).
    keep_best: best checkpoints kept in model_dir/best by best_metric (never deleted by the
      latest-K policy); 0 disables.
    best_metric: eval metric that ranks checkpoints and the "best" export; "" (default): the
      label kind's headline metric (accuracy; auc for binary labels; average_loss, lower is
      better, for regression), resolved when the data is opened and saved so in config.json.
    best_metric_higher_is_better: whether a larger best_metric is better (loss: false); only
      read when best_metric is set.
    quick_eval_steps: every this many steps, a quick validation on a small eval subset
      (TensorBoard run "eval_quick"); 0 disables; -1 (default): half the checkpoint cadence.
    quick_eval_examples: examples in the quick validation subset.
    early_stopping_metric: stop when this eval metric has not improved for
      early_stopping_patience_steps; "" disables.
    early_stopping_higher_is_better: direction of early_stopping_metric.
    early_stopping_patience_steps: patience in global steps; 0 (default): three checkpoint
      intervals (three evaluations without improvement).
    warm_start_from: checkpoint prefix or directory to initialise variables from; "" for none.
    warm_start_vars: regex of variables to warm-start.
    warm_start_map: "new_name=name_in_checkpoint,..." for renamed variables.
    log_every_steps: cadence of the loss / learning-rate / examples-per-second log line;
      0 (default): a tenth of train_steps, at most 100.
    profile_steps: "START,END" global steps to profile into TensorBoard (START below
      train_steps); "" for none.
    seed: graph-level and input seed.
    deterministic: deterministic ops and seeded, ordered input, so two runs give the same
      loss curve (slower).
    export: export SavedModels (latest, best and final) during and after training.
    exports_to_keep: SavedModel versions kept per exporter.
  """
  model_dir: str = "runs/digits"
  train_steps: int = 2000
  save_checkpoints_steps: int = AUTO
  keep_checkpoint_max: int = 3
  keep_best: int = 2
  best_metric: str = ""
  best_metric_higher_is_better: bool = True
  quick_eval_steps: int = AUTO_QUICK_EVAL
  quick_eval_examples: int = 256
  early_stopping_metric: str = ""
  early_stopping_higher_is_better: bool = True
  early_stopping_patience_steps: int = AUTO
  warm_start_from: str = ""
  warm_start_vars: str = ".*"
  warm_start_map: str = ""
  log_every_steps: int = AUTO
  profile_steps: str = ""
  seed: int = 42
  deterministic: bool = False
  export: bool = True
  exports_to_keep: int = 3

  def __post_init__(self):
    _at_least(self, "train_steps", 1)
    _at_least(self, "save_checkpoints_steps", 0)
    _at_least(self, "keep_checkpoint_max", 1)
    _at_least(self, "keep_best", 0)
    _at_least(self, "quick_eval_steps", AUTO_QUICK_EVAL)
    _at_least(self, "quick_eval_examples", 1)
    _at_least(self, "early_stopping_patience_steps", 0)
    _at_least(self, "log_every_steps", 0)
    _at_least(self, "exports_to_keep", 1)
    parse_profile_steps(self.profile_steps)
    try:
      re.compile(self.warm_start_vars)
    except re.error as e:
      raise ConfigError(f"--warm_start_vars={self.warm_start_vars!r} is not a regular "
                        f"expression: {e}") from None
    if self.warm_start_map:
      # Imported here: warm_start imports TensorFlow, which the default (empty) map never needs.
      from estimator_app.checkpoints import warm_start  # pylint: disable=g-import-not-at-top
      warm_start.parse_name_map(self.warm_start_map)


# The main job's recipe. On digits, lenet5 (dropout 0.3) with it reached 0.983-0.989 eval
# accuracy over seeds 1, 2, 42 in 2000 steps; without label smoothing 0.975-0.981. The cosine
# schedule ends at decay_steps, which by default (0) is train_steps, whatever that is.
DEFAULT_OPTIMIZATION = train_config_lib.TrainConfig(
    optimizer="adam", learning_rate=3e-3, lr_schedule="cosine", label_smoothing=0.1)


@dataclasses.dataclass(frozen=True)
class Cadence:
  """The step counts a run uses: RunSettings and the schedule with every automatic default
  resolved against train_steps and steps_per_run (automatic values are multiples of it).

  Attributes:
    train_steps: global step to train to.
    steps_per_run: optimizer steps per session.run.
    checkpoint_steps: checkpoint (and full evaluation) cadence.
    quick_eval_steps: quick validation cadence; 0 for none.
    log_every_steps: log line cadence.
    summary_steps: training summaries' cadence (at most 100, at most log_every_steps).
    patience_steps: early-stopping patience.
    decay_steps: the learning-rate schedule's decay_steps.
    profile: (first step, number of steps) to profile, or None.
  """
  train_steps: int
  steps_per_run: int
  checkpoint_steps: int
  quick_eval_steps: int
  log_every_steps: int
  summary_steps: int
  patience_steps: int
  decay_steps: int
  profile: Optional[Tuple[int, int]]


def _multiple(value: int, k: int) -> int:
  """`value` rounded down to a multiple of k, at least k."""
  return max(k, value // k * k)


def resolve_cadence(run: RunSettings, optimization: train_config_lib.TrainConfig) -> Cadence:
  """Every automatic step count of `run` and `optimization`, resolved (see RunSettings)."""
  steps, k = run.train_steps, optimization.steps_per_run
  checkpoint = run.save_checkpoints_steps or _multiple(min(
      steps, max(_MIN_AUTO_CHECKPOINT_STEPS, steps // _CHECKPOINTS_PER_RUN),
      _MAX_AUTO_CHECKPOINT_STEPS), k)
  quick = (_multiple(checkpoint // 2, k) if run.quick_eval_steps == AUTO_QUICK_EVAL
           else run.quick_eval_steps)
  log_every = run.log_every_steps or _multiple(
      min(_MAX_AUTO_LOG_STEPS, steps // _LOG_LINES_PER_RUN), k)
  return Cadence(
      train_steps=steps, steps_per_run=k, checkpoint_steps=checkpoint, quick_eval_steps=quick,
      log_every_steps=log_every, summary_steps=min(100, log_every),
      patience_steps=run.early_stopping_patience_steps or _AUTO_PATIENCE_EVALUATIONS * checkpoint,
      decay_steps=optimization.decay_steps or steps,
      profile=parse_profile_steps(run.profile_steps))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one run needs; frozen once built.

  Attributes:
    model: registered model name (model_fns/registry.py).
    hparams: the model's resolved HParams instance (defaults plus overrides).
    optimization: loss/optimizer/schedule settings shared by all models.
    data: DataConfig.
    run: RunSettings.
    distribution: strategy, devices, learning-rate scaling, XLA
      (estimator_app/training/distribution_config.py).
  """
  model: str = registry.DEFAULT_MODEL
  hparams: Any = None
  optimization: train_config_lib.TrainConfig = DEFAULT_OPTIMIZATION
  data: DataConfig = DataConfig()
  run: RunSettings = RunSettings()
  distribution: distribution_config.DistributionConfig = distribution_config.DistributionConfig()

  def __post_init__(self):
    if self.hparams is None:
      object.__setattr__(self, "hparams", registry.get(self.model).hparams_cls())
    _check_steps_per_run(self.optimization.steps_per_run, self.run)
    _check_cadence(self.cadence, self.optimization, self.run)

  @property
  def model_def(self) -> registry.ModelDef:
    return registry.get(self.model)

  @property
  def cadence(self) -> Cadence:
    """The run's step counts, automatic defaults resolved."""
    return resolve_cadence(self.run, self.optimization)

  @property
  def train_config(self) -> train_config_lib.TrainConfig:
    """`optimization` with its automatic decay_steps resolved: what the model_fn trains with."""
    return dataclasses.replace(self.optimization, decay_steps=self.cadence.decay_steps)

  def to_json_dict(self) -> Dict[str, Any]:
    return {
        "model": self.model,
        "hparams": hparams_lib.to_json_dict(self.hparams),
        "optimization": hparams_lib.to_json_dict(self.optimization),
        "data": hparams_lib.to_json_dict(self.data),
        "run": hparams_lib.to_json_dict(self.run),
        "distribution": hparams_lib.to_json_dict(self.distribution),
    }

  def to_json(self) -> str:
    return json.dumps(self.to_json_dict(), indent=2, sort_keys=True)


def _check_steps_per_run(k: int, run: RunSettings) -> None:
  """Every cadence in global steps must be a multiple of steps_per_run: hooks see the global
  step only after each session.run, so run K steps at a time and a checkpoint due at step 500
  would land at the next multiple of K, and training would stop past train_steps. (Automatic
  cadences are multiples of K by construction; the ones the user set are checked.)"""
  if k == 1:
    return
  cadences = {"train_steps": run.train_steps}
  for name in ("save_checkpoints_steps", "log_every_steps", "quick_eval_steps"):
    if getattr(run, name) > 0:
      cadences[name] = getattr(run, name)
  bad = [f"--{name}={value}" for name, value in cadences.items() if value % k]
  if bad:
    fits = math.gcd(*cadences.values())
    raise ConfigError(
        f"--steps_per_run={k} must divide {', '.join(bad)} (steps run {k} per session.run; "
        f"checkpoints, logs and the end of training fall on multiples of it); "
        f"the largest steps_per_run that fits every cadence is {fits}")


def _check_cadence(c: Cadence, opt: train_config_lib.TrainConfig, run: RunSettings) -> None:
  """Refuses step counts that would silently waste the run.

  Raises:
    ConfigError: warm-up as long as the run; a cosine schedule that reaches learning rate 0
      before train_steps (every later step would compute and change nothing); a profile range
      that starts at or after train_steps.
  """
  if opt.warmup_steps >= c.train_steps:
    raise ConfigError(
        f"--warmup_steps={opt.warmup_steps} is not below --train_steps={c.train_steps}: the "
        f"learning rate would never reach --learning_rate")
  if opt.lr_schedule == "cosine":
    if c.decay_steps <= opt.warmup_steps:
      raise ConfigError(f"--decay_steps={c.decay_steps}: expected > --warmup_steps="
                        f"{opt.warmup_steps} for the cosine schedule")
    if c.decay_steps < c.train_steps and opt.min_lr_fraction == 0:
      raise ConfigError(
          f"the cosine schedule reaches learning rate 0 at step {c.decay_steps} "
          f"(--decay_steps={opt.decay_steps}) but --train_steps={c.train_steps}: the last "
          f"{c.train_steps - c.decay_steps} steps would train nothing. Leave --decay_steps at 0 "
          f"to end the schedule at train_steps, or set --min_lr_fraction above 0 to keep a floor")
  if c.profile is not None and c.profile[0] >= c.train_steps:
    raise ConfigError(f"--profile_steps={run.profile_steps!r} starts at or after "
                      f"--train_steps={c.train_steps}: nothing would be profiled")


def warnings(cfg: ExperimentConfig) -> List[str]:
  """Settings that are legal but probably not what the user meant; said once at start."""
  c, opt, out = cfg.cadence, cfg.optimization, []
  if opt.lr_schedule == "cosine" and c.decay_steps < c.train_steps:
    out.append(f"the cosine schedule reaches its floor (--min_lr_fraction={opt.min_lr_fraction:g}"
               f") at step {c.decay_steps} and stays there for the last "
               f"{c.train_steps - c.decay_steps} of {c.train_steps} steps")
  if opt.lr_schedule == "piecewise":
    late = [b for b in opt.boundaries if b >= c.train_steps]
    if late:
      out.append(f"--boundaries {late} lie at or after --train_steps={c.train_steps}: those "
                 f"decays never happen")
  if c.profile is not None and sum(c.profile) > c.train_steps:
    out.append(f"--profile_steps={cfg.run.profile_steps!r} ends after --train_steps="
               f"{c.train_steps}: profiling stops at the end of training")
  if cfg.run.early_stopping_metric and c.patience_steps < c.checkpoint_steps:
    out.append(f"--early_stopping_patience_steps={c.patience_steps} is shorter than the "
               f"checkpoint cadence ({c.checkpoint_steps}): the first evaluation without "
               f"improvement stops training")
  return out


def cadence_summary(cfg: ExperimentConfig) -> str:
  """One line naming the resolved step counts, for the start of a run's log."""
  c = cfg.cadence
  parts = [f"{c.train_steps} steps", f"checkpoint + full eval every {c.checkpoint_steps}",
           f"quick eval every {c.quick_eval_steps}" if c.quick_eval_steps else "no quick eval",
           f"log every {c.log_every_steps}"]
  if cfg.optimization.lr_schedule in ("cosine", "exponential"):
    parts.append(f"{cfg.optimization.lr_schedule} schedule over {c.decay_steps} steps")
  if cfg.run.early_stopping_metric:
    parts.append(f"early stopping on {cfg.run.early_stopping_metric} after {c.patience_steps}")
  return "run: " + ", ".join(parts)


_SECTIONS = ("model", "hparams", "optimization", "data", "run", "distribution")


def _section(obj, overrides, where: str):
  try:
    return hparams_lib.override(obj, overrides)
  except hparams_lib.HParamsError as e:
    # A section's own check (e.g. "--train_steps=0: expected 1 or more") says it best.
    cause = e.__cause__ if isinstance(e.__cause__, errors.UserInputError) else e
    raise ConfigError(f"{where}: {cause}") from None


def _suggestions(unknown: Sequence[str], known: Sequence[str]) -> str:
  """"; did you mean 'x'?" for one unknown name, "; 'a': did you mean 'x'?; 'b': ..." for
  several; names with no valid one near them get no hint."""
  if len(unknown) == 1:
    return errors.did_you_mean(unknown[0], known)
  hints = [(name, errors.did_you_mean(name, known)) for name in unknown]
  return "".join(f"; {name!r}: {hint[len('; '):]}" for name, hint in hints if hint)


def _sections(cfg: ExperimentConfig) -> Dict[str, Any]:
  return {name: getattr(cfg, name) for name in _SECTIONS}


def _apply(sections: Dict[str, Any], d: Mapping[str, Any], where: str) -> Dict[str, Any]:
  """One config-file-shaped layer on top of `sections`; each section checks itself."""
  if not isinstance(d, Mapping):
    raise ConfigError(f"{where}: expected a JSON object with sections {', '.join(_SECTIONS)}")
  unknown = sorted(set(d) - set(_SECTIONS))
  if unknown:
    raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {', '.join(_SECTIONS)}"
                      f"{_suggestions(unknown, _SECTIONS)}")
  for name in _SECTIONS[1:]:
    if name in d and not isinstance(d[name], Mapping):
      raise ConfigError(f"{where}: section {name!r} must be a JSON object, got {d[name]!r}")
  model = d.get("model", sections["model"])
  try:
    model_def = registry.get(model)
  except errors.UserInputError as e:
    raise ConfigError(f"{where}: {e}") from None
  # A different model starts from its own default hparams, not the previous model's.
  hp = sections["hparams"] if model == sections["model"] else model_def.hparams_cls()
  out = {"model": model, "hparams": _section(hp, d.get("hparams"), f"{where} [hparams]")}
  for name in _SECTIONS[2:]:
    out[name] = _section(sections[name], d.get(name), f"{where} [{name}]")
  return out


def _apply_hparams(sections: Dict[str, Any], text: str) -> Dict[str, Any]:
  """`--hparams=key=value,...`: model hparams first, then optimization fields."""
  if not text:
    return sections
  try:
    pairs = hparams_lib.split_overrides(text)
  except hparams_lib.HParamsError as e:
    raise ConfigError(f"--hparams: {e}") from None
  model_keys = set(hparams_lib.field_types(type(sections["hparams"])))
  opt_keys = set(hparams_lib.field_types(type(sections["optimization"])))
  model_part = [f"{k}={v}" for k, v in pairs if k in model_keys]
  opt_part = [f"{k}={v}" for k, v in pairs if k not in model_keys and k in opt_keys]
  unknown = [k for k, _ in pairs if k not in model_keys and k not in opt_keys]
  if unknown:
    raise ConfigError(
        f"--hparams: unknown key(s) {unknown} for model {sections['model']!r}; model keys: "
        f"{', '.join(sorted(model_keys))}; optimization keys: {', '.join(sorted(opt_keys))}"
        f"{_suggestions(unknown, sorted(model_keys) + sorted(opt_keys))}")
  return dict(sections,
              hparams=_section(sections["hparams"], ",".join(model_part), "--hparams"),
              optimization=_section(sections["optimization"], ",".join(opt_part), "--hparams"))


def from_layers(layers: Sequence[Tuple[Mapping[str, Any], str]], hparams: str = "",
                base: Optional[ExperimentConfig] = None) -> ExperimentConfig:
  """Applies config-file-shaped layers, lowest precedence first, then `--hparams`.

  The checks that span sections (steps_per_run against the cadences, the schedule against
  train_steps) run once, on the result: an early layer may be completed by a later one.

  Args:
    layers: (dict, where) pairs, e.g. [(config file, "config file x.json"), (flags, "flags")];
      `where` names the source in error messages.
    hparams: the `--hparams` text, applied last.
    base: the config the first layer overrides (defaults if None).

  Raises:
    ConfigError: unknown section or key, a value of the wrong type, or a combination of
      settings that would waste the run.
  """
  sections = _sections(base or ExperimentConfig())
  for d, where in layers:
    sections = _apply(sections, d, where)
  return ExperimentConfig(**_apply_hparams(sections, hparams))


def from_dict(d: Mapping[str, Any], where: str,
              base: Optional[ExperimentConfig] = None) -> ExperimentConfig:
  """Applies a config-file-shaped dict on top of `base` (defaults if None).

  Args:
    d: {"model": ..., "hparams": {...}, "optimization": {...}, "data": {...}, "run": {...}}.
    where: names the source in error messages (a file path or "flags").
    base: the config to override.

  Raises:
    ConfigError: unknown section or key, or a value of the wrong type.
  """
  return from_layers([(d, where)], base=base)


def _gfile():
  """tf.io.gfile (local and gs:// paths), imported when first needed: importing this module
  must not import TensorFlow, so that --help and flag errors answer at once."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def read_file(path: str) -> Tuple[Mapping[str, Any], str]:
  """A JSON config file as a (dict, where) layer for `from_layers`.

  Raises:
    ConfigError: the file is missing, a directory, not UTF-8 or not JSON.
  """
  gfile = _gfile()
  if not gfile.exists(path):
    raise ConfigError(f"config file {path} does not exist")
  if gfile.isdir(path):
    raise ConfigError(f"config file {path} is a directory, expected a JSON file")
  try:
    with gfile.GFile(path) as f:
      d = json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno}, "
                      f"column {e.colno}") from None
  except UnicodeDecodeError:
    raise ConfigError(f"config file {path} is not UTF-8 text") from None
  return d, f"config file {path}"


def load_file(path: str, base: Optional[ExperimentConfig] = None) -> ExperimentConfig:
  """Reads a JSON config file on top of `base`.

  Raises:
    ConfigError: the file is missing, not JSON, or has unknown sections/keys.
  """
  return from_layers([read_file(path)], base=base)


def apply_hparams(cfg: ExperimentConfig, text: str) -> ExperimentConfig:
  """Applies `--hparams=key=value,...`: model hparams first, then optimization fields.

  Raises:
    ConfigError: a key that is neither, or a value of the wrong type.
  """
  return ExperimentConfig(**_apply_hparams(_sections(cfg), text)) if text else cfg


def _resolve_list(spec: str, sep: str, base: Optional[str]) -> str:
  """Resolves the directory part of "dir:w,dir2:w2" (sep=":") or "name=dir" (sep="=")."""
  out = []
  for item in filter(None, (s.strip() for s in spec.split(","))):
    if sep == "=":
      name, eq, path = item.partition("=")
      out.append(f"{name}={resolve_path(path, base)}" if eq else resolve_path(item, base))
    else:
      path, colon, weight = item.rpartition(":")
      # A colon that is part of a URL (gs://...) or has no weight after it is not a weight.
      if not colon or "/" in weight or not path:
        out.append(resolve_path(item, base))
      else:
        out.append(f"{resolve_path(path, base)}:{weight}")
  return ",".join(out)


def with_resolved_paths(cfg: ExperimentConfig, base: Optional[str] = None) -> ExperimentConfig:
  """Resolves every user path in `cfg` against `base` (default: where the user ran the command)."""
  data = dataclasses.replace(
      cfg.data, data_dir=resolve_path(cfg.data.data_dir, base),
      train_data=_resolve_list(cfg.data.train_data, ":", base),
      eval_sets=_resolve_list(cfg.data.eval_sets, "=", base))
  run = dataclasses.replace(
      cfg.run, model_dir=resolve_path(cfg.run.model_dir, base),
      warm_start_from=resolve_path(cfg.run.warm_start_from, base))
  return dataclasses.replace(cfg, data=data, run=run)


def saved_path(model_dir: str) -> str:
  return os.path.join(model_dir, CONFIG_FILENAME)


def load_saved(model_dir: str) -> Optional[ExperimentConfig]:
  """The config a previous run saved in `model_dir`, or None if it has none."""
  path = saved_path(model_dir)
  if not _gfile().exists(path):
    return None
  return load_file(path)


def architecture(cfg: ExperimentConfig) -> Tuple[str, Dict[str, Any]]:
  """What must not change when resuming a model_dir: the model and its hyperparameters."""
  return cfg.model, hparams_lib.to_json_dict(cfg.hparams)


def check_resumable(saved: ExperimentConfig, cfg: ExperimentConfig) -> None:
  """Refuses to resume a model_dir whose checkpoints belong to another architecture.

  Raises:
    ConfigError: naming the differing fields and how to start fresh.
  """
  (old_model, old_hp), (new_model, new_hp) = architecture(saved), architecture(cfg)
  if old_model != new_model:
    diff = f"model {old_model!r} -> {new_model!r}"
  else:
    changed = sorted(k for k in set(old_hp) | set(new_hp) if old_hp.get(k) != new_hp.get(k))
    if not changed:
      return
    diff = ", ".join(f"{k}: {old_hp.get(k)!r} -> {new_hp.get(k)!r}" for k in changed)
  raise ConfigError(
      f"model_dir {cfg.run.model_dir} holds checkpoints of a different architecture ({diff}); "
      f"use another --model_dir, or --fresh to move the old run aside and start over")


def save(cfg: ExperimentConfig) -> str:
  """Writes the resolved config to model_dir/config.json atomically; returns its path."""
  # Imported here: files imports TensorFlow, which --help and flag parsing never need.
  from input_fns import files as files_lib  # pylint: disable=g-import-not-at-top
  path = saved_path(cfg.run.model_dir)
  _gfile().makedirs(cfg.run.model_dir)
  files_lib.write_atomically(path, cfg.to_json() + "\n")
  return path
