"""estimator_app.model_call: a model_fn gets exactly the arguments it declares."""

import tensorflow as tf
from absl.testing import absltest

from estimator_app import model_call

_PREDICT = tf.estimator.ModeKeys.PREDICT


class CallModelFnTest(absltest.TestCase):

  def test_full_signature_gets_every_argument_by_name(self):
    config = tf.estimator.RunConfig()

    def model_fn(features, labels, mode, params, config):
      return dict(features=features, labels=labels, mode=mode, params=params, config=config)

    got = model_call.call_model_fn(model_fn, "f", "l", _PREDICT, {"lr": 0.1}, config)
    self.assertEqual(got, dict(features="f", labels="l", mode=_PREDICT, params={"lr": 0.1},
                               config=config))

  def test_missing_params_become_an_empty_dict_and_config_passes_as_given(self):

    def model_fn(features, mode, params, config):
      return dict(features=features, mode=mode, params=params, config=config)

    self.assertEqual(model_call.call_model_fn(model_fn, "f", "l", _PREDICT),
                     dict(features="f", mode=_PREDICT, params={}, config=None))

  def test_arguments_the_model_fn_does_not_take_are_left_out(self):

    def model_fn(features):
      return features

    self.assertEqual(model_call.call_model_fn(model_fn, "f", "l", _PREDICT, {"x": 1},
                                              tf.estimator.RunConfig()), "f")


if __name__ == "__main__":
  absltest.main()
