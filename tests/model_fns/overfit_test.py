"""Every model learns: with its default hyperparameters, trained by the shared model_fn on one
small fixed batch made here, its training loss falls by at least 90% within MAX_STEPS steps."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from input_fns import feature_spec as fs
from model_fns import model_fn as model_fn_lib
from model_fns import registry
from tests.testing import models as mt

BATCH = 32
MAX_STEPS = 500
CHECK_EVERY = 10


class OverfitTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      *[(f"{n}_{k}", n, k) for n, k in mt.model_kinds((fs.IMAGE, fs.TOKENS))])
  def test_loss_falls_90_percent(self, name, kind):
    spec = mt.SPECS[kind]
    d = registry.get(name)
    features, labels = mt.make_batch(spec, BATCH, seed=7)
    with tf.Graph().as_default():
      tf.compat.v1.set_random_seed(7)
      f, l = mt.to_tensors(features, labels)
      model_fn = model_fn_lib.build_model_fn(d, d.hparams_cls(), spec, model_fn_lib.TrainConfig())
      est = mt.call_model_fn(model_fn, f, l, tf.estimator.ModeKeys.TRAIN)
      with self.session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        initial = sess.run(est.loss)
        loss, step = initial, 0
        while step < MAX_STEPS and loss > 0.1 * initial:
          for _ in range(CHECK_EVERY):
            sess.run(est.train_op)
          step += CHECK_EVERY
          loss = sess.run(est.loss)
    print(f"{name}/{kind}: loss {initial:.3f} -> {loss:.4f} in {step} steps")
    self.assertGreater(initial, 0.5)  # a real starting point: ~log(num_classes)
    self.assertTrue(np.isfinite(loss))
    self.assertLessEqual(loss, 0.1 * initial, f"{name} on {kind}: {initial} -> {loss} "
                                              f"after {step} steps")


if __name__ == "__main__":
  tf.test.main()
