"""The one model_fn builder shared by every model: the model, its head and its train op.

`build_model_fn(model_def, hparams, spec, train_cfg)` wraps a model's
`build_logits(features, spec, hparams, training) -> logits [B, spec.logits_dimension]` into an
Estimator model_fn. It composes three parts:

  model_fns/head.py        the per-task math of every mode: predictions, loss, eval metrics,
                           export outputs (PREDICT and EVAL specs come from the head as they are),
                           the head of the dataset's label kind (`head.make_head`: multiclass,
                           binary or regression).
  model_fns/train_config.py  TrainConfig, the settings below (TensorFlow-free, for flags).
  this module              building the model (mixed precision, its variables, its
                           state updates); the train op: an optimizer by name with a
                           learning-rate schedule (or one per optimizer group, below), optional
                           clipping by global norm, the model's state updates (batch-norm moving
                           averages) run with every step; the training summaries of
                           model_fns/summaries.py.
  model_fns/multi_step.py  steps_per_run K: K such steps chained in one session.run, on K
                           stacked batches (`stacked_input_fn`).

Entry points: `build_model_fn`, `state_updates`. Callers import `TrainConfig`,
`TrainConfigError`, `PRECISIONS` (model_fns/train_config.py), `stack_batches`,
`stacked_input_fn` (model_fns/multi_step.py) and `PREDICT_KEYS`, `SERVING_DEFAULT`,
`PREDICT_OUTPUT`, `CLASSIFICATION_OUTPUT` (model_fns/head.py) from here too, as before the split.

Example weights: with `spec.weight_key`, TRAIN and EVAL features carry per-example weights under
feature_spec.WEIGHT_KEY; they are taken out of the features before the model is built (a model
never sees them) and weight the head's loss and metrics.

Optimizer groups: a model whose registry entry has `optimizer_groups` (wide_deep) names
(variable-name prefix, optimizer, base learning rate) per part. The gradients of the one loss
are computed once, clipped together, and each group's share applied by its own optimizer
(optimization.GroupedOptimizer) in one train op that counts one global step; every trainable
variable must fall in exactly one group. TrainConfig's optimizer and learning_rate then go
unused; its schedule shapes every group's rate alike (rate_g(step) = base_g * schedule(step) /
learning_rate), and float16 loss scaling skips or applies all groups' steps together. Each
group's rate is summarized as `<group>/learning_rate` (e.g. linear/learning_rate).

Mixed precision: with precision "float16" or "bfloat16" the model is built under the matching
Keras mixed policy (variables float32, computation 16-bit), so models must build their layers
with tf.keras layers and no explicit dtype to benefit. Logits are cast to float32 before the
softmax, the loss and the metrics. float16 adds dynamic loss scaling.

Batch-norm and other state updates: the train op runs everything in the UPDATE_OPS collection
plus every assignment the model's graph makes to one of its own non-trainable variables that
nothing else runs. The second rule catches tf.keras BatchNormalization layers called in a
tf.compat.v1 graph, which on TF 2.15 keep their moving-average assign ops only in
`layer.updates` (not in UPDATE_OPS, not as dependencies of the layer's output).
"""

import contextlib
import dataclasses
import random
from typing import Any, List, NamedTuple, Optional, Sequence

import tensorflow as tf
from absl import logging

from input_fns import feature_spec as fs
from model_fns import head as head_lib
from model_fns import multi_step
from model_fns import optimization
from model_fns import summaries
from model_fns import train_config as train_config_lib

# Names other packages import from this module since before head.py, multi_step.py and
# train_config.py held them.
TrainConfig = train_config_lib.TrainConfig
TrainConfigError = train_config_lib.TrainConfigError
PRECISIONS = train_config_lib.PRECISIONS
PREDICT_KEYS = head_lib.PREDICT_KEYS
SERVING_DEFAULT = head_lib.SERVING_DEFAULT
PREDICT_OUTPUT = head_lib.PREDICT_OUTPUT
CLASSIFICATION_OUTPUT = head_lib.CLASSIFICATION_OUTPUT
stack_batches = multi_step.stack_batches
stacked_input_fn = multi_step.stacked_input_fn

_KERAS_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}

# Graph ops that write a variable: what a model's state update (a moving average) looks like.
_WRITE_OPS = frozenset({"AssignSubVariableOp", "AssignAddVariableOp", "AssignVariableOp",
                        "AssignSub", "AssignAdd", "Assign"})


