"""Optimizers by name, learning-rate schedules, weight decay and gradient clipping.

`create_optimizer` builds one optimizer by name; `GroupedOptimizer` applies each variable
group's gradients with its own optimizer (wide_deep: FTRL on the wide part, Adagrad on the deep
part), `split_by_group` assigns variables to groups by name prefix, `with_loss_scaling` wraps
either in float16 loss scaling.

Everything here builds tf.compat.v1 graph ops for an Estimator model_fn. The optimizers are
`tf.compat.v1.train` optimizers, so their slot variables live in GLOBAL_VARIABLES and
checkpoints stay `tf.train.Saver` compatible.

Which variables are "weights" (decayed by L1/L2 and by adamw's decoupled decay): trainable
variables of rank >= 2, i.e. dense and conv kernels, recurrent kernels and embeddings. Biases
and batch-norm gamma/beta (rank 1) are never decayed.
"""

import math
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from model_fns import train_config as train_config_lib

# The names TrainConfig accepts, defined beside it so flags can list them without TensorFlow.
OPTIMIZERS = train_config_lib.OPTIMIZERS
SCHEDULES = train_config_lib.SCHEDULES

# Adagrad's starting accumulator value (tf.compat.v1 default); fixed, it rarely matters.
_ADAGRAD_INITIAL_ACCUMULATOR = 0.1


def is_weight(var: tf.Variable) -> bool:
  """True for kernels/embeddings (rank >= 2), False for biases and batch-norm parameters."""
  rank = var.shape.rank
  return rank is not None and rank >= 2


def learning_rate(global_step: tf.Tensor, base: float, schedule: str = "constant", *,
                  warmup_steps: int = 0, decay_steps: int = 1000, decay_rate: float = 0.1,
                  staircase: bool = False, boundaries: Sequence[int] = (),
                  min_fraction: float = 0.0) -> tf.Tensor:
  """The learning rate as a float32 function of the global step.

  lr(step) = schedule(step) * min(1, (step + 1) / warmup_steps), so warm-up ramps linearly
  from base / warmup_steps at step 0 to the schedule's value at step warmup_steps - 1 (every
  step, the first included, trains). Schedules, with s = step:

    constant:    base
    exponential: base * decay_rate ** (s / decay_steps)   (floor(s / decay_steps) if staircase)
    piecewise:   base * decay_rate ** (number of boundaries <= s)
    cosine:      floor + (base - floor) * (1 + cos(pi * t)) / 2 with floor = base * min_fraction,
                 t = clip((s - warmup_steps) / (decay_steps - warmup_steps), 0, 1): base at the
                 end of warm-up, falling to the floor at step decay_steps and staying there.

  Args:
    global_step: the (int64) global step tensor.
    base: the base learning rate.
    schedule: one of SCHEDULES.
    warmup_steps: linear warm-up length in steps (0: none).
    decay_steps: exponential: steps per factor decay_rate; cosine: the step the floor is
      reached at (absolute, typically the number of training steps).
    decay_rate: factor per decay_steps (exponential) or per boundary (piecewise).
    staircase: exponential decay in whole steps of decay_steps.
    boundaries: piecewise: increasing steps at which the rate is multiplied by decay_rate.
    min_fraction: cosine: the floor as a fraction of base.

  Returns:
    A scalar float32 tensor.

  Raises:
    ValueError: unknown schedule (TrainConfig validates user input before it gets here).
  """
  step = tf.cast(global_step, tf.float32)
  base_t = tf.constant(base, tf.float32)
  if schedule == "constant":
    lr = base_t
  elif schedule == "exponential":
    exponent = step / float(decay_steps)
    if staircase:
      exponent = tf.floor(exponent)
    lr = base_t * tf.pow(tf.constant(decay_rate, tf.float32), exponent)
  elif schedule == "piecewise":
    passed = tf.add_n([tf.cast(step >= float(b), tf.float32) for b in boundaries]
                      or [tf.constant(0.0)])
    lr = base_t * tf.pow(tf.constant(decay_rate, tf.float32), passed)
  elif schedule == "cosine":
    span = float(decay_steps - warmup_steps)
    t = tf.clip_by_value((step - float(warmup_steps)) / span, 0.0, 1.0)
    floor = base * min_fraction
    lr = floor + (base - floor) * 0.5 * (1.0 + tf.cos(math.pi * t))
  else:
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
  if warmup_steps > 0:
    lr = lr * tf.minimum(1.0, (step + 1.0) / float(warmup_steps))
  return tf.identity(lr, name="learning_rate")


