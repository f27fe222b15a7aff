"""Calls an Estimator model_fn outside an Estimator, the way the Estimator itself calls it.

Building a model's graph without an Estimator (the serving graph of an export, the scratch
graph that lists a model's variables for a warm start) must pass a model_fn exactly the
arguments it declares, as `tf.estimator.Estimator._call_model_fn` does: `features` always,
`labels`, `mode`, `params` and `config` only when the model_fn takes them.
"""

import inspect
from typing import Any, Callable, Optional

import tensorflow as tf


def call_model_fn(model_fn: Callable[..., Any], features: Any, labels: Any, mode: str,
                  params: Optional[dict] = None,
                  config: Optional[tf.estimator.RunConfig] = None) -> Any:
  """Calls `model_fn` with only the arguments it takes.

  Args:
    model_fn: an Estimator model_fn, `(features, labels, mode, params, config)` or any of
      their subsets that includes `features`.
    features: the features tensor or dict of tensors.
    labels: the labels (None when there are none), passed if it takes `labels`.
    mode: a `tf.estimator.ModeKeys` value, passed if it takes `mode`.
    params: passed (None as {}) if it takes `params`.
    config: passed as given if it takes `config`.

  Returns:
    What `model_fn` returns (an EstimatorSpec).
  """
  args = inspect.signature(model_fn).parameters
  kwargs = {"features": features}
  if "labels" in args:
    kwargs["labels"] = labels
  if "mode" in args:
    kwargs["mode"] = mode
  if "params" in args:
    kwargs["params"] = params or {}
  if "config" in args:
    kwargs["config"] = config
  return model_fn(**kwargs)