@contextlib.contextmanager
def _precision_policy(precision: str):
  """Builds Keras layers created inside under the mixed policy of `precision`."""
  if precision not in _KERAS_POLICIES:
    yield
    return
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(_KERAS_POLICIES[precision])
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)


def _as_op(x) -> tf.Operation:
  return x if isinstance(x, tf.Operation) else x.op


def state_updates(graph: tf.Graph, model_ops: Sequence[tf.Operation],
                  model_variables: Sequence[tf.Variable]) -> List[tf.Operation]:
  """The ops the train op must run besides the gradient step (batch-norm moving averages).

  Args:
    graph: the model's graph.
    model_ops: the ops the model created (to look for its own variable writes).
    model_variables: the variables the model created.

  Returns:
    UPDATE_OPS, then every op in `model_ops` that assigns to a non-trainable variable in
    `model_variables` and is not a variable initializer (see the module docstring).
  """
  updates = [_as_op(u) for u in graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)]
  trainable = {v.op.name for v in _trainable(model_variables)}
  state = [v for v in model_variables if v.op.name not in trainable]
  state_ops = {v.op for v in state}
  initializers = {v.initializer for v in state}
  known = set(updates)
  found = [op for op in model_ops
           if op.type in _WRITE_OPS and op not in known and op not in initializers
           and op.inputs and op.inputs[0].op in state_ops]
  if found:
    logging.info("running %d state updates that are not in UPDATE_OPS with the train op "
                 "(tf.keras layers in a graph keep them in layer.updates): %s",
                 len(found), ", ".join(op.name for op in found))
  return updates + found


def _trainable(variables: Sequence[tf.Variable]) -> List[tf.Variable]:
  names = {v.op.name for v in tf.compat.v1.trainable_variables()}
  return [v for v in variables if v.op.name in names]


class _TrainStep(NamedTuple):
  """What the training summaries and the TRAIN spec need of one training step."""
  batch: Any  # the step's features
  labels: tf.Tensor
  logits: tf.Tensor
  model_variables: List[tf.Variable]
  loss: tf.Tensor
  data_loss: tf.Tensor
  regularization: tf.Tensor
  grad_norm: Optional[tf.Tensor]


# The summary tag of the head's data loss (losses/cross_entropy for the classifiers).
_DATA_LOSS_TAGS = {head_lib.REGRESSION: "losses/squared_error"}


class _Rate(NamedTuple):
  """One learning rate of the train op: its summary tag, base rate and (groups) optimizer."""
  tag: str
  base: float
  prefix: str = ""  # a group's variable-name prefix; "" for TrainConfig's one optimizer
  optimizer: str = ""


# (model, hparams) already described in this process: a run builds the same
# model for training, each evaluation and each export, and the user reads its summary once.
_DESCRIBED = set()


def _describe_once(name: str, hparams, train_cfg: "TrainConfig", variables,
                   rates: Sequence[_Rate] = ()) -> None:
  key = (name, repr(hparams))  # an export's model_fn has the same model, not all of training's
  if key in _DESCRIBED:
    return
  _DESCRIBED.add(key)
  fields = ", ".join(f"{f.name}={getattr(hparams, f.name)!r}" for f in dataclasses.fields(hparams)
                     ) if dataclasses.is_dataclass(hparams) else repr(hparams)
  logging.info("model %s: %s", name, fields)
  groups = [r for r in rates if r.prefix]
  if groups:
    logging.info("model %s trains with %d optimizers (TrainConfig's optimizer and learning_rate "
                 "unused): %s", name, len(groups),
                 "; ".join(f"{r.prefix}/*: {r.optimizer} at {r.base:g}" for r in groups))
  logging.debug("train config %s", train_cfg.to_json())
  summaries.log_variables(name, variables)


