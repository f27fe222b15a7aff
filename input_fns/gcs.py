"""gs:// folders through google-cloud-storage: list, read, upload and delete, with retries.

TensorFlow's own gs:// file system cannot be pointed at an emulator (TOOLCHAIN.md), so what the
writer does on GCS goes through this module, and tests run it against gcp-storage-emulator on
loopback. An object becomes visible only when its upload completes, which makes each uploaded
shard atomic. Transient failures (connection refused or reset, timeouts, 429 and 5xx) are
retried with exponential backoff and jitter; after the last attempt a GcsError names the object
and the cause.

Credentials: with STORAGE_EMULATOR_HOST set (the client library's own switch), anonymous
credentials against that host; otherwise Application Default Credentials.
"""

import dataclasses
import http.client
import os
import random
import threading
import time
import warnings
from typing import Callable, Dict, Mapping, Optional, Tuple

# google-api-core warns at import, on every command, that it will drop Python 3.11 in 2027;
# the project pins 3.11 on purpose, so the warning only hides what the user needs to read.
warnings.filterwarnings("ignore", category=FutureWarning,
                        module=r"google\.api_core\._python_version_support")

import requests  # pylint: disable=g-import-not-at-top,g-bad-import-order
import urllib3  # pylint: disable=g-import-not-at-top
from google.api_core import exceptions as api_exceptions  # pylint: disable=g-import-not-at-top
from google.auth import credentials as auth_credentials  # pylint: disable=g-import-not-at-top
from google.auth import exceptions as auth_exceptions  # pylint: disable=g-import-not-at-top
from google.cloud import storage  # pylint: disable=g-import-not-at-top
from google.cloud.storage import exceptions as storage_exceptions  # pylint: disable=g-import-not-at-top

from input_fns import errors  # pylint: disable=g-import-not-at-top

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
SCHEME = "gs://"

_TRANSIENT = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
    auth_exceptions.TransportError,
    storage_exceptions.DataCorruption,
    storage_exceptions.InvalidResponse,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