class AdamWOptimizer(tf.compat.v1.train.AdamOptimizer):
  """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
  Regularization", 2019): each step, weights w <- w - lr * weight_decay * w, then Adam's step.

  The decay is part of each variable's update op (not a separate op after the train op), so it
  runs exactly when the update runs: under a loss-scale optimizer a skipped step skips the decay
  too, and distribution strategies apply it where they apply the update. It reads the weight
  only after the gradient exists, so gradients are always taken at the undecayed weights.
  """

  def __init__(self, learning_rate, weight_decay: float,
               should_decay: Callable[[tf.Variable], bool] = is_weight, **kwargs):
    """Args:
      learning_rate: float, scalar tensor (e.g. a schedule) or a callable returning one; also
        scales the decay.
      weight_decay: decay per unit learning rate.
      should_decay: which variables decay (default: is_weight).
      **kwargs: AdamOptimizer's beta1, beta2, epsilon, name.
    """
    kwargs.setdefault("name", "AdamW")
    super().__init__(learning_rate, **kwargs)
    self._decay_lr = learning_rate
    self._weight_decay = weight_decay
    self._should_decay = should_decay

  def _decay(self, var, grad):
    if self._weight_decay == 0 or not self._should_decay(var):
      return tf.no_op()
    grad_values = grad.values if isinstance(grad, tf.IndexedSlices) else grad
    with tf.control_dependencies([grad_values]):
      rate = self._call_if_callable(self._decay_lr)
      rate = tf.cast(rate, var.dtype.base_dtype) * self._weight_decay
      return var.assign_sub(rate * tf.identity(var), use_locking=self._use_locking,
                            read_value=False)

  def _apply_dense(self, grad, var):
    with tf.control_dependencies([self._decay(var, grad)]):
      return super()._apply_dense(grad, var)

  def _resource_apply_dense(self, grad, handle):
    with tf.control_dependencies([self._decay(handle, grad)]):
      return super()._resource_apply_dense(grad, handle)

  def _apply_sparse(self, grad, var):
    with tf.control_dependencies([self._decay(var, grad)]):
      return super()._apply_sparse(grad, var)

  def _resource_apply_sparse(self, grad, handle, indices):
    with tf.control_dependencies([self._decay(handle, grad)]):
      return super()._resource_apply_sparse(grad, handle, indices)


class _FtrlOptimizer(tf.compat.v1.train.FtrlOptimizer):
  """FTRL whose learning rate may be a callable, like every other tf.compat.v1 optimizer's
  (FtrlOptimizer alone converts it to a tensor as it is); each apply_gradients reads it."""

  def _prepare(self):
    rate = self._learning_rate
    self._learning_rate = self._call_if_callable(rate)
    try:
      super()._prepare()
    finally:
      self._learning_rate = rate


def create_optimizer(name: str, lr, *, momentum: float = 0.9, nesterov: bool = False,
                     beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-7,
                     rho: float = 0.9, weight_decay: float = 0.0,
                     loss_scaling: bool = False) -> tf.compat.v1.train.Optimizer:
  """A tf.compat.v1.train optimizer by name.

  Args:
    name: one of OPTIMIZERS.
    lr: learning rate: a float, a scalar tensor, or a callable returning one (called by every
      apply_gradients, so one optimizer can step several times with different rates).
    momentum: momentum (momentum; rmsprop's momentum stays 0).
    nesterov: Nesterov momentum (momentum).
    beta1: first-moment decay (adam, adamw).
    beta2: second-moment decay (adam, adamw).
    epsilon: numerical stability term (adam, adamw, rmsprop).
    rho: squared-gradient decay (rmsprop).
    weight_decay: decoupled weight decay per unit learning rate (adamw only).
    loss_scaling: wrap in a dynamic loss-scale optimizer (`with_loss_scaling`).

  Returns:
    The optimizer. With loss_scaling, `.loss_scale` is a callable returning the current scale.

  Raises:
    ValueError: unknown name (TrainConfig validates user input before it gets here).
  """
  if name == "sgd":
    opt = tf.compat.v1.train.GradientDescentOptimizer(lr)
  elif name == "momentum":
    opt = tf.compat.v1.train.MomentumOptimizer(lr, momentum, use_nesterov=nesterov)
  elif name == "adam":
    opt = tf.compat.v1.train.AdamOptimizer(lr, beta1=beta1, beta2=beta2, epsilon=epsilon)
  elif name == "adamw":
    opt = AdamWOptimizer(lr, weight_decay, beta1=beta1, beta2=beta2, epsilon=epsilon)
  elif name == "rmsprop":
    opt = tf.compat.v1.train.RMSPropOptimizer(lr, decay=rho, epsilon=epsilon)
  elif name == "adagrad":
    opt = tf.compat.v1.train.AdagradOptimizer(
        lr, initial_accumulator_value=_ADAGRAD_INITIAL_ACCUMULATOR)
  elif name == "ftrl":
    # The premade linear models' optimizer (FTRL-Proximal, McMahan et al. 2013): per-coordinate
    # rates suit sparse features; its defaults (learning_rate_power -0.5, accumulators 0.1).
    opt = _FtrlOptimizer(lr)
  else:
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
  return with_loss_scaling(opt) if loss_scaling else opt