def build_model_fn(model_def, hparams, spec: fs.FeatureSpec, train_cfg: TrainConfig):
  """Returns an Estimator model_fn for `model_def` with `hparams` on data described by `spec`.

  Args:
    model_def: a registry.ModelDef (its name, build_logits and optimizer_groups are used).
    hparams: the model's hyperparameters (an instance of model_def.hparams_cls).
    spec: the dataset's feature spec (input key, kind, label kind and names, weight key).
    train_cfg: optimization and reporting settings.

  Returns:
    model_fn(features, labels, mode) -> tf.estimator.EstimatorSpec. Labels are what the
    dataset's head takes: int class ids [B] (or [B, 1]) checked to lie in [0, num_classes)
    (multiclass, binary), float targets [B] checked to be finite (regression). With
    spec.weight_key, TRAIN and EVAL features hold the example weights under
    feature_spec.WEIGHT_KEY. With train_cfg.steps_per_run K > 1, TRAIN features and labels are
    K stacked batches.

  Raises:
    TrainConfigError: a head setting of train_cfg (label_smoothing, top_k) that does not apply
      to the dataset's label kind.
    ValueError: the model's optimizer groups name an unknown optimizer or a rate <= 0.
    From model_fn, when it builds a graph: ValueError: the model's logits are not
      [batch, spec.logits_dimension]; TRAIN or EVAL without labels; a loss that depends on no
      trainable variable; a trainable variable in no optimizer group or in several; with
      steps_per_run > 1, unstacked TRAIN inputs or a model whose later builds make other
      variables than its first (see multi_step.chain_steps). These are model or input_fn bugs,
      not user input errors.
  """
  try:
    head = head_lib.make_head(spec.label_kind, spec.label_names,
                              label_smoothing=train_cfg.label_smoothing, l1=train_cfg.l1,
                              l2=train_cfg.l2, top_k=train_cfg.top_k)
  except ValueError as e:
    raise TrainConfigError(f"the dataset's {spec.label_kind} label: {e}") from e
  logits_dimension = head.logits_dimension
  rates = _rates(model_def, hparams, spec, train_cfg)
  first_build = [True]  # per model_fn; _describe_once then keeps it to one report per process

  def split_weights(features):
    """(the model's features, the example weights or None): the weights never reach the
    model."""
    if not isinstance(features, dict) or fs.WEIGHT_KEY not in features:
      return features, None
    features = dict(features)
    weights = features.pop(fs.WEIGHT_KEY)
    return features, (weights if spec.weight_key else None)

  def build(features, training: bool, shared: Optional[multi_step.SharedVariables] = None):
    """Builds the model once: (float32 logits, the ops it made, its variables, the losses it
    added to REGULARIZATION_LOSSES)."""
    graph = tf.compat.v1.get_default_graph()
    ops_before = len(graph.get_operations())
    losses_before = len(graph.get_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES))
    vars_before = set(v.op.name for v in tf.compat.v1.global_variables())
    creator = (tf.variable_creator_scope(shared) if shared is not None
               else contextlib.nullcontext())
    with _precision_policy(train_cfg.precision), creator:
      logits = model_def.build_logits(features, spec, hparams, training)
    model_ops = graph.get_operations()[ops_before:]
    if shared is not None and shared.replaying:
      model_variables = list(shared.variables)
    else:
      model_variables = [v for v in tf.compat.v1.global_variables()
                         if v.op.name not in vars_before]
    if logits.shape.rank != 2 or logits.shape[-1] != logits_dimension:
      raise ValueError(f"model {model_def.name!r} returned logits of shape {logits.shape}; "
                       f"expected [batch, {logits_dimension}]")
    if first_build[0]:
      first_build[0] = False
      _describe_once(model_def.name, hparams, train_cfg, model_variables, rates)
    model_losses = graph.get_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)
    return tf.cast(logits, tf.float32), model_ops, model_variables, model_losses[losses_before:]

  def train_spec(features, labels):
    """K = steps_per_run optimizer steps, each on its own batch, one after the other."""
    graph = tf.compat.v1.get_default_graph()
    global_step = tf.compat.v1.train.get_or_create_global_step()
    step_lr = {}  # tag -> the learning rate of the step being built; the optimizers read it
    optimizer = _optimizer(train_cfg, rates, step_lr)
    prefixes = [r.prefix for r in rates if r.prefix]

    def train_step(batch, batch_labels, shared):
      batch, example_weights = split_weights(batch)
      logits, model_ops, model_variables, model_losses = build(batch, True, shared)
      batch_labels = head.checked_labels(batch_labels)
      loss, data_loss, regularization = head.loss(
          batch_labels, logits, _trainable(model_variables), model_losses,
          example_weights=example_weights)
      # Read after the previous step's global step + 1: each step has its own rate.
      for rate in rates:
        step_lr[rate.tag] = _learning_rate(train_cfg, global_step, rate.base)
      train_op, grad_norm = _train_step(loss, optimizer, train_cfg, global_step,
                                        state_updates(graph, model_ops, model_variables),
                                        prefixes)
      return train_op, _TrainStep(batch, batch_labels, logits, model_variables, loss,
                                  data_loss, regularization, grad_norm)

    train_op, last = multi_step.chain_steps(features, labels, train_cfg.steps_per_run,
                                            train_step)
    predictions = head.predictions(last.logits)
    scalars = {rate.tag: step_lr[rate.tag] for rate in rates}
    scalars.update({
        _DATA_LOSS_TAGS.get(head.label_kind, "losses/cross_entropy"): last.data_loss,
        "losses/regularization": last.regularization,
    })
    scalars.update(head.train_scalars(last.labels, predictions))
    if last.grad_norm is not None:
      scalars["gradient_global_norm"] = last.grad_norm
    if hasattr(optimizer, "loss_scale"):
      scalars["loss_scale"] = optimizer.loss_scale()
    summaries.scalars(scalars)
    summaries.input_images(last.batch, spec, train_cfg.summary_images)
    if train_cfg.weight_histograms:
      summaries.weight_histograms(_trainable(last.model_variables))
    return head.train_spec(last.loss, train_op, predictions)

  def model_fn(features, labels, mode, config=None):
    with _seeded_python_random(None if config is None else config.tf_random_seed):
      return mode_spec(features, labels, mode)

  def mode_spec(features, labels, mode):
    if mode == tf.estimator.ModeKeys.TRAIN:
      return train_spec(features, labels)
    features, example_weights = split_weights(features)
    logits, _, model_variables, model_losses = build(features, False)
    if mode == tf.estimator.ModeKeys.PREDICT:
      return head.predict_spec(logits)
    return head.eval_spec(logits, labels, _trainable(model_variables), model_losses,
                          example_weights=example_weights)

  return model_fn


