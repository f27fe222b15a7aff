"""Publishes exported model versions to `gs://BUCKET/PREFIX/<version>/` for TF Serving.

TF Serving's `base_path` may be a GCS prefix; it polls the children of that prefix and loads
the highest one whose name is an integer. GCS has no directory rename, and a version "exists"
for TF Serving as soon as one object is under `<version>/`. So a version is published in three
steps, to keep what TF Serving can see as close to complete-before-visible as GCS allows:

  1. Upload every file of the version under a hidden staging prefix
     `PREFIX/.staging-<version>-<token>/` (a non-integer child TF Serving ignores), checking
     each object's MD5 against the local file.
  2. Server-side copy the staged objects to `PREFIX/<version>/`: `variables/`, `assets*/`
     first and `saved_model.pb` LAST (copies move no data through the client, so the window
     is short). While the copies run, the version has no `saved_model.pb`: a TF Serving poll
     that lands in that window fails to load it ("SavedModel not found") and retries later; it
     never loads a model with missing variables.
  3. Delete the staging objects; then upload the sibling `<version>.validation.json`, if any.

Versions are immutable: publishing a version that is already complete with the same bytes is
a no-op; with different bytes it is an error. A version left without `saved_model.pb` by an
interrupted publish is incomplete: the next publish deletes it and publishes it again.
Staging prefixes older than an hour are removed on the next publish.
"""

import base64
import datetime
import hashlib
import os
import re
import secrets
from typing import Dict, List, Optional, Sequence, Tuple

from google.cloud import storage

from input_fns import errors
from input_fns import gcs

SAVED_MODEL = "saved_model.pb"
VALIDATION_SUFFIX = ".validation.json"
_STAGING = ".staging-"
_STALE_STAGING = datetime.timedelta(hours=1)


class PublishError(errors.UserInputError):
  """A destination URI, a local export or the remote state does not allow publishing."""


def parse_uri(uri: str) -> Tuple[str, str]:
  """Splits `gs://bucket/some/prefix` into ("bucket", "some/prefix") (input_fns/gcs.parse_url).

  Raises:
    PublishError: not a gs:// URI with a valid bucket and a non-empty prefix.
  """
  try:
    bucket, prefix = gcs.parse_url(uri or "")
  except gcs.GcsError:
    bucket, prefix = "", ""
  if not re.fullmatch(r"[a-z0-9][-_.a-z0-9]*", bucket) or not prefix:
    raise PublishError(f"publish destination {uri!r} must look like gs://BUCKET/models/NAME")
  return bucket, prefix


make_client = gcs.make_client  # the one client factory (emulator, clear missing-credentials error)


def _md5_b64(path: str) -> str:
  h = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return base64.b64encode(h.digest()).decode()


def _local_files(version_dir: str) -> List[str]:
  """Relative paths of every file under `version_dir`, saved_model.pb last."""
  rels = []
  for root, _, files in os.walk(version_dir):
    for name in files:
      rels.append(os.path.relpath(os.path.join(root, name), version_dir).replace(os.sep, "/"))
  if SAVED_MODEL not in rels:
    raise PublishError(f"{version_dir} holds no {SAVED_MODEL}: not a SavedModel export")
  return sorted(rels, key=lambda r: (r == SAVED_MODEL, r))


def list_versions(uri: str, client: storage.Client) -> Dict[int, bool]:
  """Integer versions under `uri`, each mapped to whether it is complete (has saved_model.pb)."""
  bucket_name, prefix = parse_uri(uri)
  versions: Dict[int, bool] = {}
  for blob in client.list_blobs(bucket_name, prefix=prefix + "/"):
    rest = blob.name[len(prefix) + 1:]
    head, _, tail = rest.partition("/")
    if head.isdigit() and tail:
      versions[int(head)] = versions.get(int(head), False) or tail == SAVED_MODEL
  return versions


def read_text(uri: str, relpath: str, client: storage.Client) -> Optional[str]:
  """The text of object `uri/relpath`, or None if it does not exist."""
  bucket_name, prefix = parse_uri(uri)
  blob = client.bucket(bucket_name).blob(f"{prefix}/{relpath}")
  return blob.download_as_text() if blob.exists() else None


def upload_text(uri: str, relpath: str, text: str, client: storage.Client) -> None:
  """Writes `text` to object `uri/relpath`."""
  bucket_name, prefix = parse_uri(uri)
  client.bucket(bucket_name).blob(f"{prefix}/{relpath}").upload_from_string(
      text, content_type="application/json")


def _delete_prefix(bucket: storage.Bucket, prefix: str, client: storage.Client) -> int:
  n = 0
  for blob in client.list_blobs(bucket.name, prefix=prefix):
    blob.delete()
    n += 1
  return n


