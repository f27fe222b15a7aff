"""The models `--model=NAME` can pick. Adding a model: a file in model_fns/ plus a _MODULES line.

Every model honours one contract:

  build_logits(features, spec, hparams, training) -> float32 logits [B, spec.logits_dimension]

(C for a multiclass label, 1 for a binary or a regression label). It reads
`features[spec.input_key]` (float32 for IMAGE/VECTOR inputs after preprocessing, int64 token
ids [B, T] with 0 = padding for TOKENS) or, for a TABLE, every column by its role through
model_fns/tabular.py (never the label or the example weight), decides from `spec.kind` how to
interpret it, and builds its layers under one top-level name scope equal to its name (variables
`<name>/<layer>/<weight>`, stable for warm starts and checkpoint maps). Batch-norm moving
average updates are in the UPDATE_OPS collection. `training` is True only in TRAIN mode
(dropout, batch statistics). The shared builder in model_fns/model_fn.py turns the logits into
predictions, loss, metrics and EstimatorSpecs, so every model predicts and reports the same
things. Each model's hyperparameters are a frozen dataclass whose field defaults are its
documented defaults; model_fns/hparams.py applies user overrides to it.

Optional hook: a module may define `optimizer_groups(hparams, spec) -> [(variable-name prefix,
optimizer name, base learning rate), ...]` to train parts of the model with their own
optimizers (wide_deep: FTRL on the wide part, Adagrad on the deep part); every trainable
variable must fall in exactly one group. Without it the model trains with TrainConfig's one
optimizer.
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, Optional, Tuple

from input_fns import errors
from input_fns import input_kinds

# Name -> the module that defines the model (NAME, HParams, build_logits, INPUT_KINDS and
# optionally optimizer_groups). A module is imported on the first get() of its name: names()
# (the --model flag's help and checks) needs no model, and so no TensorFlow.
_MODULES = {
    "dnn": "model_fns.dnn",
    "lenet5": "model_fns.lenet5",
    "linear": "model_fns.linear",
    "resnet": "model_fns.resnet",
    "rnn": "model_fns.rnn",
    "wide_deep": "model_fns.wide_deep",
}

DEFAULT_MODEL = "lenet5"


class UnknownModelError(errors.UserInputError):
  """A model name that is not registered."""


@dataclasses.dataclass(frozen=True)
class ModelDef:
  """One registered model.

  Attributes:
    name: the --model name; also the model's top-level variable scope.
    hparams_cls: a frozen dataclass whose field defaults are the model's documented defaults.
    build_logits: (features, spec, hparams, training) -> float32 logits
      [B, spec.logits_dimension].
    input_kinds: the input kinds (feature_spec.IMAGE, TOKENS, VECTOR, TABLE) the model reads.
    optimizer_groups: (hparams, spec) -> [(variable-name prefix, optimizer name, base learning
      rate), ...], or None: the model trains with TrainConfig's optimizer (see the module
      docstring).
  """
  name: str
  hparams_cls: Any
  build_logits: Callable
  input_kinds: Tuple[str, ...] = input_kinds.KINDS
  optimizer_groups: Optional[Callable] = None

  def supports(self, spec) -> bool:
    """Whether the model reads `spec`'s input (a feature_spec.FeatureSpec)."""
    return spec.kind in self.input_kinds


_LOADED: Dict[str, ModelDef] = {}


def names():
  """The registered model names, sorted."""
  return sorted(_MODULES)


def module_name(name: str) -> str:
  """The module that defines model `name`, without importing it.

  Raises:
    UnknownModelError: unknown name; the message lists the known ones.
  """
  if name not in _MODULES:
    raise UnknownModelError(f"unknown model {name!r} (--model); known models: {', '.join(names())}")
  return _MODULES[name]


def get(name: str) -> ModelDef:
  """Returns the model registered as `name`, importing its module the first time.

  Raises:
    UnknownModelError: unknown name; the message lists the known ones.
  """
  if name not in _MODULES:
    raise UnknownModelError(f"unknown model {name!r} (--model); known models: {', '.join(names())}")
  if name not in _LOADED:
    module = importlib.import_module(_MODULES[name])
    _LOADED[name] = ModelDef(module.NAME, module.HParams, module.build_logits, module.INPUT_KINDS,
                             getattr(module, "optimizer_groups", None))
  return _LOADED[name]
