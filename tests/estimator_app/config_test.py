"""ExperimentConfig: precedence, JSON round trip, clear errors, resume checks."""

import json
import os

import tensorflow as tf
from absl.testing import parameterized

from estimator_app import config as config_lib


class ConfigTest(tf.test.TestCase, parameterized.TestCase):

  def _write(self, content):
    path = os.path.join(self.create_tempdir().full_path, "exp.json")
    with open(path, "w") as f:
      f.write(content if isinstance(content, str) else json.dumps(content))
    return path

  def test_file_overrides_defaults_and_json_round_trips(self):
    path = self._write({"model": "dnn", "hparams": {"hidden_units": [32, 16]},
                        "optimization": {"learning_rate": 0.5},
                        "data": {"batch_size": 7}, "run": {"train_steps": 11}})
    cfg = config_lib.load_file(path)
    self.assertEqual(cfg.hparams.hidden_units, (32, 16))
    self.assertEqual(cfg.optimization.learning_rate, 0.5)
    self.assertEqual((cfg.data.batch_size, cfg.run.train_steps), (7, 11))
    self.assertEqual(cfg.data.eval_batch_size, config_lib.DataConfig().eval_batch_size)
    again = config_lib.from_dict(json.loads(cfg.to_json()), "round trip")
    self.assertEqual(again, cfg)

  def test_hparams_override_model_then_optimization(self):
    cfg = config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"),
                                   "hidden_units=[8],learning_rate=0.25")
    self.assertEqual(cfg.hparams.hidden_units, (8,))
    self.assertEqual(cfg.optimization.learning_rate, 0.25)

  @parameterized.named_parameters(
      ("not_json", "{not json", r"is not valid JSON: .* line 1"),
      ("unknown_section", {"runs": {}}, r"unknown section\(s\) \['runs'\]"),
      ("unknown_key", {"data": {"batchsize": 3}}, r"\[data\].*batchsize.*unknown key"),
      ("wrong_type", {"run": {"train_steps": "many"}}, r"\[run\].*train_steps.*expected int"),
      ("unknown_model", {"model": "nope"}, r"unknown model 'nope'"),
      ("section_not_object", {"run": [1]}, r"section 'run' must be a JSON object"),
  )
  def test_bad_config_file_names_file_and_key(self, content, message):
    path = self._write(content)
    with self.assertRaisesRegex(config_lib.ConfigError, f"config file {path}.*{message}"):
      config_lib.load_file(path)

  def test_missing_config_file(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "does not exist"):
      config_lib.load_file("/nonexistent/exp.json")

  def test_bad_hparam(self):
    with self.assertRaisesRegex(config_lib.ConfigError, r"unknown key\(s\) \['depth'\] for model 'dnn'"):
      config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"), "depth=3")
    with self.assertRaisesRegex(config_lib.ConfigError, "--hparams.*dropout.*expected float"):
      config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"), "dropout=lots")

  def test_resume_refuses_other_architecture(self):
    base = config_lib.ExperimentConfig(model="dnn")
    config_lib.check_resumable(base, base)  # same architecture: fine
    changed = config_lib.apply_hparams(base, "hidden_units=[5]")
    with self.assertRaisesRegex(config_lib.ConfigError, r"different architecture \(hidden_units"):
      config_lib.check_resumable(base, changed)
    # Optimization changes are not architecture changes.
    config_lib.check_resumable(base, config_lib.apply_hparams(base, "learning_rate=0.5"))

  def test_example_experiments_in_docs_load(self):
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "experiments")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    self.assertNotEmpty(names)
    for name in names:
      cfg = config_lib.load_file(os.path.join(folder, name))
      with open(os.path.join(folder, name)) as f:
        self.assertEqual(cfg.model, json.load(f).get("model", cfg.model), name)

  def test_paths_resolve_against_working_directory(self):
    cfg = config_lib.from_dict(
        {"data": {"data_dir": "d", "train_data": "a:0.7,gs://b/c:0.3", "eval_sets": "x=e"},
         "run": {"model_dir": "m"}}, "test")
    cfg = config_lib.with_resolved_paths(cfg, "/work")
    self.assertEqual(cfg.data.data_dir, "/work/d")
    self.assertEqual(cfg.data.train_data, "/work/a:0.7,gs://b/c:0.3")
    self.assertEqual(cfg.data.eval_sets, "x=/work/e")
    self.assertEqual(cfg.run.model_dir, "/work/m")


if __name__ == "__main__":
  tf.test.main()