# Replica r > 0 draws its seeds (dropout) from seed + r * this prime, apart from replica 0's.
_REPLICA_SEED_STRIDE = 7919


@contextlib.contextmanager
def _seeded_python_random(seed: Optional[int]):
  """Python's `random` seeded for one model_fn call, then put back as it was.

  Unseeded tf.keras initializers and dropout layers draw their op seeds from Python's
  `random` module, so a model's initial weights depended on everything that had consumed it
  before the graph was built: under MirroredStrategy the same seed gave other initial weights
  than on one device. Seeded per call, the first replica builds exactly the single-device
  graph's seeds; other replicas get their own (their dropout masks must differ).
  """
  if seed is None:
    yield
    return
  replica = 0
  if tf.distribute.has_strategy():
    replica_id = tf.get_static_value(
        tf.distribute.get_replica_context().replica_id_in_sync_group)
    replica = int(replica_id) if replica_id is not None else 0
  state = random.getstate()
  random.seed(seed + _REPLICA_SEED_STRIDE * replica)
  try:
    yield
  finally:
    random.setstate(state)


def _rates(model_def, hparams, spec: fs.FeatureSpec, cfg: TrainConfig) -> List[_Rate]:
  """The train op's learning rates: TrainConfig's one, or one per optimizer group of the model.

  Raises:
    ValueError: no groups, an unknown optimizer or a base rate <= 0 in the model's groups.
  """
  groups_fn = getattr(model_def, "optimizer_groups", None)
  if groups_fn is None:
    return [_Rate("learning_rate", cfg.learning_rate)]
  rates = []
  for prefix, optimizer, base in groups_fn(hparams, spec):
    prefix = prefix.rstrip("/")
    if optimizer not in optimization.OPTIMIZERS or not base > 0:
      raise ValueError(f"model {model_def.name!r}: optimizer group {prefix!r} needs an optimizer "
                       f"of {', '.join(optimization.OPTIMIZERS)} and a rate > 0; got "
                       f"{optimizer!r} at {base!r}")
    rates.append(_Rate(f"{prefix.rsplit('/', 1)[-1]}/learning_rate", float(base), prefix,
                       optimizer))
  if not rates or len({r.tag for r in rates}) != len(rates):
    raise ValueError(f"model {model_def.name!r}: optimizer groups need one or more prefixes "
                     f"whose last names differ; got {[r.prefix for r in rates]}")
  return rates


