"""TrainConfig: the optimization, loss, precision and summary settings shared by all models.

TensorFlow-free, so the training app can define its flags from it (and answer `--help`)
without importing TensorFlow. model_fns/model_fn.py builds the train op from it and
model_fns/optimization.py implements the optimizers and schedules named here; both re-export
these names (`model_fn.TrainConfig`, `optimization.OPTIMIZERS`) for their callers.

Entry points: `TrainConfig`, `TrainConfigError`, `OPTIMIZERS`, `SCHEDULES`, `PRECISIONS`.
"""

import dataclasses
import json
from typing import Any, Sequence, Tuple

from input_fns import errors

# What model_fns/optimization.py builds (create_optimizer, learning_rate).
OPTIMIZERS = ("adagrad", "adam", "adamw", "ftrl", "momentum", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "exponential", "piecewise")
# Training precisions; model_fns/model_fn.py maps the 16-bit ones to Keras mixed policies.
PRECISIONS = ("float32", "float16", "bfloat16")


class TrainConfigError(errors.UserInputError):
  """A TrainConfig field (set from the flag of the same name) has a bad value."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimization, loss, precision, metric and summary settings shared by all models.

  The training app fills it from flags of the same names; defaults are the documented ones.

  Attributes:
    optimizer: one of optimization.OPTIMIZERS: sgd, momentum, adam, adamw (adam with decoupled
      weight decay), rmsprop, adagrad, ftrl (FTRL-Proximal, for sparse linear models). A model
      with optimizer groups (wide_deep) names its own optimizers and base learning rates
      instead; the schedule, clipping and precision below still apply to it.
    learning_rate: base learning rate (> 0).
    lr_schedule: one of optimization.SCHEDULES: constant, exponential, piecewise, cosine (see
      optimization.learning_rate for the formulas).
    warmup_steps: linear learning-rate warm-up over the first steps (any schedule); 0 = none.
    decay_steps: exponential: steps per factor of decay_rate; cosine: the step at which the
      rate reaches its floor (> warmup_steps). 0 (default): the run's train_steps, so the
      schedule spans the run whatever its length (the training app resolves it).
    decay_rate: factor per decay_steps (exponential) or per boundary (piecewise), in (0, 1].
    staircase: exponential decay in whole steps of decay_steps.
    boundaries: piecewise: increasing positive steps at which the rate is multiplied by
      decay_rate.
    min_lr_fraction: cosine: the floor as a fraction of learning_rate, in [0, 1].
    momentum: momentum of the momentum optimizer, in [0, 1).
    nesterov: Nesterov momentum (momentum optimizer).
    beta1: Adam/AdamW first-moment decay, in [0, 1).
    beta2: Adam/AdamW second-moment decay, in [0, 1).
    epsilon: numerical stability term of adam, adamw and rmsprop (> 0).
    rho: RMSProp squared-gradient decay, in [0, 1).
    weight_decay: adamw's decoupled weight decay per unit learning rate (each step
      w <- w - learning_rate(step) * weight_decay * w on the weights); other optimizers ignore
      it (use l2 with them).
    l1: L1 penalty l1 * sum |w| on the weights, added to the loss (>= 0).
    l2: L2 penalty l2 * sum w**2 on the weights, added to the loss (>= 0).
    label_smoothing: mixes the one-hot targets with the uniform distribution, in [0, 1).
    clip_norm: clip the gradients to this global norm; 0 = no clipping.
    precision: float32, float16 (mixed, with dynamic loss scaling) or bfloat16 (mixed).
    top_k: k of the top-k accuracy metric, capped at num_classes - 1 (>= 1).
    summary_images: input images in the training summaries of image datasets (0 = none).
    weight_histograms: add a histogram summary per trainable variable.
    steps_per_run: training steps per session.run (TRAIN mode). With K > 1 the input_fn
      yields K stacked batches [K, B, ...] per element (see `stack_batches`) and the train op
      runs K optimizer steps one after the other, global step + K: the per-step cost of the
      Estimator's hooks and of session.run is paid once per K steps (TPUEstimator's
      iterations_per_loop, Keras's steps_per_execution). Every step is an ordinary step (its
      own batch, learning rate, state updates); the loss, training summaries and hooks see the
      last of the K. Checkpoint, summary and logging cadences must be multiples of K.

  Weights are the trainable variables of rank >= 2 (kernels, embeddings), never biases or
  batch-norm parameters.
  """
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  lr_schedule: str = "constant"
  warmup_steps: int = 0
  decay_steps: int = 0
  decay_rate: float = 0.1
  staircase: bool = False
  boundaries: Tuple[int, ...] = ()
  min_lr_fraction: float = 0.0
  momentum: float = 0.9
  nesterov: bool = False
  beta1: float = 0.9
  beta2: float = 0.999
  epsilon: float = 1e-7
  rho: float = 0.9
  weight_decay: float = 0.01
  l1: float = 0.0
  l2: float = 0.0
  label_smoothing: float = 0.0
  clip_norm: float = 0.0
  precision: str = "float32"
  top_k: int = 5
  summary_images: int = 3
  weight_histograms: bool = False
  steps_per_run: int = 1

  def __post_init__(self):
    object.__setattr__(self, "boundaries", tuple(int(b) for b in self.boundaries))
    _check_choice("optimizer", self.optimizer, OPTIMIZERS)
    _check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
    _check_choice("precision", self.precision, PRECISIONS)
    _check("learning_rate", self.learning_rate, self.learning_rate > 0, "> 0")
    _check("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0")
    _check("decay_steps", self.decay_steps, self.decay_steps >= 0, ">= 0 (0: train_steps)")
    if self.lr_schedule == "cosine" and self.decay_steps:
      _check("decay_steps", self.decay_steps, self.decay_steps > self.warmup_steps,
             f"> warmup_steps ({self.warmup_steps}) for the cosine schedule")
    _check("decay_rate", self.decay_rate, 0 < self.decay_rate <= 1, "in (0, 1]")
    _check("boundaries", list(self.boundaries),
           all(b > 0 for b in self.boundaries) and
           all(a < b for a, b in zip(self.boundaries, self.boundaries[1:])),
           "strictly increasing positive steps")
    if self.lr_schedule == "piecewise":
      _check("boundaries", list(self.boundaries), bool(self.boundaries),
             "at least one step for the piecewise schedule")
    _check("min_lr_fraction", self.min_lr_fraction, 0 <= self.min_lr_fraction <= 1, "in [0, 1]")
    for name in ("momentum", "beta1", "beta2", "rho", "label_smoothing"):
      value = getattr(self, name)
      _check(name, value, 0 <= value < 1, "in [0, 1)")
    _check("epsilon", self.epsilon, self.epsilon > 0, "> 0")
    for name in ("weight_decay", "l1", "l2", "clip_norm"):
      value = getattr(self, name)
      _check(name, value, value >= 0, ">= 0")
    _check("top_k", self.top_k, self.top_k >= 1, ">= 1")
    _check("summary_images", self.summary_images, self.summary_images >= 0, ">= 0")
    _check("steps_per_run", self.steps_per_run, self.steps_per_run >= 1, ">= 1")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
  if not ok:
    raise TrainConfigError(f"--{name}={value!r}: expected {expected}")


def _check_choice(name: str, value: str, known: Sequence[str]) -> None:
  if value not in known:
    raise TrainConfigError(f"--{name}={value!r} is unknown; known: {', '.join(known)}")
