"""Publishing versions to GCS, against the real gcp-storage-emulator on 127.0.0.1."""

import datetime
import os
import tempfile
from unittest import mock

import tensorflow as tf
from absl.testing import absltest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from estimator_app.serving import export
from estimator_app.serving import publish
from tests.testing import serving as test_serving


class PublishTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.emulator = test_serving.GcsEmulator().__enter__()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.m = test_serving.write_digits(os.path.join(root, "data"))
    cls.model = test_serving.serving_model("dnn", cls.m)
    _, cls.ckpt = test_serving.train(cls.model, cls.m, os.path.join(root, "dnn"), steps=10)
    cls.examples = export.read_examples(cls.m, "eval", 8)
    # A real local model base with versions 1 and 2 (2 carries a validation report).
    cls.local = os.path.join(root, "exports", "digits")
    opts = export.ExportOptions(model_name="digits", warmup_examples=2, validate_examples=0)
    export.export_version(cls.local, cls.model, cls.ckpt, cls.examples, opts)
    export.export_version(cls.local, cls.model, cls.ckpt, cls.examples,
                          export.ExportOptions(model_name="digits", warmup_examples=2,
                                               validate_examples=4))

  @classmethod
  def tearDownClass(cls):
    cls.emulator.__exit__(None, None, None)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    env = mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": self.emulator.url})
    env.start()
    self.addCleanup(env.stop)
    self.client = storage.Client(project="test", credentials=AnonymousCredentials())
    # A fresh bucket per test: nothing is shared between tests.
    self.bucket = self.client.create_bucket(f"b-{self.id().rsplit('.', 1)[-1].replace('_', '-')[:50]}")
    self.uri = f"gs://{self.bucket.name}/models/digits"

  def _names(self, prefix="models/digits/"):
    return sorted(b.name for b in self.client.list_blobs(self.bucket.name, prefix=prefix))

  def _local_files(self, version):
    root = os.path.join(self.local, str(version))
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)

  def test_publish_preserves_the_version_layout(self):
    self.assertEqual(publish.publish(self.local, self.uri, self.client), [1, 2])
    self.assertEqual(publish.list_versions(self.uri, self.client), {1: True, 2: True})
    names = self._names()
    for v in (1, 2):
      self.assertEqual(sorted(n[len(f"models/digits/{v}/"):] for n in names
                              if n.startswith(f"models/digits/{v}/")), self._local_files(v))
    self.assertIn("models/digits/2.validation.json", names)
    self.assertFalse([n for n in names if ".staging-" in n])
    # What TF Serving would load from GCS is byte-identical: download and serve it.
    down = self.create_tempdir().full_path
    for blob in self.client.list_blobs(self.bucket.name, prefix="models/digits/2/"):
      path = os.path.join(down, blob.name[len("models/digits/2/"):])
      os.makedirs(os.path.dirname(path), exist_ok=True)
      blob.download_to_filename(path)
    loaded = tf.saved_model.load(down)
    self.assertCountEqual(loaded.signatures, export.SIGNATURES)
    self.assertEqual(export.read_metadata(down)["model_name"], "digits")

  def test_republishing_is_a_no_op_and_versions_are_immutable(self):
    publish.publish(self.local, self.uri, self.client, versions=[1])
    generations = {b.name: b.generation for b in self.client.list_blobs(self.bucket.name)}
    self.assertEqual(publish.publish(self.local, self.uri, self.client, versions=[1]), [1])
    self.assertEqual({b.name: b.generation for b in self.client.list_blobs(self.bucket.name)},
                     generations)
    with self.assertRaisesRegex(publish.PublishError, r"digits/1 already exists with different"):
      publish.publish_version(os.path.join(self.local, "2"), self.uri, 1, self.client)
    with self.assertRaisesRegex(publish.PublishError, r"version 7 is not in"):
      publish.publish(self.local, self.uri, self.client, versions=[7])

  def test_saved_model_pb_is_the_last_object_to_appear(self):
    copied = []
    real_copy = storage.Bucket.copy_blob

    def spy(bucket, blob, dest_bucket, new_name, **kwargs):
      # At each copy, what a TF Serving poll would list under the version prefix.
      copied.append((new_name, publish.list_versions(self.uri, self.client).get(1)))
      return real_copy(bucket, blob, dest_bucket, new_name, **kwargs)

    with mock.patch.object(storage.Bucket, "copy_blob", spy):
      publish.publish_version(os.path.join(self.local, "1"), self.uri, 1, self.client)
    self.assertEqual(copied[-1][0], "models/digits/1/saved_model.pb")
    self.assertLen(copied, len(self._local_files(1)))
    # Before the last copy the version never had a saved_model.pb: never loadable half-done.
    self.assertTrue(all(complete in (None, False) for _, complete in copied))
    self.assertEqual(publish.list_versions(self.uri, self.client), {1: True})

  def test_interrupted_publish_is_incomplete_then_repaired(self):
    real_copy = storage.Bucket.copy_blob
    calls = []

    def failing(bucket, blob, dest_bucket, new_name, **kwargs):
      calls.append(new_name)
      if len(calls) == 3:
        raise ConnectionError("network down")
      return real_copy(bucket, blob, dest_bucket, new_name, **kwargs)

    with mock.patch.object(storage.Bucket, "copy_blob", failing):
      with self.assertRaises(ConnectionError):
        publish.publish_version(os.path.join(self.local, "1"), self.uri, 1, self.client)
    self.assertEqual(publish.list_versions(self.uri, self.client), {1: False})
    self.assertNotIn("models/digits/1/saved_model.pb", self._names())
    self.assertFalse([n for n in self._names() if ".staging-" in n])
    publish.publish_version(os.path.join(self.local, "1"), self.uri, 1, self.client)
    self.assertEqual(publish.list_versions(self.uri, self.client), {1: True})
    self.assertEqual(sorted(n[len("models/digits/1/"):] for n in self._names("models/digits/1/")),
                     self._local_files(1))

  def test_stale_staging_is_removed(self):
    self.bucket.blob("models/digits/.staging-5-dead/variables/x").upload_from_string(b"x")
    publish.publish_version(os.path.join(self.local, "1"), self.uri, 1, self.client)
    self.assertIn("models/digits/.staging-5-dead/variables/x", self._names())  # may be live
    with mock.patch.object(publish, "_STALE_STAGING", datetime.timedelta(0)):
      publish.publish_version(os.path.join(self.local, "1"), self.uri, 1, self.client)
    self.assertFalse([n for n in self._names() if ".staging-" in n])

  def test_delete_version_and_read_text(self):
    publish.publish(self.local, self.uri, self.client)
    self.assertIn('"model_name": "digits"',
                  publish.read_text(self.uri, "1/assets.extra/export_metadata.json", self.client))
    self.assertIsNone(publish.read_text(self.uri, "9/nothing", self.client))
    publish.delete_version(self.uri, 2, self.client)
    self.assertEqual(publish.list_versions(self.uri, self.client), {1: True})
    self.assertFalse([n for n in self._names() if n.startswith("models/digits/2")])

  def test_export_straight_to_a_gcs_base(self):
    opts = export.ExportOptions(model_name="digits", warmup_examples=2, validate_examples=4)
    first = export.export_version(self.uri, self.model, self.ckpt, self.examples, opts)
    second = export.export_version(self.uri, self.model, self.ckpt, self.examples, opts)
    self.assertEqual((first.version, second.version), (1, 2))
    self.assertEqual(second.export_dir, f"{self.uri}/2")
    self.assertTrue(second.validation["passed"])
    self.assertEqual(export.list_versions(self.uri), [1, 2])
    self.assertIn("models/digits/2.validation.json", self._names())
    self.assertEqual(export.read_metadata(second.export_dir)["model"], "dnn")
    self.assertEqual(export.garbage_collect(self.uri, keep=1), [1])
    self.assertEqual(publish.list_versions(self.uri, self.client), {2: True})

  def test_bad_uris(self):
    for uri in ("s3://b/models/x", "gs://bucket", "gs://bucket/", "models/x"):
      with self.assertRaisesRegex(publish.PublishError, "must look like gs://BUCKET/models/NAME"):
        publish.parse_uri(uri)
    self.assertEqual(publish.parse_uri("gs://b-1/models/x/"), ("b-1", "models/x"))
    with self.assertRaisesRegex(publish.PublishError, "holds no saved_model.pb"):
      publish.publish_version(self.create_tempdir().full_path, self.uri, 1, self.client)


if __name__ == "__main__":
  tf.test.main()
