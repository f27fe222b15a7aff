"""Preprocessing presets that compose by name, run identically in training, evaluation and serving.

A chain is a comma-separated list of steps, e.g. "scale" or "random_crop,random_flip,inception";
a step may take an argument after "=", e.g. "resize=32x32" or "random_crop=2". Every preset
works on a whole batch (first dimension, possibly unknown) in graph mode, so the input_fn runs
it once per batch and the serving receiver runs the very same chain on raw request tensors.

| preset         | applies to     | effect                                                      |
|----------------|----------------|-------------------------------------------------------------|
| scale          | image, vector  | raw `spec.value_range` -> [0, 1]                            |
| inception      | image, vector  | raw `spec.value_range` -> [-1, 1]                           |
| standardize    | image, vector  | per example: (x - mean(x)) / max(std(x), 1/sqrt(n)); no    |
|                |                | dataset statistics needed, so serving needs nothing extra  |
| imagenet       | image (1 or 3  | [0, 1], then per channel (x - mean) / std with the ImageNet |
|                | channels)      | RGB statistics (one channel: their averages)                |
| resize=HxW     | image          | bilinear resize to H x W                                    |
| random_crop[=P]| image          | training only: zero-pad P pixels per side (default H/8,    |
|                |                | at least 1), crop back to H x W at a random offset          |
| random_flip    | image          | training only: mirror left-right with probability 1/2      |

`scale`, `inception`, `standardize` and `imagenet` read raw values, so a chain holds at most one
of them. A preset that does not apply to a dataset's kind leaves the features unchanged (so a
TOKENS dataset passes through every preset). With `training=False` the random presets are the
identity. After the chain, image and vector inputs are float32; token inputs stay int64.
"""

import dataclasses
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from input_fns import errors
from input_fns import feature_spec as fs

Features = Dict[str, tf.Tensor]

# ImageNet RGB statistics of pixels scaled to [0, 1]; single-channel images use their mean.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreprocessingError(errors.UserInputError):
  """A preprocessing chain names an unknown preset, a bad argument or an unfit combination."""


@dataclasses.dataclass(frozen=True)
class _Preset:
  """fn(x, spec, arg, seed) -> x on the input feature; seed is None or a [2] int64 tensor."""
  fn: Callable
  kinds: Tuple[str, ...]
  random: bool = False  # augmentation: identity unless training
  normalizes: bool = False  # reads raw values (at most one per chain)
  arg: Optional[str] = None  # argument syntax when the preset takes one, e.g. "HxW"
  arg_required: bool = False


def _value_range(spec: fs.FeatureSpec) -> Tuple[float, float]:
  return spec.value_range if spec.value_range is not None else (0.0, 255.0)


def _to_unit(x, spec):
  lo, hi = _value_range(spec)
  return (tf.cast(x, tf.float32) - lo) / (hi - lo)


def _scale(x, spec, arg, seed):
  del arg, seed
  return _to_unit(x, spec)


def _inception(x, spec, arg, seed):
  del arg, seed
  return _to_unit(x, spec) * 2.0 - 1.0


def _standardize(x, spec, arg, seed):
  del spec, arg, seed
  x = tf.cast(x, tf.float32)
  axes = list(range(1, x.shape.rank))
  mean = tf.reduce_mean(x, axis=axes, keepdims=True)
  std = tf.math.reduce_std(x, axis=axes, keepdims=True)
  n = math.prod(x.shape.as_list()[1:])
  # The floor keeps constant examples (std 0) finite, as tf.image.per_image_standardization does.
  return (x - mean) / tf.maximum(std, 1.0 / math.sqrt(n))


def _imagenet(x, spec, arg, seed):
  del arg, seed
  channels = x.shape[-1]
  if channels == 3:
    mean, std = IMAGENET_MEAN, IMAGENET_STD
  elif channels == 1:
    mean, std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
  else:
    raise PreprocessingError(
        f"preset 'imagenet' needs images with 1 or 3 channels, got {channels} "
        f"(shape {spec.input_feature.shape}); use 'standardize' or 'scale' instead")
  return (_to_unit(x, spec) - tf.constant(mean)) / tf.constant(std)


def _parse_size(arg: str) -> Tuple[int, int]:
  try:
    h, w = (int(v) for v in arg.lower().split("x"))
  except ValueError:
    raise PreprocessingError(f"preset 'resize={arg}': expected HxW, e.g. resize=32x32") from None
  if h < 1 or w < 1:
    raise PreprocessingError(f"preset 'resize={arg}': sizes must be positive")
  return h, w


def _resize(x, spec, arg, seed):
  del spec, seed
  return tf.image.resize(tf.cast(x, tf.float32), _parse_size(arg), method="bilinear")


def _crop_pad(arg: Optional[str], height: int) -> int:
  if arg is None:
    return max(1, round(height / 8))
  try:
    pad = int(arg)
  except ValueError:
    pad = -1
  if pad < 0:
    raise PreprocessingError(f"preset 'random_crop={arg}': expected a padding >= 0 in pixels")
  return pad


def _uniform_ints(shape, maxval, seed, salt):
  """Random ints in [0, maxval): stateless when seeded, so parallel maps stay reproducible."""
  if seed is None:
    return tf.random.uniform(shape, 0, maxval, dtype=tf.int32)
  seed = tf.random.experimental.stateless_fold_in(seed, salt)
  return tf.random.stateless_uniform(shape, seed, 0, maxval, dtype=tf.int32)


