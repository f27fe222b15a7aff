"""Evaluations that reuse one graph and session per eval input, for any tf.estimator.Estimator.

`tf.estimator.Estimator.evaluate` builds a new graph, calls the input_fn and the model_fn,
opens a session and restores the checkpoint, every time. In a run that evaluates every
checkpoint that set-up dominates: on a 784-128-10 dnn with 10,000 eval examples, ~1 s of each
~1.3 s evaluation (docs/performance.md). `enable(estimator)` makes the estimator build the
evaluation graph of each (input_fn, name) pair once, keep its session, and per evaluation only
restore the checkpoint's
variables into it, re-initializes the metric variables and the input iterator, and runs the
batches. What it returns and writes is what `tf.estimator.Estimator.evaluate` returns and writes:
the same metrics dict with `global_step`, the same summaries in `eval_dir(name)` (its own
`_write_dict_to_summary` and `_write_checkpoint_path_to_summary`); tested side by side
(tests/estimator_app/training/reused_eval_test.py).

It falls back to the stock path, for that call only, whenever reuse could differ from it: an
eval distribution strategy, `steps`, evaluation hooks (the caller's or the model's), a model
scaffold with its own saver or init, no checkpoint to restore (the stock path then evaluates
initial values and warm-starts), or an input_fn that does not return a tf.data.Dataset.

`close()` ends the kept sessions (the run loop calls it when training ends).

It is installed on one Estimator instance (its `_actual_eval`, which `evaluate` and
train_and_evaluate's evaluations call) rather than in a subclass: tf.estimator.Estimator refuses
subclasses that override its members.
"""

from typing import Any, Dict, Optional

import tensorflow as tf
from absl import logging
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import
from tensorflow_estimator.python.estimator import estimator as estimator_impl
from tensorflow_estimator.python.estimator import util as estimator_util

_EVAL = tf.estimator.ModeKeys.EVAL
_GLOBAL_STEP = tf.compat.v1.GraphKeys.GLOBAL_STEP


class _EvalGraph:
  """One evaluation graph, its session, and what each evaluation runs."""

  def __init__(self, graph, session, saver, iterator_init, local_init, update_op, values):
    self.graph = graph
    self.session = session
    self.saver = saver
    self.iterator_init = iterator_init
    self.local_init = local_init
    self.update_op = update_op
    self.values = values

  def run(self, checkpoint_path: str) -> Dict[str, Any]:
    with self.graph.as_default():
      return self._run(checkpoint_path)

  def _run(self, checkpoint_path: str) -> Dict[str, Any]:
    self.saver.restore(self.session, checkpoint_path)
    self.session.run([self.local_init, self.iterator_init])
    try:
      while True:
        self.session.run(self.update_op)
    except tf.errors.OutOfRangeError:
      pass
    return self.session.run(self.values)

  def close(self) -> None:
    self.session.close()