def with_loss_scaling(opt: tf.compat.v1.train.Optimizer) -> tf.compat.v1.train.Optimizer:
  """`opt` under dynamic loss scaling (float16 mixed precision).

  The loss is multiplied by the scale before differentiation, gradients divided by it, and
  steps whose gradients overflow are skipped while the scale halves.

  Returns:
    The wrapped optimizer; `.loss_scale` is a callable returning the current scale.
  """
  # The TF1 loss-scale optimizer is the one that wraps tf.compat.v1 optimizers in graph mode
  # (the Keras LossScaleOptimizer only wraps Keras optimizers). Its variables are plain
  # GLOBAL_VARIABLES, saved with the checkpoint.
  with tf.name_scope("loss_scale"):
    scale = tf.compat.v1.mixed_precision.DynamicLossScale(
        initial_loss_scale=2.0 ** 15, increment_period=2000, multiplier=2.0)
  wrapped = tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer(opt, scale)
  wrapped.loss_scale = scale
  return wrapped


def _in_group(variable: tf.Variable, prefix: str) -> bool:
  name = variable.op.name
  return name == prefix or name.startswith(prefix + "/")


def split_by_group(variables: Sequence[tf.Variable],
                   prefixes: Sequence[str]) -> List[List[tf.Variable]]:
  """The variables of each group, a group being the variables whose names start with its prefix.

  Args:
    variables: the variables to split (every trainable variable of the model).
    prefixes: one name-scope prefix per group (like "wide_deep/linear"; a trailing "/" is
      optional).

  Returns:
    One list per prefix, in the order of `variables`.

  Raises:
    ValueError: a variable is in no group or in more than one; the message names them.
  """
  prefixes = [p.rstrip("/") for p in prefixes]
  groups = [[] for _ in prefixes]
  outside, several = [], []
  for v in variables:
    hits = [i for i, p in enumerate(prefixes) if _in_group(v, p)]
    if len(hits) == 1:
      groups[hits[0]].append(v)
    else:
      (outside if not hits else several).append(v.op.name)
  if outside or several:
    problems = []
    if outside:
      problems.append(f"in no group: {', '.join(outside)}")
    if several:
      problems.append(f"in several groups: {', '.join(several)}")
    raise ValueError(f"every trainable variable must belong to exactly one optimizer group "
                     f"(prefixes {', '.join(prefixes)}); {'; '.join(problems)}")
  return groups


class GroupedOptimizer(tf.compat.v1.train.Optimizer):
  """Several optimizers as one: each variable's gradient goes to the optimizer of its group.

  A group is the variables whose names start with its prefix (`split_by_group`), e.g. the
  linear part of a wide-and-deep model with FTRL and its deep part with Adagrad, as
  tf.estimator.DNNLinearCombinedClassifier trains them. The gradients of the one loss are
  computed once (`compute_gradients` is the base class's, so clipping and loss scaling see all
  of them, and `with_loss_scaling` around this optimizer skips or applies every group's step
  together); `apply_gradients` applies each group's share with its own optimizer, in one op.
  Each optimizer keeps its own slots (`<variable>/Ftrl`, `<variable>/Adagrad`, ...).
  """

  def __init__(self, groups: Sequence[Tuple[str, tf.compat.v1.train.Optimizer]],
               name: str = "Grouped"):
    """Args:
      groups: (name-scope prefix, optimizer) per group.
      name: the name of the op apply_gradients returns.
    """
    super().__init__(use_locking=False, name=name)
    self._prefixes = [p.rstrip("/") for p, _ in groups]
    self._optimizers = [opt for _, opt in groups]

  @property
  def optimizers(self) -> List[tf.compat.v1.train.Optimizer]:
    """The groups' optimizers, in group order."""
    return list(self._optimizers)

  def apply_gradients(self, grads_and_vars, global_step=None, name=None):
    """Applies each group's (gradient, variable) pairs with its optimizer.

    Args:
      grads_and_vars: (gradient or None, variable) pairs; pairs without a gradient are
        skipped, as by every optimizer.
      global_step: incremented by one after every group's update, if given.
      name: the returned op's name.

    Returns:
      One op that applies every group's update.

    Raises:
      ValueError: a variable with a gradient is in no group or in several.
    """
    pairs = [(g, v) for g, v in grads_and_vars if g is not None]
    if not pairs:
      raise ValueError("no gradients to apply")
    groups = split_by_group([v for _, v in pairs], self._prefixes)
    grad_of = {id(v): g for g, v in pairs}
    updates = [opt.apply_gradients([(grad_of[id(v)], v) for v in variables])
               for opt, variables in zip(self._optimizers, groups) if variables]
    if global_step is None:
      return tf.group(*updates, name=name or self.get_name())
    with tf.control_dependencies(updates):
      return tf.compat.v1.assign_add(global_step, 1, name=name or self.get_name())

  def variables(self):
    """The slot and hyperparameter variables of every group's optimizer."""
    return [v for opt in self._optimizers for v in opt.variables()]


