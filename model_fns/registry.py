"""The models `--model=NAME` can pick. Adding a model: one file in model_fns/ plus one line here.

Every model honours one contract: `build_logits(features, spec, hparams, training)` reads the
dataset's input feature (`spec.input_key`) and returns logits [batch, spec.num_classes]; the
shared builder in model_fns/model_fn.py turns them into predictions, loss, metrics and
EstimatorSpecs, so every model predicts and reports the same things.
"""

import dataclasses
from typing import Any, Callable, Dict

from model_fns import dnn


@dataclasses.dataclass(frozen=True)
class ModelDef:
  name: str
  hparams_cls: Any  # a frozen dataclass whose defaults are the model's documented defaults
  build_logits: Callable


_MODELS: Dict[str, ModelDef] = {
    "dnn": ModelDef("dnn", dnn.HParams, dnn.build_logits),
}

DEFAULT_MODEL = "dnn"


def names():
  return sorted(_MODELS)


def get(name: str) -> ModelDef:
  """Returns the model registered as `name`.

  Raises:
    ValueError: unknown name; the message lists the known ones.
  """
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
  return _MODELS[name]
