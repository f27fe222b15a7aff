"""Preprocessing presets that compose by name, applied the same way in training, evaluation
and serving (serving and evaluation run them with `training=False`, which turns augmentation off).

A chain is a comma-separated list of preset names, e.g. "scale" or "random_flip,inception".
Each preset maps (features, spec, training) -> features on a whole batch.
"""

from typing import Callable, Dict, Sequence, Tuple

import tensorflow as tf

from input_fns import feature_spec as fs

Preset = Callable[[Dict[str, tf.Tensor], fs.FeatureSpec, bool], Dict[str, tf.Tensor]]


def _with_input(features, spec, value):
  out = dict(features)
  out[spec.input_key] = value
  return out


def _value_range(spec: fs.FeatureSpec) -> Tuple[float, float]:
  return spec.value_range if spec.value_range is not None else (0.0, 255.0)


def scale(features, spec, training):
  """Maps the raw value range linearly to [0, 1] (float32)."""
  del training
  if spec.kind == fs.TOKENS:
    return features
  lo, hi = _value_range(spec)
  x = tf.cast(features[spec.input_key], tf.float32)
  return _with_input(features, spec, (x - lo) / (hi - lo))


_PRESETS: Dict[str, Preset] = {
    "scale": scale,
}


def names() -> Sequence[str]:
  return sorted(_PRESETS)


def parse_chain(chain: str) -> Tuple[str, ...]:
  """Splits and checks a chain such as "random_flip,scale".

  Raises:
    ValueError: naming an unknown preset and listing the known ones.
  """
  steps = tuple(s.strip() for s in chain.split(",") if s.strip())
  for s in steps:
    if s not in _PRESETS:
      raise ValueError(f"unknown preprocessing preset {s!r}; known: {', '.join(names())}")
  return steps


def apply(chain: Sequence[str], features: Dict[str, tf.Tensor], spec: fs.FeatureSpec,
          training: bool) -> Dict[str, tf.Tensor]:
  """Applies the presets in order."""
  for step in chain:
    features = _PRESETS[step](features, spec, training)
  if spec.kind != fs.TOKENS:
    features = _with_input(features, spec, tf.cast(features[spec.input_key], tf.float32))
  return features