class GcsError(errors.UserInputError):
  """A GCS location is unusable (no bucket, no permission, no credentials) or unreachable."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
  """How hard to try before giving up on one GCS call.

  Attributes:
    attempts: calls in all (>= 1).
    initial_delay_s: wait before the 2nd attempt; doubles after each failure.
    max_delay_s: cap on one wait.
    timeout_s: per-request timeout handed to the client.
  """
  attempts: int = 6
  initial_delay_s: float = 0.5
  max_delay_s: float = 30.0
  timeout_s: float = 120.0

  def delay(self, failures: int) -> float:
    """Seconds to wait after `failures` failed attempts: exponential, jittered to [50%, 100%]."""
    base = min(self.max_delay_s, self.initial_delay_s * (2 ** (failures - 1)))
    return base * (0.5 + 0.5 * random.random())


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
  name: str  # relative to the folder
  size: int
  metadata: Mapping[str, str]


def is_gcs_path(path: str) -> bool:
  return path.startswith(SCHEME)


def parse_url(url: str) -> Tuple[str, str]:
  """Splits gs://bucket/some/prefix into ("bucket", "some/prefix").

  Raises:
    GcsError: the URL names no bucket.
  """
  if not is_gcs_path(url):
    raise GcsError(f"{url} is not a gs:// URL")
  bucket, _, prefix = url[len(SCHEME):].partition("/")
  if not bucket:
    raise GcsError(f"{url} names no bucket (expected gs://BUCKET/PREFIX)")
  return bucket, prefix.strip("/")


def make_client() -> storage.Client:
  """A storage client: anonymous against $STORAGE_EMULATOR_HOST, else default credentials.

  Raises:
    GcsError: no default credentials are configured.
  """
  if os.environ.get(EMULATOR_ENV):
    return storage.Client(project="emulator", credentials=auth_credentials.AnonymousCredentials())
  try:
    return storage.Client()
  except auth_exceptions.DefaultCredentialsError as e:
    raise GcsError(f"no Google Cloud credentials for gs:// output ({e}); run "
                   f"`gcloud auth application-default login` or set "
                   f"GOOGLE_APPLICATION_CREDENTIALS") from None


class Folder:
  """The objects directly under gs://bucket/prefix, addressed by their relative names.

  Safe to use from several threads: each thread gets its own client.
  """

  def __init__(self, url: str, retry: RetryPolicy = RetryPolicy(),
               client_factory: Callable[[], storage.Client] = make_client,
               sleep: Callable[[float], None] = time.sleep):
    self.bucket_name, self.prefix = parse_url(url)
    self.url = f"{SCHEME}{self.bucket_name}/{self.prefix}".rstrip("/")
    self._retry = retry
    self._client_factory = client_factory
    self._sleep = sleep
    self._local = threading.local()

  def url_of(self, name: str) -> str:
    return f"{self.url}/{name}"

  def _blob_name(self, name: str) -> str:
    return f"{self.prefix}/{name}" if self.prefix else name

  def _bucket(self) -> storage.Bucket:
    if getattr(self._local, "bucket", None) is None:
      self._local.bucket = self._client_factory().bucket(self.bucket_name)
    return self._local.bucket

  def _call(self, what: str, target: str, fn: Callable[[], object]):
    """Runs fn, retrying transient failures; turns the final failure into a GcsError."""
    failures = 0
    while True:
      try:
        return fn()
      except api_exceptions.NotFound as e:
        raise GcsError(f"{what} {target}: not found ({_short(e)}); does the bucket "
                       f"gs://{self.bucket_name} exist?") from None
      except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as e:
        raise GcsError(f"{what} {target}: permission denied ({_short(e)})") from None
      except _TRANSIENT as e:
        failures += 1
        if failures >= self._retry.attempts:
          raise GcsError(f"{what} {target} failed after {failures} attempts: {_short(e)}") from None
        self._sleep(self._retry.delay(failures))

  def list(self) -> Dict[str, ObjectInfo]:
    """Objects directly under the prefix (not in sub-folders), by relative name."""
    prefix = f"{self.prefix}/" if self.prefix else ""

    def fn():
      blobs = self._bucket().client.list_blobs(
          self.bucket_name, prefix=prefix, delimiter="/", timeout=self._retry.timeout_s)
      return {b.name[len(prefix):]: ObjectInfo(b.name[len(prefix):], int(b.size or 0),
                                               dict(b.metadata or {}))
              for b in blobs}

    return self._call("listing", self.url + "/", fn)

  def read_text(self, name: str) -> Optional[str]:
    """The object's text, or None if there is no such object."""

    def fn():
      blob = self._bucket().get_blob(self._blob_name(name), timeout=self._retry.timeout_s)
      if blob is None:
        return None
      return blob.download_as_bytes(timeout=self._retry.timeout_s).decode("utf-8")

    return self._call("reading", self.url_of(name), fn)

  def upload_file(self, local_path: str, name: str,
                  metadata: Optional[Mapping[str, str]] = None) -> None:
    """Uploads a local file as `name`; the object appears only once complete."""

    def fn():
      blob = self._bucket().blob(self._blob_name(name))
      blob.metadata = dict(metadata or {})
      blob.upload_from_filename(local_path, timeout=self._retry.timeout_s, retry=None,
                                checksum="crc32c")

    self._call("uploading", self.url_of(name), fn)

  def upload_bytes(self, data: bytes, name: str, content_type: str = "application/octet-stream",
                   metadata: Optional[Mapping[str, str]] = None) -> None:

    def fn():
      blob = self._bucket().blob(self._blob_name(name))
      blob.metadata = dict(metadata or {})
      blob.upload_from_string(data, content_type=content_type, timeout=self._retry.timeout_s,
                              retry=None, checksum="crc32c")

    self._call("uploading", self.url_of(name), fn)

  def delete(self, name: str) -> None:
    """Deletes the object if it exists."""

    def fn():
      try:
        self._bucket().blob(self._blob_name(name)).delete(timeout=self._retry.timeout_s)
      except api_exceptions.NotFound:
        pass

    self._call("deleting", self.url_of(name), fn)


def _short(e: Exception) -> str:
  text = str(e).splitlines()[0] if str(e) else ""
  return f"{type(e).__name__}: {text[:300]}"
