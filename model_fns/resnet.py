"""`resnet`: a small pre-activation ResNet (He et al., "Identity Mappings in Deep Residual
Networks", 2016), CIFAR-style.

stem conv 3x3 -> `num_stages` stages of basic blocks -> batch norm -> ReLU -> global average
pool -> logits. Stage s has base_filters * 2**s channels; every stage after the first starts
with a stride-2 block. A pre-activation basic block is
    y = x + conv3x3(relu(bn(conv3x3(relu(bn(x))))))
with a 1x1 projection shortcut (taken from relu(bn(x))) where the shape changes.

depth counts the weighted layers on the main path: depth = 2 * num_stages * blocks + 2, so
with 3 stages depth is 8, 14, 20 (ResNet-20), 32, 56, ...; 'same' padding throughout, so
28x28/32x32 inputs end at 7x7/8x8 and the 8x8 digits at 2x2 after three stages.

Variables: resnet/stem_conv/kernel, resnet/stage_<s>/block_<b>/{bn_1,conv_1,bn_2,conv_2,
shortcut}/..., resnet/final_bn/..., resnet/logits/{kernel,bias}.
"""

import dataclasses

import tensorflow as tf

from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers

NAME = "resnet"
INPUT_KINDS = (fs.IMAGE,)


@dataclasses.dataclass(frozen=True)
class HParams:
  """Hyperparameters of `resnet`.

  Attributes:
    depth: weighted layers on the main path; (depth - 2) must be a multiple of 2 * num_stages.
    num_stages: stages of residual blocks; each one after the first halves the resolution
      and doubles the channels.
    base_filters: channels of the stem and the first stage.
    batch_norm_momentum: decay of the batch-norm moving averages.
    batch_norm_epsilon: added to the batch variance.
    dropout: dropout rate before the logits layer, in [0, 1) (training only).
  """
  depth: int = 14
  num_stages: int = 3
  base_filters: int = 16
  batch_norm_momentum: float = 0.99
  batch_norm_epsilon: float = 1e-3
  dropout: float = 0.0

  def __post_init__(self):
    hparams_lib.check(HParams, "num_stages", self.num_stages, self.num_stages >= 1, ">= 1")
    per_block = 2 * self.num_stages
    hparams_lib.check(
        HParams, "depth", self.depth,
        self.depth >= 2 + per_block and (self.depth - 2) % per_block == 0,
        f"2 + a positive multiple of {per_block} (2 * num_stages), e.g. "
        f"{', '.join(str(2 + per_block * k) for k in (1, 2, 3))}")
    hparams_lib.check(HParams, "base_filters", self.base_filters, self.base_filters >= 1, ">= 1")
    hparams_lib.check(HParams, "batch_norm_momentum", self.batch_norm_momentum,
                      0.0 <= self.batch_norm_momentum < 1.0, "a decay in [0, 1)")
    hparams_lib.check(HParams, "batch_norm_epsilon", self.batch_norm_epsilon,
                      self.batch_norm_epsilon > 0, "> 0")
    hparams_lib.check(HParams, "dropout", self.dropout, 0.0 <= self.dropout < 1.0, "a rate in [0, 1)")

  @property
  def blocks_per_stage(self) -> int:
    return (self.depth - 2) // (2 * self.num_stages)


def _conv(filters: int, kernel: int, stride: int, name: str):
  # No bias: every convolution is followed by batch norm (or the block's sum, then one).
  return tf.keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                kernel_initializer="he_normal", name=name)


def _block(x: tf.Tensor, filters: int, stride: int, hp: HParams, training: bool) -> tf.Tensor:
  """One pre-activation basic block, inside the caller's name scope."""
  bn = lambda t, name: tf.nn.relu(layers.batch_norm(
      t, training, name, hp.batch_norm_momentum, hp.batch_norm_epsilon))
  pre = bn(x, "bn_1")
  if stride != 1 or int(x.shape[-1]) != filters:
    shortcut = _conv(filters, 1, stride, "shortcut")(pre)
  else:
    shortcut = x
  y = _conv(filters, 3, stride, "conv_1")(pre)
  y = _conv(filters, 3, 1, "conv_2")(bn(y, "bn_2"))
  return shortcut + y


def build_logits(features, spec: fs.FeatureSpec, hp: HParams, training: bool) -> tf.Tensor:
  """Returns float32 logits [B, spec.num_classes] (see the model contract in registry.py)."""
  with tf.name_scope(NAME):
    x = layers.image_input(NAME, features, spec)
    x = _conv(hp.base_filters, 3, 1, "stem_conv")(x)
    for s in range(hp.num_stages):
      with tf.name_scope(f"stage_{s}"):  # entered once: a second entry would be stage_<s>_1
        for b in range(hp.blocks_per_stage):
          with tf.name_scope(f"block_{b}"):
            x = _block(x, hp.base_filters * 2**s, 2 if (s > 0 and b == 0) else 1, hp, training)
    x = tf.nn.relu(layers.batch_norm(x, training, "final_bn", hp.batch_norm_momentum,
                                     hp.batch_norm_epsilon))
    x = tf.reduce_mean(x, axis=[1, 2], name="global_pool")
    if hp.dropout > 0:
      x = tf.keras.layers.Dropout(hp.dropout, name="dropout")(x, training=training)
    return layers.output_logits(x, spec)
