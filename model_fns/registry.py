"""The models `--model=NAME` can pick. Adding a model: one file in model_fns/ plus one line here.

Every model honours one contract:

  build_logits(features, spec, hparams, training) -> float32 logits [B, spec.num_classes]

It reads `features[spec.input_key]` (float32 for IMAGE/VECTOR inputs after preprocessing, int64
token ids [B, T] with 0 = padding for TOKENS), decides from `spec.kind` how to interpret it,
and builds its layers under one top-level name scope equal to its name (variables
`<name>/<layer>/<weight>`, stable for warm starts and checkpoint maps). Batch-norm moving
average updates are in the UPDATE_OPS collection. `training` is True only in TRAIN mode
(dropout, batch statistics). The shared builder in model_fns/model_fn.py turns the logits into
predictions, loss, metrics and EstimatorSpecs, so every model predicts and reports the same
things. Each model's hyperparameters are a frozen dataclass whose field defaults are its
documented defaults; model_fns/hparams.py applies user overrides to it.
"""

import dataclasses
from typing import Any, Callable, Dict, Tuple

from input_fns import errors
from input_fns import feature_spec as fs
from model_fns import dnn
from model_fns import lenet5
from model_fns import linear
from model_fns import resnet
from model_fns import rnn


class UnknownModelError(errors.UserInputError):
  """A model name that is not registered."""


@dataclasses.dataclass(frozen=True)
class ModelDef:
  """One registered model.

  Attributes:
    name: the --model name; also the model's top-level variable scope.
    hparams_cls: a frozen dataclass whose field defaults are the model's documented defaults.
    build_logits: (features, spec, hparams, training) -> float32 logits [B, num_classes].
    input_kinds: the input kinds (feature_spec.IMAGE, TOKENS, VECTOR) the model reads.
  """
  name: str
  hparams_cls: Any
  build_logits: Callable
  input_kinds: Tuple[str, ...] = (fs.IMAGE, fs.VECTOR, fs.TOKENS)

  def supports(self, spec: fs.FeatureSpec) -> bool:
    return spec.kind in self.input_kinds


def _entry(module) -> ModelDef:
  return ModelDef(module.NAME, module.HParams, module.build_logits, module.INPUT_KINDS)


_MODELS: Dict[str, ModelDef] = {d.name: d for d in (
    _entry(linear),
    _entry(dnn),
    _entry(lenet5),
    _entry(resnet),
    _entry(rnn),
)}

DEFAULT_MODEL = "lenet5"


def names():
  """The registered model names, sorted."""
  return sorted(_MODELS)


def get(name: str) -> ModelDef:
  """Returns the model registered as `name`.

  Raises:
    UnknownModelError: unknown name; the message lists the known ones.
  """
  if name not in _MODELS:
    raise UnknownModelError(f"unknown model {name!r} (--model); known models: {', '.join(names())}")
  return _MODELS[name]
