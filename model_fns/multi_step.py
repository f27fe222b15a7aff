"""steps_per_run K: K training steps in one session.run, on K stacked batches.

With TrainConfig.steps_per_run K > 1 the per-step cost of the Estimator's hooks and of
session.run is paid once per K steps (TPUEstimator's iterations_per_loop, Keras's
steps_per_execution). Two halves make it:

  input   `stacked_input_fn` / `stack_batches`: the training input_fn yields K batches per
          element, [K, B, ...], dealt to a pipeline's replicas as K one-step runs would be.
  graph   `chain_steps`: the model_fn builds K ordinary steps one after the other (each its
          own batch, learning rate, state updates and global step + 1), step i > 0 under the
          name scope "step_<i>" and after step i - 1's train op. `SharedVariables` makes every
          build of the model reuse the first build's variables, so a K-step graph holds exactly
          the variables (and checkpoint names) of a one-step graph.

With K = 1 both are the identity: the input_fn is returned as it is and the one step is built
at the top level with no variable creator.
"""

import contextlib
import re
from typing import Any, Callable, List, Optional, Tuple

import tensorflow as tf


class SharedVariables:
  """A variable creator under which later builds of a model reuse the first build's variables.

  tf.keras layers create new variables every time a model's build_logits runs; steps_per_run
  builds the model once per step. Under this creator the first build creates (and records)
  its variables, and every later build gets the recorded ones back in creation order, so all
  builds share one set of weights with the first build's names: checkpoints stay exactly those
  of a one-step graph. Use it with `tf.variable_creator_scope(shared)` around one build.

  Attributes:
    variables: the variables the first build created, in creation order.
  """

  def __init__(self):
    self.variables: List[tf.Variable] = []
    self._next = None  # None while the first build records

  @property
  def replaying(self) -> bool:
    """True once `replay` was called: builds get the recorded variables back."""
    return self._next is not None

  def replay(self) -> None:
    """Later builds get the recorded variables, starting again from the first."""
    self._next = 0

  def __call__(self, next_creator, **kwargs):
    """The variable creator (see tf.variable_creator_scope).

    Raises:
      ValueError: a replaying build asks for more variables than the first build created, or
        for one under another name than the first build's variable in its place.
    """
    if self._next is None:
      variable = next_creator(**kwargs)
      self.variables.append(variable)
      return variable
    name = str(kwargs.get("name") or "").rsplit("/", 1)[-1]
    if self._next >= len(self.variables):
      raise ValueError(f"a later build of the model created more variables than the first "
                       f"(an extra {name!r}); build_logits must build the same layers each call")
    variable = self.variables[self._next]
    # (Under a MirroredStrategy a replica's variables are named <name>/replica_<i>.)
    recorded = re.sub(r"/replica_\d+$", "", variable.op.name).rsplit("/", 1)[-1]
    if name and recorded != name:
      raise ValueError(f"a later build of the model created {name!r} where the first created "
                       f"{variable.op.name!r}; build_logits must build the same layers each call")
    self._next += 1
    return variable


def stack_batches(dataset: tf.data.Dataset, steps_per_run: int,
                  replicas: int = 1) -> tf.data.Dataset:
  """The training dataset for steps_per_run K: each element is K batches, [K, B, ...].

  Args:
    dataset: one (features, labels) batch per element.
    steps_per_run: K.
    replicas: replicas this input pipeline feeds (input_context.num_replicas_in_sync /
      num_input_pipelines). A distribution strategy deals consecutive elements of a pipeline
      to its replicas in turn (step t of a one-step run: replica r gets batch t * R + r), so
      the K batches of replica r are taken in the same turn: r, r + R, ..., and a K-step run
      trains on exactly the batches K one-step runs would.

  Returns:
    `dataset` itself for K = 1; otherwise the stacked dataset, prefetching one element.

  With K > 1 every batch must have the same size (the training input_fn repeats forever, so
  only a finite dataset loses its last < K * replicas batches).
  """
  if steps_per_run == 1:
    return dataset
  if replicas == 1:
    return dataset.batch(steps_per_run, drop_remainder=True).prefetch(1)

  def per_replica(t):  # [K * R, B, ...] in dealing order -> [R, K, B, ...]
    split = tf.reshape(t, tf.concat([[steps_per_run, replicas], tf.shape(t)[1:]], 0))
    out = tf.transpose(split, [1, 0] + list(range(2, t.shape.rank + 1)))
    out.set_shape([replicas, steps_per_run] + t.shape[1:].as_list())
    return out

  grouped = dataset.batch(steps_per_run * replicas, drop_remainder=True)
  # Plain graph code: AutoGraph's conversion would only cost set-up time.
  stack = tf.autograph.experimental.do_not_convert(
      lambda *e: tf.nest.map_structure(per_replica, e))
  return grouped.map(stack).unbatch().prefetch(1)


def stacked_input_fn(input_fn: Callable[..., tf.data.Dataset], steps_per_run: int):
  """A training input_fn(input_context=None) for steps_per_run K: `input_fn`'s batches, K
  per element (stack_batches, dealt to this pipeline's replicas as one-step runs would be)."""
  if steps_per_run == 1:
    return input_fn

  def stacked(input_context=None):
    replicas = 1
    if input_context is not None:
      replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return stack_batches(input_fn(input_context), steps_per_run, replicas)
  return stacked


def _step_slice(features, labels, i: int, steps_per_run: int):
  """Batch i of K stacked training batches."""
  def take(name, t):
    if not isinstance(t, tf.Tensor) or t.shape.rank is None or t.shape.rank < 1:
      raise ValueError(f"steps_per_run={steps_per_run} needs dense stacked batches [K, B, ...] "
                       f"from the training input_fn (model_fn.stack_batches); {name!r} is {t!r}")
    return t[i]
  return ({k: take(k, v) for k, v in features.items()},
          None if labels is None else take("labels", labels))


StepFn = Callable[[Any, Any, Optional[SharedVariables]], Tuple[tf.Operation, Any]]


def chain_steps(features, labels, steps_per_run: int,
                build_step: StepFn) -> Tuple[tf.Operation, Any]:
  """Builds K = steps_per_run training steps, each on its own batch, one after the other.

  Args:
    features: the TRAIN features: a dict of Tensors, K > 1: stacked [K, B, ...].
    labels: the TRAIN labels (or None), K > 1: stacked [K, B] (or [K, B, 1]).
    steps_per_run: K.
    build_step: build_step(features, labels, shared) -> (train_op, outputs) builds one step
      on one batch: its model build must run under `tf.variable_creator_scope(shared)` when
      `shared` (a SharedVariables, K > 1) is not None. Its train op must count the step.

  Returns:
    (the last step's train op, which runs after all the others; its outputs).

  Raises:
    ValueError: K > 1 and a feature or the labels are not a dense Tensor of rank >= 1;
      a later build of the model does not build the first build's variables.
  """
  shared = SharedVariables() if steps_per_run > 1 else None
  train_op, outputs = None, None
  for i in range(steps_per_run):
    after_previous = tf.control_dependencies([train_op] if train_op is not None else [])
    # Step 0 builds at the top level, so variables and optimizer slots get the names a
    # one-step graph gives them; later steps only add ops.
    scope = tf.name_scope(f"step_{i}") if i else contextlib.nullcontext()
    with after_previous, scope:
      batch, batch_labels = ((features, labels) if steps_per_run == 1 else
                             _step_slice(features, labels, i, steps_per_run))
      train_op, outputs = build_step(batch, batch_labels, shared)
    if shared is not None:
      shared.replay()
  return train_op, outputs
