"""Resumable uploads (tus 1.0) from Python, against the official Node server (`@tus/server`, pinned,
installed by scripts/setup-tus-server.sh): the server is killed mid-upload and restarted on the same
port (a network drop); the upload resumes from the server's offset, progress (a Python listener)
never goes backwards and ends at the total, and the server's file equals the source."""

import asyncio
import hashlib
import os
import subprocess
import threading
import time

import robust_api

MB = 1 << 20
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def make_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, MB):
            f.seek(off)
            f.write(f"offset {off} {os.getpid()}".encode()[: size - off])
    return str(path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MB), b""):
            h.update(block)
    return h.hexdigest()


class TusServer:
    """`node server.mjs <dir> 0 [port]`, restartable on the same port."""

    def __init__(self, store):
        self.dir = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "setup-tus-server.sh")],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        self.store = str(store)
        self.port = 0
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["node", os.path.join(self.dir, "server.mjs"), self.store, "0", str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.port = int(line.split()[1])

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stored_files(self):
        return [os.path.join(self.store, n) for n in os.listdir(self.store) if not n.endswith(".json")]


class Progress(robust_api.UploadProgressListener):
    def __init__(self, hook):
        self.calls = []
        self.hook = hook

    def on_progress(self, bytes_sent, total_bytes):
        self.calls.append((bytes_sent, total_bytes))
        self.hook(bytes_sent, total_bytes)


class Heard(robust_api.ResumableUploadListener):
    def __init__(self):
        self.progress, self.completed, self.failed = [], None, None

    def on_progress(self, id, confirmed_bytes, total_bytes):
        self.progress.append(confirmed_bytes)

    def on_completed(self, id, status, body):
        self.completed = status

    def on_failed(self, id, error):
        self.failed = error


def test_a_resumable_upload_survives_a_drop_with_monotonic_progress(make_client, tmp_path):
    server = TusServer(tmp_path / "server")
    try:
        size = 8 * MB
        path = make_file(tmp_path / "clip.mp4", size)
        client = make_client(
            [f"http://127.0.0.1:{server.port}"],
            retry={"base_delay_ms": 50, "max_delay_ms": 200},
            upload={"chunk_bytes": 256 * 1024, "max_retries": 40, "video_path": "/files/"},
        )
        dropped = threading.Event()

        def drop():
            server.kill()  # the connection breaks mid-upload
            time.sleep(0.3)
            server.start()  # same port, same files: the upload continues from its offset

        def hook(sent, total):
            if sent >= total // 4 and not dropped.is_set():
                dropped.set()
                threading.Thread(target=drop).start()

        progress = Progress(hook)
        r = asyncio.run(client.upload_video_file(path, "Holiday 🎥", progress))
        assert r.status == 204
        assert dropped.is_set()
        sent = [c[0] for c in progress.calls]
        assert sent == sorted(set(sent)), "monotonic across the drop"
        assert sent[-1] == size and sent.count(size) == 1
        files = server.stored_files()
        assert len(files) == 1, "resumed, not restarted"
        assert sha256_file(files[0]) == sha256_file(path)
        with open(files[0] + ".json") as f:
            assert '"title":"Holiday 🎥"' in f.read()
        assert client.pending_uploads() == []
    finally:
        server.kill()


def test_pending_uploads_pause_resume_and_a_listener_by_id(make_client, tmp_path):
    server = TusServer(tmp_path / "server")
    try:
        size = 4 * MB
        path = make_file(tmp_path / "a.bin", size)
        client = make_client(
            [f"http://127.0.0.1:{server.port}"],
            upload={"chunk_bytes": 64 * 1024},
        )

        async def go():
            req = robust_api.UploadRequest(path="/files/", file_path=path, fields={"title": "t"})
            task = asyncio.ensure_future(client.upload_file(req))
            while not client.pending_uploads() or client.pending_uploads()[0].confirmed_bytes == 0:
                await asyncio.sleep(0.01)
            up = client.pending_uploads()[0]
            assert client.pause_upload(up.id)
            try:
                await task
            except robust_api.ApiError.Cancelled:
                pass
            return up

        up = asyncio.run(go())
        pending = client.pending_uploads()
        assert [p.state for p in pending] == [robust_api.UploadState.PAUSED]
        assert pending[0].total_bytes == size and pending[0].metadata["title"] == "t"
        heard = Heard()
        assert client.attach_upload_listener(up.id, heard)
        assert client.resume_upload(up.id)
        deadline = time.time() + 20
        while heard.completed is None and heard.failed is None and time.time() < deadline:
            time.sleep(0.02)
        assert heard.completed == 204, heard.failed
        assert heard.progress == sorted(heard.progress) and heard.progress[-1] == size
        assert client.pending_uploads() == []
    finally:
        server.kill()
