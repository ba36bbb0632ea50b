"""Uploads from Python: a file streamed as multipart with its title arrives intact (SHA-256 checked by
the fleet), the progress listener (a Python subclass) sees monotonic values ending at the total,
cancelling the asyncio task or an CancelToken stops the upload, a missing file raises
ApiError.InvalidRequest before anything is sent."""

import asyncio
import hashlib
import json
import os
import threading
import time

import pytest

import robust_api
from support import wait_until

MB = 1 << 20


def make_file(path, size):
    """A sparse file with a distinct marker every MiB (lost or reordered chunks change the hash)."""
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


def settled_upload_bytes(fleet, i):
    last = fleet.upload_bytes(i)
    while True:
        time.sleep(0.2)
        now = fleet.upload_bytes(i)
        if now == last:
            return now
        last = now


class Progress(robust_api.UploadProgressListener):
    def __init__(self, hook=None):
        self.calls = []
        self.threads = set()
        self.hook = hook

    def on_progress(self, bytes_sent, total_bytes):
        self.calls.append((bytes_sent, total_bytes))
        self.threads.add(threading.get_ident())
        if self.hook:
            self.hook(bytes_sent, total_bytes)


def test_upload_video_file_with_progress(fleet, make_client, tmp_path):
    client = make_client(fleet.urls[:1])
    path = make_file(tmp_path / "clip.mp4", 8 * MB + 7)
    progress = Progress()

    async def go():
        # The listener runs on the event loop's thread, between awaits: no locking needed.
        return await client.upload_video_file(path, "Holiday 🎥", progress), threading.get_ident()

    r, loop_thread = asyncio.run(go())
    assert r.status == 201 and r.attempts == 1
    answer = json.loads(r.body)
    assert answer["sha256"] == sha256_file(path)
    assert answer["size"] == 8 * MB + 7
    assert answer["fields"] == {"title": "Holiday 🎥"}
    assert answer["path"] == "/api/videos" and answer["file_name"] == "clip.mp4"
    assert answer["content_type"] == "video/mp4"
    assert len(answer["key"]) == 36  # a generated idempotency key
    assert fleet.uploads(0)[0]["sha256"] == answer["sha256"]

    sent = [c[0] for c in progress.calls]
    total = progress.calls[0][1]
    assert all(c[1] == total for c in progress.calls)
    assert sent == sorted(set(sent)), "monotonic"
    assert sent[-1] == total and sent.count(total) == 1
    assert 2 <= len(sent) <= 110, len(sent)  # ~1 % steps, not one per chunk
    assert progress.threads == {loop_thread}


def test_upload_file_request_fields_and_key(fleet, make_client, tmp_path):
    client = make_client(fleet.urls[:1])
    path = make_file(tmp_path / "doc.bin", MB)
    req = robust_api.UploadRequest(
        path="/upload/docs",
        file_path=path,
        field_name="attachment",
        file_name="report.pdf",
        fields={"title": "Q3", "owner": "me"},
        idempotency_key="py-upload-1",
    )
    r1 = asyncio.run(client.upload_file(req))
    r2 = asyncio.run(client.upload_file(req))  # same key: the stored answer, stored once
    assert r1.body == r2.body
    assert r2.headers.get("idempotent-replayed") == "true"
    stored = fleet.uploads(0)
    assert len(stored) == 1
    u = stored[0]
    assert (u["field_name"], u["file_name"], u["content_type"]) == ("attachment", "report.pdf", "application/pdf")
    assert u["fields"] == {"owner": "me", "title": "Q3"} and u["key"] == "py-upload-1"


def test_cancelling_the_task_stops_the_upload(fleet, make_client, tmp_path):
    client = make_client(fleet.urls[:1])
    size = 200 * MB
    path = make_file(tmp_path / "big.bin", size)

    async def go():
        task = None

        def hook(sent, total):
            if sent * 10 >= total and not task.cancelled():
                task.cancel()

        task = asyncio.ensure_future(client.upload_file(
            robust_api.UploadRequest(path="/upload", file_path=path), Progress(hook)))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    received = settled_upload_bytes(fleet, 0)
    time.sleep(0.5)
    assert fleet.upload_bytes(0) == received, "still receiving"
    assert received < size // 2, received
    assert fleet.uploads(0) == []


def test_cancel_token(fleet, make_client, tmp_path):
    client = make_client(fleet.urls[:1])
    size = 200 * MB
    path = make_file(tmp_path / "big.bin", size)
    token = robust_api.CancelToken()

    def hook(sent, total):
        if sent * 10 >= total:
            token.cancel()

    with pytest.raises(robust_api.ApiError.Cancelled):
        asyncio.run(client.upload_file_with_token(
            robust_api.UploadRequest(path="/upload", file_path=path), token, Progress(hook)))
    assert token.is_cancelled()
    received = settled_upload_bytes(fleet, 0)
    assert received < size // 2, received
    assert fleet.uploads(0) == []


def test_missing_file_is_invalid_request_before_any_io(fleet, make_client, tmp_path):
    client = make_client(fleet.urls[:1])
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(robust_api.ApiError.InvalidRequest) as e:
        asyncio.run(client.upload_video_file(missing, "t"))
    assert missing in str(e.value)
    assert fleet.hits(0, "/api/videos") == 0