def delete_version(uri: str, version: int, client: storage.Client) -> None:
  """Deletes `uri/<version>/` and its sibling validation file.

  saved_model.pb goes first, so a TF Serving poll during the deletion sees an incomplete
  (unloadable) version rather than a SavedModel with missing variables.
  """
  bucket_name, prefix = parse_uri(uri)
  bucket = client.bucket(bucket_name)
  pb = bucket.blob(f"{prefix}/{version}/{SAVED_MODEL}")
  if pb.exists():
    pb.delete()
  _delete_prefix(bucket, f"{prefix}/{version}/", client)
  sibling = bucket.blob(f"{prefix}/{version}{VALIDATION_SUFFIX}")
  if sibling.exists():
    sibling.delete()


def _remove_stale_staging(bucket: storage.Bucket, prefix: str, client: storage.Client) -> None:
  now = datetime.datetime.now(datetime.timezone.utc)
  for blob in client.list_blobs(bucket.name, prefix=f"{prefix}/{_STAGING}"):
    if blob.time_created is None or now - blob.time_created > _STALE_STAGING:
      blob.delete()


def _same_bytes(bucket: storage.Bucket, prefix: str, version: int, version_dir: str,
                rels: Sequence[str], client: storage.Client) -> bool:
  remote = {b.name[len(f"{prefix}/{version}/"):]: b.md5_hash
            for b in client.list_blobs(bucket.name, prefix=f"{prefix}/{version}/")}
  return (set(remote) == set(rels)
          and all(remote[r] == _md5_b64(os.path.join(version_dir, r)) for r in rels))


def publish_version(version_dir: str, uri: str, version: int, client: storage.Client) -> str:
  """Publishes one local version directory as `uri/<version>/` (see the module docstring).

  Args:
    version_dir: a local SavedModel directory (the export of one version).
    uri: the model's base, gs://BUCKET/models/NAME (TF Serving's base_path).
    version: the integer version to publish it as.
    client: a google.cloud.storage client.

  Returns:
    The published version's URI.

  Raises:
    PublishError: bad URI, no SavedModel in version_dir, the version exists remotely with
      different bytes, or an uploaded object's checksum differs from the local file.
  """
  bucket_name, prefix = parse_uri(uri)
  if int(version) < 0:
    raise PublishError(f"version must be a non-negative integer, got {version}")
  rels = _local_files(version_dir)
  bucket = client.bucket(bucket_name)
  dest = f"gs://{bucket_name}/{prefix}/{version}"
  _remove_stale_staging(bucket, prefix, client)

  existing = list_versions(uri, client)
  if existing.get(version):
    if _same_bytes(bucket, prefix, version, version_dir, rels, client):
      return dest
    raise PublishError(f"{dest} already exists with different contents; versions are immutable, "
                       f"export a new version instead")
  if version in existing:  # left incomplete by an interrupted publish
    delete_version(uri, version, client)

  staging = f"{prefix}/{_STAGING}{version}-{secrets.token_hex(4)}"
  staged = []
  try:
    for rel in rels:
      local = os.path.join(version_dir, rel)
      blob = bucket.blob(f"{staging}/{rel}")
      blob.upload_from_filename(local)
      if blob.md5_hash != _md5_b64(local):
        raise PublishError(f"upload of {local} to gs://{bucket_name}/{blob.name} is corrupt "
                           f"(MD5 {blob.md5_hash} != local {_md5_b64(local)})")
      staged.append((rel, blob))
    for rel, blob in staged:  # saved_model.pb last (see _local_files)
      bucket.copy_blob(blob, bucket, f"{prefix}/{version}/{rel}")
  finally:
    for _, blob in staged:
      blob.delete()

  sibling = os.path.join(os.path.dirname(os.path.abspath(version_dir)),
                         f"{os.path.basename(os.path.normpath(version_dir))}{VALIDATION_SUFFIX}")
  if os.path.exists(sibling):
    bucket.blob(f"{prefix}/{version}{VALIDATION_SUFFIX}").upload_from_filename(sibling)
  return dest


def local_versions(model_base: str) -> List[int]:
  """The integer version directories under a local model base, ascending."""
  if not os.path.isdir(model_base):
    return []
  return sorted(int(n) for n in os.listdir(model_base)
                if n.isdigit() and os.path.isdir(os.path.join(model_base, n)))


def publish(model_base: str, uri: str, client: storage.Client,
            versions: Optional[Sequence[int]] = None) -> List[int]:
  """Publishes local versions `model_base/<v>/` to `uri/<v>/`, oldest first.

  Args:
    model_base: local directory of integer version directories (an export base).
    uri: gs://BUCKET/models/NAME.
    client: a google.cloud.storage client.
    versions: which versions; default all local ones.

  Returns:
    The versions published (already identical remote versions included).

  Raises:
    PublishError: no such local version, or see publish_version.
  """
  available = local_versions(model_base)
  chosen = sorted(available if versions is None else versions)
  if not chosen:
    raise PublishError(f"{model_base} holds no integer version directories to publish")
  for v in chosen:
    if v not in available:
      raise PublishError(f"version {v} is not in {model_base} (it has {available})")
    publish_version(os.path.join(model_base, str(v)), uri, v, client)
  return chosen