def _learning_rate(cfg: TrainConfig, global_step: tf.Variable, base: float) -> tf.Tensor:
  """TrainConfig's schedule from `base` (every schedule is proportional to its base rate)."""
  if not cfg.decay_steps and cfg.lr_schedule in ("cosine", "exponential"):
    raise ValueError(f"the {cfg.lr_schedule} schedule needs decay_steps: 0 stands for the run's "
                     f"train_steps, which the training app resolves (ExperimentConfig.train_config)")
  return optimization.learning_rate(
      global_step, base, cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
      decay_steps=cfg.decay_steps, decay_rate=cfg.decay_rate, staircase=cfg.staircase,
      boundaries=cfg.boundaries, min_fraction=cfg.min_lr_fraction)


def _optimizer(cfg: TrainConfig, rates: Sequence[_Rate],
               step_lr) -> tf.compat.v1.train.Optimizer:
  """One optimizer for every step of a run (its slots are created once, by the first step).

  Args:
    cfg: the optimizer settings.
    rates: `_rates`: TrainConfig's rate, or the model's optimizer groups.
    step_lr: tag -> the learning rate of the step being built (read at each apply).

  Returns:
    TrainConfig's optimizer, or a GroupedOptimizer of the groups' optimizers; under float16
    wrapped in one dynamic loss scale.
  """
  def create(name, tag):
    return optimization.create_optimizer(
        name, lambda: step_lr[tag], momentum=cfg.momentum, nesterov=cfg.nesterov,
        beta1=cfg.beta1, beta2=cfg.beta2, epsilon=cfg.epsilon, rho=cfg.rho,
        weight_decay=cfg.weight_decay)

  if rates[0].prefix:
    optimizer = optimization.GroupedOptimizer([(r.prefix, create(r.optimizer, r.tag))
                                               for r in rates])
  else:
    optimizer = create(cfg.optimizer, rates[0].tag)
  if cfg.precision == "float16":
    return optimization.with_loss_scaling(optimizer)
  return optimizer


def _replicas_in_sync() -> int:
  """Replicas whose gradients the optimizer sums each step (1 without a strategy)."""
  if not tf.distribute.has_strategy():
    return 1
  return tf.distribute.get_replica_context().num_replicas_in_sync


def _train_step(loss: tf.Tensor, optimizer, cfg: TrainConfig, global_step: tf.Variable,
                updates: Sequence[tf.Operation], group_prefixes: Sequence[str] = ()):
  """One training step: state updates, one optimizer step, global step + 1 (and the grad norm,
  None where it is not computed).

  Raises:
    ValueError: the loss depends on no trainable variable; with `group_prefixes`, a trainable
      variable is in no optimizer group or in several.
  """
  trainable = tf.compat.v1.trainable_variables()
  if group_prefixes:
    optimization.split_by_group(trainable, group_prefixes)
  grads_and_vars = [(g, v) for g, v in optimizer.compute_gradients(
      loss, var_list=trainable, colocate_gradients_with_ops=True) if g is not None]
  if not grads_and_vars:
    raise ValueError("the loss depends on no trainable variable")
  if _replicas_in_sync() > 1:
    # Each replica holds its share of the gradient (its loss is divided by the replica count);
    # apply_gradients sums the shares. Clipping a share would bound the sum only by
    # replicas * clip_norm, so the norm is taken of the summed gradient and every share is
    # scaled by the same factor: the sum is then exactly the clipped single-device gradient.
    # That costs a second all-reduce per step, paid only when clipping; without clipping the
    # norm is not computed (one replica's share would be a misleading summary).
    grad_norm = None
    if cfg.clip_norm > 0:
      grads_and_vars, grad_norm = optimization.clip_replica_shares(grads_and_vars, cfg.clip_norm)
  else:
    grads_and_vars, grad_norm = optimization.clip_by_global_norm(grads_and_vars, cfg.clip_norm)
  with tf.control_dependencies(updates):
    # The global step is incremented outside apply_gradients so that a step the loss-scale
    # optimizer skips (float16 overflow) still counts: training always reaches max_steps.
    apply = optimizer.apply_gradients(grads_and_vars)
  with tf.control_dependencies([apply]):
    return global_step.assign_add(1, read_value=False), grad_norm