class ReusedEvaluations:
  """The kept evaluation graphs of one Estimator (see the module docstring)."""

  def __init__(self, estimator: tf.estimator.Estimator):
    self._estimator = estimator
    self._stock = estimator._actual_eval  # pylint: disable=protected-access
    self._graphs: Dict[Any, Optional[_EvalGraph]] = {}
    self._input_fns = []  # kept alive, so that their id() is not reused by another function

  @property
  def graphs(self) -> int:
    """How many evaluation graphs are kept (with sessions) or known to need the stock path."""
    return len(self._graphs)

  def _actual_eval(self, input_fn, strategy=None, steps=None, hooks=None, checkpoint_path=None,
                   name=None):
    est = self._estimator
    checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(est.model_dir)
    if strategy is not None or steps is not None or hooks or not checkpoint_path:
      return self._stock(input_fn, strategy=strategy, steps=steps, hooks=hooks,
                         checkpoint_path=checkpoint_path, name=name)
    key = (id(input_fn), name)
    if key not in self._graphs:
      self._graphs[key] = self._build_eval_graph(input_fn)
      self._input_fns.append(input_fn)
    cached = self._graphs[key]
    if cached is None:
      return self._stock(input_fn, checkpoint_path=checkpoint_path, name=name)
    results = cached.run(checkpoint_path)
    output_dir = est.eval_dir(name)
    step = results[_GLOBAL_STEP]
    with context.graph_mode():  # the v1 FileWriter these use refuses eager mode
      estimator_impl._write_dict_to_summary(  # pylint: disable=protected-access
          output_dir=output_dir, dictionary=results, current_global_step=step)
      estimator_impl._write_checkpoint_path_to_summary(  # pylint: disable=protected-access
          output_dir=output_dir, checkpoint_path=checkpoint_path, current_global_step=step)
    return results

  def _build_eval_graph(self, input_fn) -> Optional[_EvalGraph]:
    """The graph of one eval input, or None when only the stock path evaluates it right."""
    est = self._estimator
    graph = tf.Graph()
    with graph.as_default():
      tf.compat.v1.random.set_random_seed(est.config.tf_random_seed)
      global_step = est._create_and_assert_global_step(graph)  # pylint: disable=protected-access
      dataset = est._call_input_fn(input_fn, _EVAL)  # pylint: disable=protected-access
      if not isinstance(dataset, tf.data.Dataset):
        logging.debug("evaluations rebuild their graph: the input_fn returns no Dataset")
        return None
      iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
      features, labels = estimator_util.parse_iterator_result(iterator.get_next())
      spec = est._call_model_fn(features, labels, _EVAL, est.config)  # pylint: disable=protected-access
      scaffold = spec.scaffold
      if spec.evaluation_hooks or (scaffold is not None and (
          scaffold.saver is not None or scaffold.init_fn is not None
          or scaffold.init_op is not None or scaffold.local_init_op is not None)):
        logging.debug("evaluations rebuild their graph: the model has evaluation hooks or its "
                      "own scaffold")
        return None
      metric_ops = estimator_impl._verify_and_create_loss_metric(  # pylint: disable=protected-access
          dict(spec.eval_metric_ops or {}), spec.loss)
      update_op, values = estimator_impl._extract_metric_update_ops(  # pylint: disable=protected-access
          metric_ops)
      if _GLOBAL_STEP in values:
        raise ValueError("a metric named `global_step` is not allowed: the Estimator reports "
                         "the global step under that name")
      values[_GLOBAL_STEP] = global_step
      saver = tf.compat.v1.train.Saver(sharded=True, allow_empty=True)
      local_init = tf.compat.v1.local_variables_initializer()
      tables = tf.compat.v1.tables_initializer()
      graph.finalize()
    session = tf.compat.v1.Session(graph=graph, config=est._session_config)  # pylint: disable=protected-access
    session.run(tables)  # once: a table cannot be initialized twice
    return _EvalGraph(graph, session, saver, iterator.initializer, local_init, update_op,
                      values)

  def close(self) -> None:
    """Closes the kept evaluation sessions (the next evaluation builds its graph again)."""
    for cached in self._graphs.values():
      if cached is not None:
        cached.close()
    self._graphs.clear()
    self._input_fns.clear()


_ATTRIBUTE = "_reused_evaluations"


def enable(estimator: tf.estimator.Estimator) -> ReusedEvaluations:
  """Makes `estimator`'s evaluations reuse their graphs; returns what holds them (to close)."""
  reused = ReusedEvaluations(estimator)
  estimator._actual_eval = reused._actual_eval  # pylint: disable=protected-access
  setattr(estimator, _ATTRIBUTE, reused)
  return reused


def close(estimator: tf.estimator.Estimator) -> None:
  """Closes the kept evaluation sessions of `estimator`, if `enable` was called on it."""
  reused = getattr(estimator, _ATTRIBUTE, None)
  if reused is not None:
    reused.close()