def regularization_loss(variables: Sequence[tf.Variable], l1: float, l2: float) -> tf.Tensor:
  """l1 * sum |w| + l2 * sum w**2 over the weights (is_weight) among `variables`, float32.

  The Keras regularizer convention (no 1/2 factor on L2).
  """
  terms = []
  for v in variables:
    if not is_weight(v):
      continue
    w = tf.cast(v, tf.float32)
    if l1:
      terms.append(l1 * tf.reduce_sum(tf.abs(w)))
    if l2:
      terms.append(l2 * tf.reduce_sum(tf.square(w)))
  return tf.add_n(terms) if terms else tf.constant(0.0)


def clip_by_global_norm(
    grads_and_vars: Sequence[Tuple[Optional[tf.Tensor], tf.Variable]], clip_norm: float
) -> Tuple[List[Tuple[Optional[tf.Tensor], tf.Variable]], tf.Tensor]:
  """Scales all gradients together so their global norm is at most clip_norm.

  The norm is that of the gradient the optimizer applies: a sparse gradient (tf.IndexedSlices,
  from an embedding lookup) has the rows of repeated ids summed first, as the optimizers sum
  them; the norm of its raw rows would count an id looked up twice wrongly.

  Args:
    grads_and_vars: (gradient or None, variable) pairs.
    clip_norm: the bound; 0 leaves the gradients unchanged.

  Returns:
    (clipped pairs, global norm of the gradients before clipping); sparse gradients come back
    with unique indices.
  """
  grads = [_deduplicated(g) for g, _ in grads_and_vars]
  norm = tf.linalg.global_norm([g for g in grads if g is not None])
  if clip_norm > 0:
    grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
  return list(zip(grads, [v for _, v in grads_and_vars])), norm


def _deduplicated(grad):
  """A tf.IndexedSlices with each index once (its rows summed); other gradients as they are."""
  if not isinstance(grad, tf.IndexedSlices):
    return grad
  indices, positions = tf.unique(grad.indices)
  values = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(indices)[0])
  return tf.IndexedSlices(values, indices, grad.dense_shape)


def clip_replica_shares(
    grads_and_vars: Sequence[Tuple[Optional[tf.Tensor], tf.Variable]], clip_norm: float
) -> Tuple[List[Tuple[Optional[tf.Tensor], tf.Variable]], tf.Tensor]:
  """Clips the SUM of the replicas' gradient shares to clip_norm (call in a replica context).

  Under a synchronous strategy each replica's gradient is its share of the step's gradient,
  and the optimizer sums the shares. This all-reduces the shares, takes the global norm of the
  sum (the same on every replica) and scales this replica's share by
  min(1, clip_norm / norm): the shares then sum to the clipped gradient.

  Args:
    grads_and_vars: this replica's (gradient share, variable) pairs, no None gradients.
    clip_norm: the bound (> 0).

  Returns:
    (scaled pairs, global norm of the summed gradient before clipping).
  """
  grads = [g for g, _ in grads_and_vars]
  norm = tf.linalg.global_norm(_all_reduce_sum(grads))
  # tf.clip_by_global_norm's factor: clip_norm / max(norm, clip_norm), NaN for a non-finite norm.
  scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm)
  scaled = [tf.IndexedSlices(g.values * tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
            if isinstance(g, tf.IndexedSlices) else g * tf.cast(scale, g.dtype) for g in grads]
  return list(zip(scaled, [v for _, v in grads_and_vars])), norm


def _all_reduce_sum(values: Sequence[tf.Tensor]) -> List[tf.Tensor]:
  """Every replica's `values` summed over the replicas, on each replica (a replica context).

  ReplicaContext.all_reduce is differentiable through tf.custom_gradient, which in a TF1
  graph looks the replicas' variables up by name and fails on MirroredStrategy's
  "<name>/replica_1"; nothing differentiates through the norm, so the plain batch reduce
  it wraps is used.
  """
  def merge(strategy, *per_replica):
    return strategy.extended.batch_reduce_to(
        tf.distribute.ReduceOp.SUM,
        [(v, v.device if isinstance(v, tf.Tensor) else v) for v in per_replica])
  return list(tf.distribute.get_replica_context().merge_call(merge, args=tuple(values)))
