"""gs:// output through //scripts:make_tfrecords against the real GCS emulator on loopback,
with the storage going away mid-upload: retries with backoff, then a clear error; no partial
object visible; the rerun completes, uploading only what is missing."""

import json
import os
import re
import socket
import threading
import time

from absl.testing import absltest
from google.auth import credentials
from google.cloud import storage

from input_fns import manifest as manifest_lib
from tests.reliability import harness
from tests.testing import data as test_data


class _Outage:
  """A TCP relay in front of the emulator. `cut()` makes the storage vanish for the client
  (open connections reset, new ones refused) while the emulator keeps its objects, so the test
  can look at what the bucket holds; `restore()` brings it back on the same port.

  The emulator serves one connection at a time, so a relayed connection that outlived a cut
  would hang every later request, the test's own included: a connection accepted while
  `cut()` runs is closed at once instead of relayed."""

  def __init__(self, target_port: int):
    self.target = ("127.0.0.1", target_port)
    self.port = test_data.free_port()
    self._conns = []
    self._server = None
    self._open = False
    self._lock = threading.Lock()

  def restore(self):
    with self._lock:
      self._open = True
    self._server = socket.socket()
    self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    self._server.bind(("127.0.0.1", self.port))
    self._server.listen(64)
    threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

  def _accept(self, server):
    while True:
      try:
        client, _ = server.accept()
      except OSError:
        return
      upstream = socket.create_connection(self.target)
      with self._lock:
        relay = self._open
        if relay:
          self._conns += [client, upstream]
      if not relay:
        _reset(client, upstream)
        return
      for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

  @staticmethod
  def _pipe(src, dst):
    try:
      while True:
        data = src.recv(65536)
        if not data:
          break
        dst.sendall(data)
    except OSError:
      pass
    for s in (src, dst):
      try:
        s.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass

  def cut(self):
    with self._lock:
      self._open = False
      conns, self._conns = self._conns, []
    # close() alone does not wake an accept() blocked in another thread: the socket would go
    # on accepting (and relaying) new connections. shutdown() does, and refuses new ones.
    try:
      self._server.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass
    self._server.close()
    _reset(*conns)


def _reset(*sockets):
  """Closes with an RST (linger 0), as a vanished server would."""
  for s in sockets:
    try:
      s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
      s.close()
    except OSError:
      pass


class GcsFaultsTest(absltest.TestCase):

  def test_storage_gone_mid_upload_then_rerun_completes(self):
    emu_dir = self.create_tempdir().full_path  # objects on disk: they survive a restart
    emus = [test_data.Emulator(data_dir=emu_dir).start()]
    self.addCleanup(lambda: emus[-1].stop())
    emu = emus[0]
    self.addCleanup(os.environ.pop, "STORAGE_EMULATOR_HOST", None)
    emu.create_bucket("bkt")
    client = storage.Client(project="test", credentials=credentials.AnonymousCredentials(),
                            client_options={"api_endpoint": emu.host})
    outage = _Outage(emu.port)
    outage.restore()
    self.addCleanup(outage.cut)
    env = harness.child_env(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{outage.port}")
    staging = self.create_tempdir().full_path
    args = ["--format=digits", "--output_dir=gs://bkt/ds", f"--staging_dir={staging}/s",
            "--num_shards=60", "--workers=1", "--progress_interval=0"]
    log = os.path.join(self.create_tempdir().full_path, "upload.log")

    def objects():
      return {b.name[len("ds/"):]: b.size for b in client.list_blobs("bkt", prefix="ds/")}

    proc = harness.start_script("make_tfrecords", args, log, env=env)
    deadline = time.monotonic() + 120
    while len(objects()) < 5 and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.02)
    self.assertIsNone(proc.poll(), "the upload finished before the outage")
    outage.cut()
    cut_at = time.monotonic()
    proc.wait(timeout=180)
    failed_after = time.monotonic() - cut_at
    with open(log) as f:
      text = f.read()
    self.assertEqual(proc.returncode, 2, text[-3000:])
    lines = harness.error_lines(text)
    self.assertLen(lines, 1, text[-3000:])
    self.assertRegex(lines[0], r"^error: uploading gs://bkt/ds/\S+ failed after 6 attempts: ")
    self.assertNotIn("Traceback", text)
    # Backoff: 5 waits of 0.5, 1, 2, 4, 8 s, each jittered to [50%, 100%].
    self.assertGreater(failed_after, 7.5)
    # The emulator serves one connection at a time, and a request the cut left half-sent can
    # hold it for good (seen on a loaded machine): restart it on the same port and directory
    # before looking at what the bucket holds.
    emu.stop()
    emus.append(test_data.Emulator(port=emu.port, data_dir=emu_dir).start())
    uploaded = objects()
    self.assertNotIn(manifest_lib.FILENAME, uploaded)
    for name, size in uploaded.items():  # every visible object is a whole shard
      local = [os.path.join(r, name) for r, _, fs in os.walk(f"{staging}/s") if name in fs]
      if local:
        self.assertEqual(os.path.getsize(local[0]), size, name)
    shards_before = {n for n in uploaded if n.endswith(".tfrecord")}

    outage.restore()
    rerun = harness.run_script("make_tfrecords", args, env=env)
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    found = re.search(r"(\d+) of (\d+) shards already uploaded", rerun.stderr)
    self.assertIsNotNone(found, rerun.stderr[-3000:])
    self.assertEqual(int(found.group(1)), len(shards_before))
    final = objects()
    self.assertIn(manifest_lib.FILENAME, final)
    manifest = client.bucket("bkt").blob("ds/manifest.json").download_as_text()
    listed = set(re.findall(r'"name": "((?:train|eval)-\d{5}-of-\d{5}\.tfrecord)"', manifest))
    self.assertEqual({n for n in final if n.endswith(".tfrecord")}, listed)
    # The shards visible after the failure were whole: the manifest's sizes match them.
    sizes = {shard["name"]: shard["bytes"] for split in json.loads(manifest)["splits"].values()
             for shard in split["shards"]}
    self.assertEqual({n: uploaded[n] for n in shards_before},
                     {n: sizes[n] for n in shards_before})
    self.assertEqual({n: final[n] for n in listed}, {n: sizes[n] for n in listed})
    self.assertFalse(os.path.exists(f"{staging}/s"))  # staging cleaned up after success
    print(f"\n| GCS storage gone mid-upload (emulator behind a relay that is cut) | retries "
          f"with backoff then a clear error; no partial object; rerun completes | exit 2 after "
          f"{failed_after:.1f} s: {lines[0][:110]}...; {len(shards_before)} whole shards and no "
          f"manifest visible; rerun skipped them and uploaded the other "
          f"{len(listed) - len(shards_before)} + manifest |")


if __name__ == "__main__":
  absltest.main()
