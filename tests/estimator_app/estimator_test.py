"""What builds an Estimator from a config: the data a run opens, its input_fns, the Estimator."""

import os

import numpy as np
import tensorflow as tf

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from input_fns import feature_spec as fs
from input_fns import manifest as manifest_lib
from input_fns import splits
from input_fns import writer


def _vector_dataset(directory: str, dim: int = 5, n: int = 24) -> manifest_lib.Manifest:
  rng = np.random.default_rng(0)
  spec = fs.vector_spec(dim, ["a", "b"])
  examples = [(splits.TRAIN if i % 4 else splits.EVAL,
               {"vector": rng.random(dim, dtype=np.float32)}, i % 2) for i in range(n)]
  return writer.write_dataset(directory, spec, examples, num_shards=2, source={"format": "test"})


class EstimatorTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tf.compat.v1.test.get_temp_dir()
    cls.digits = os.path.join(root, "digits")
    estimator_lib.load_dataset(cls.digits, create_default=True)
    cls.vectors = os.path.join(root, "vectors")
    _vector_dataset(cls.vectors)

  def _cfg(self, **data):
    return config_lib.from_dict(
        {"model": "dnn", "data": {"data_dir": self.digits, **data},
         "run": {"model_dir": self.create_tempdir().full_path, "train_steps": 40,
                 "save_checkpoints_steps": 20, "quick_eval_steps": 0, "export": False}}, "test")

  def test_load_dataset_writes_the_embedded_digits_once(self):
    directory = os.path.join(self.create_tempdir().full_path, "d")
    with self.assertRaises(manifest_lib.ManifestError):
      estimator_lib.load_dataset(directory, create_default=False)
    first = estimator_lib.load_dataset(directory, create_default=True)
    stamp = os.stat(first.path).st_mtime_ns
    again = estimator_lib.load_dataset(directory, create_default=True)
    self.assertEqual(os.stat(again.path).st_mtime_ns, stamp)  # read, not rewritten
    self.assertEqual(again.count(splits.TRAIN) + again.count(splits.EVAL), 1797)

  def test_open_data_lists_every_directory_once(self):
    data = estimator_lib.open_data(self._cfg(eval_sets=f"again={self.digits}"))
    self.assertEqual(data.directories, [self.digits])
    self.assertEqual(list(data.eval_sets), ["again"])

  def test_open_data_refuses_datasets_that_do_not_fit_together(self):
    with self.assertRaisesRegex(config_lib.ConfigError,
                                f"--train_data {self.vectors} has a different feature spec"):
      estimator_lib.open_data(self._cfg(train_data=self.vectors))
    with self.assertRaisesRegex(config_lib.ConfigError,
                                f"eval set 'v' at {self.vectors} has a different feature spec"):
      estimator_lib.open_data(self._cfg(eval_sets=f"v={self.vectors}"))
    for reserved in (estimator_lib.PRIMARY_EVAL, estimator_lib.QUICK_EVAL):
      with self.assertRaisesRegex(config_lib.ConfigError, f"name '{reserved}' is reserved"):
        estimator_lib.open_data(self._cfg(eval_sets=f"{reserved}={self.digits}"))

  def test_check_trained_spec_names_both_datasets(self):
    cfg = self._cfg()
    estimator_lib.check_trained_spec(cfg, manifest_lib.read(self.digits))  # the same: fine
    with self.assertRaisesRegex(config_lib.ConfigError,
                                f"{self.vectors} has a different feature spec from {self.digits}"):
      estimator_lib.check_trained_spec(cfg, manifest_lib.read(self.vectors))

  def test_spec_mismatch_says_how_the_specs_differ_in_one_line(self):
    with self.assertRaises(config_lib.ConfigError) as cm:
      estimator_lib.check_trained_spec(self._cfg(), manifest_lib.read(self.vectors))
    self.assertEqual(
        str(cm.exception),
        f"{self.vectors} has a different feature spec from {self.digits}, the data this model "
        "was trained on: features added: 'vector'; features removed: 'image'; input_key "
        "'image' -> 'vector'; kind 'image' -> 'vector'; value_range (0.0, 16.0) -> None; "
        "label_names 10 -> 2 classes")
    with self.assertRaisesRegex(config_lib.ConfigError, f"--train_data {self.vectors} .*: "
                                "features added: 'vector'; .*label_names 10 -> 2 classes$"):
      estimator_lib.open_data(self._cfg(train_data=self.vectors))

  def test_ordered_eval_input_reads_every_example_once_in_shard_order(self):
    cfg = self._cfg(eval_batch_size=7)
    m = manifest_lib.read(self.digits)
    labels = []
    for _, y in estimator_lib.eval_input_fn(cfg, m, ordered=True)():
      labels.extend(y.numpy().tolist())
    self.assertLen(labels, m.count(splits.EVAL))
    again = [int(v) for _, y in estimator_lib.eval_input_fn(cfg, m, ordered=True)()
             for v in y.numpy()]
    self.assertEqual(labels, again)

  def test_one_device_estimator_takes_the_config_cadence(self):
    cfg = self._cfg()
    est = estimator_lib.build_estimator(cfg, manifest_lib.read(self.digits).spec)
    self.assertEqual(est.model_dir, cfg.run.model_dir)
    self.assertEqual(est.config.save_checkpoints_steps, 20)
    self.assertEqual(est.config.tf_random_seed, cfg.run.seed)
    self.assertIsNone(est.config.train_distribute)


if __name__ == "__main__":
  tf.test.main()
