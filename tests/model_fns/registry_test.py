"""Tests for model_fns/registry.py: every registered model builds with its documented defaults
on every input it claims to read (lingvo style), and unknown names fail helpfully."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import errors
from input_fns import feature_spec as fs
from model_fns import hparams as hparams_lib
from model_fns import layers
from model_fns import registry
from tests.testing import models as mt

# Input shapes the defaults must handle: the embedded 8x8 digits, MNIST-like 28x28 grey and
# CIFAR-like 32x32 colour images, token ids and a numeric vector.
_INPUTS = {
    "digits_8x8x1": mt.IMAGE_SPEC,
    "mnist_28x28x1": fs.image_spec(28, 28, 1, [str(d) for d in range(10)]),
    "cifar_32x32x3": fs.image_spec(32, 32, 3, [str(d) for d in range(10)]),
    "tokens": mt.TOKENS_SPEC,
    "vector": mt.VECTOR_SPEC,
}


def _every_model_and_input():
  for name in registry.names():
    for input_name, spec in _INPUTS.items():
      if spec.kind in registry.get(name).input_kinds:
        yield {"testcase_name": f"{name}_{input_name}", "name": name, "spec": spec}


class RegistryTest(tf.test.TestCase, parameterized.TestCase):

  def test_names(self):
    self.assertEqual(registry.names(), ["dnn", "lenet5", "linear", "resnet", "rnn", "wide_deep"])
    self.assertIn(registry.DEFAULT_MODEL, registry.names())

  def test_names_are_known_without_importing_a_model_or_tensorflow(self):
    # A fresh process: this one imported every model above. --model's help and checks list
    # the names; only get() imports a model's module (and with it TensorFlow).
    script = textwrap.dedent("""\
        import json, sys
        from model_fns import registry
        names, default = registry.names(), registry.DEFAULT_MODEL
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "model_fns"))
        registry.get("linear")
        only_linear = "model_fns.linear" in sys.modules and "model_fns.rnn" not in sys.modules
        print(json.dumps([names, default, loaded, only_linear]))
        """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    names, default, loaded, only_linear = json.loads(proc.stdout.splitlines()[-1])
    self.assertEqual(names, registry.names())
    self.assertEqual(default, registry.DEFAULT_MODEL)
    self.assertEqual(loaded, ["model_fns", "model_fns.registry"])
    self.assertTrue(only_linear)  # get() imports the one module it names

  def test_unknown_name_lists_known_ones(self):
    with self.assertRaises(registry.UnknownModelError) as cm:
      registry.get("vgg")
    self.assertIsInstance(cm.exception, errors.UserInputError)
    self.assertIn("'vgg'", str(cm.exception))
    self.assertIn("dnn, lenet5, linear, resnet, rnn", str(cm.exception))

  @parameterized.named_parameters(*[(n, n) for n in registry.names()])
  def test_entry_is_consistent_and_documented(self, name):
    d = registry.get(name)
    self.assertEqual(d.name, name)
    self.assertTrue(dataclasses.is_dataclass(d.hparams_cls))
    defaults = d.hparams_cls()
    with self.assertRaises(dataclasses.FrozenInstanceError):
      setattr(defaults, dataclasses.fields(defaults)[0].name, None)
    # Every field is documented in the Attributes section (the --hparams help relies on it).
    doc = d.hparams_cls.__doc__ or ""
    for f in dataclasses.fields(d.hparams_cls):
      self.assertRegex(doc, rf"\n\s+{f.name}: \S", f"{name}.HParams.{f.name} is undocumented")
    # Defaults survive the JSON round trip the training app writes beside the checkpoints.
    self.assertEqual(hparams_lib.from_json_dict(d.hparams_cls, hparams_lib.to_json_dict(defaults)),
                     defaults)
    self.assertLen(hparams_lib.describe(d.hparams_cls), len(dataclasses.fields(defaults)))
    self.assertNotEmpty(d.input_kinds)

  @parameterized.named_parameters(*_every_model_and_input())
  def test_builds_with_defaults(self, name, spec):
    d = registry.get(name)
    features, _ = mt.make_batch(spec, 3)
    with tf.Graph().as_default() as g:
      x = tf.compat.v1.placeholder(spec.input_feature.tf_dtype if spec.kind == fs.TOKENS
                                   else tf.float32, [None, *spec.input_feature.shape])
      logits = d.build_logits({spec.input_key: x}, spec, d.hparams_cls(), True)
      self.assertEqual(logits.dtype, tf.float32)
      self.assertEqual(logits.shape.as_list(), [None, spec.num_classes])
      variables = tf.compat.v1.global_variables()
      self.assertNotEmpty(tf.compat.v1.trainable_variables())
      for v in variables:
        # One top-level scope per model, plain names: what checkpoint maps and warm starts key on.
        self.assertRegex(v.op.name, rf"^{name}/[A-Za-z0-9_/]+$")
      self.assertLen({v.op.name for v in variables}, len(variables))
      with self.session(graph=g) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        out = sess.run(logits, {x: features[spec.input_key]})
    self.assertEqual(out.shape, (3, spec.num_classes))
    self.assertTrue(np.all(np.isfinite(out)))

  @parameterized.named_parameters(
      *[(n, n) for n in registry.names()
        if fs.TOKENS not in registry.get(n).input_kinds])
  def test_unsupported_kind_is_a_user_error(self, name):
    d = registry.get(name)
    self.assertFalse(d.supports(mt.TOKENS_SPEC))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(layers.UnsupportedInputError, re.escape(repr(name))):
        d.build_logits({"tokens": tf.zeros([2, 7], tf.int64)}, mt.TOKENS_SPEC,
                       d.hparams_cls(), False)


if __name__ == "__main__":
  tf.test.main()