def _random_crop(x, spec, arg, seed):
  del spec
  height, width = x.shape[1], x.shape[2]
  pad = _crop_pad(arg, height)
  if pad == 0:
    return x
  padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  batch = tf.shape(x)[0]
  # One offset per example, applied with two batched gathers instead of a per-example map.
  dy = _uniform_ints([batch, 1], 2 * pad + 1, seed, 1)
  dx = _uniform_ints([batch, 1], 2 * pad + 1, seed, 2)
  rows = dy + tf.range(height)[tf.newaxis, :]
  cols = dx + tf.range(width)[tf.newaxis, :]
  out = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(out, cols, axis=2, batch_dims=1)


def _random_flip(x, spec, arg, seed):
  del spec, arg
  flip = _uniform_ints([tf.shape(x)[0]], 2, seed, 3) > 0
  return tf.where(flip[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(x, axis=[2]), x)


_NUMERIC = (fs.IMAGE, fs.VECTOR)
_PRESETS: Dict[str, _Preset] = {
    "scale": _Preset(_scale, _NUMERIC, normalizes=True),
    "inception": _Preset(_inception, _NUMERIC, normalizes=True),
    "standardize": _Preset(_standardize, _NUMERIC, normalizes=True),
    "imagenet": _Preset(_imagenet, (fs.IMAGE,), normalizes=True),
    "resize": _Preset(_resize, (fs.IMAGE,), arg="HxW", arg_required=True),
    "random_crop": _Preset(_random_crop, (fs.IMAGE,), random=True, arg="PAD"),
    "random_flip": _Preset(_random_flip, (fs.IMAGE,), random=True),
}


def names() -> Sequence[str]:
  """The known preset names, sorted."""
  return sorted(_PRESETS)


def _split_step(step: str) -> Tuple[str, Optional[str]]:
  """"resize=32x32" -> ("resize", "32x32"); checks the name and whether it takes an argument."""
  name, sep, arg = step.strip().partition("=")
  name = name.strip()
  if name not in _PRESETS:
    raise PreprocessingError(f"unknown preprocessing preset {name!r}; known: {', '.join(names())}")
  preset = _PRESETS[name]
  if sep and preset.arg is None:
    raise PreprocessingError(f"preset {name!r} takes no argument, got {step.strip()!r}")
  if not sep and preset.arg_required:
    raise PreprocessingError(f"preset {name!r} needs an argument: {name}={preset.arg}")
  return name, (arg.strip() if sep else None)


def parse_chain(chain: str) -> Tuple[str, ...]:
  """Splits and checks a chain such as "random_flip,scale" (empty string: no presets).

  Args:
    chain: comma-separated steps, each a preset name with an optional "=argument".

  Returns:
    The steps, stripped, in order.

  Raises:
    PreprocessingError: an unknown preset (the message lists the known ones), a bad argument,
      or more than one value-normalizing preset.
  """
  steps = tuple(s.strip() for s in chain.split(",") if s.strip())
  check(steps)
  return steps


def check(chain: Sequence[str]) -> None:
  """Validates a parsed chain without building anything.

  Raises:
    PreprocessingError: as parse_chain.
  """
  normalizers = []
  for step in chain:
    name, arg = _split_step(step)
    if _PRESETS[name].normalizes:
      normalizers.append(name)
    if name == "resize":
      _parse_size(arg)
    if name == "random_crop" and arg is not None:
      _crop_pad(arg, 8)
  if len(normalizers) > 1:
    raise PreprocessingError(
        f"preprocessing chain {','.join(chain)!r} has {len(normalizers)} value-normalizing presets "
        f"({', '.join(normalizers)}); each reads raw values, so use one")


def is_random(step: str) -> bool:
  """Whether a step is an augmentation (identity unless training)."""
  return _PRESETS[_split_step(step)[0]].random


def apply(chain: Sequence[str], features: Features, spec: fs.FeatureSpec, training: bool,
          seed: Optional[tf.Tensor] = None) -> Features:
  """Applies the steps of `chain` in order to a batch, then casts numeric inputs to float32.

  Args:
    chain: steps as returned by parse_chain (a tuple of strings).
    features: feature name -> batched tensor [batch, ...] (batch may be unknown); only
      `features[spec.input_key]` is changed.
    spec: the dataset's feature spec (kind, value_range).
    training: False turns augmentation off (evaluation and serving).
    seed: optional [2] int64 tensor; when given, augmentation uses stateless random ops
      seeded from it, so a seeded input pipeline is reproducible even with parallel maps.

  Returns:
    A new features dict.

  Raises:
    PreprocessingError: the chain is malformed or a preset does not fit the input's shape.
  """
  check(chain)
  if spec.kind == fs.TABLE:
    # No preset reads a table (as "scale" skips token ids): its columns are normalized,
    # looked up and hashed inside the model by their analyzed statistics (model_fns/tabular.py).
    return dict(features)
  x = features[spec.input_key]
  for i, step in enumerate(chain):
    name, arg = _split_step(step)
    preset = _PRESETS[name]
    if spec.kind not in preset.kinds or (preset.random and not training):
      continue
    step_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)
    x = preset.fn(x, spec, arg, step_seed)
  if spec.kind != fs.TOKENS:
    x = tf.cast(x, tf.float32)
  out = dict(features)
  out[spec.input_key] = x
  return out
