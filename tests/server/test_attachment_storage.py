"""The attachment storage port: one behaviour suite over the data-dir adapter and the S3 adapter,
the latter against moto's standalone S3 server on loopback (a real HTTP protocol peer, no
network); then the whole upload/download path of the app on S3."""

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.attachments.s3 import S3Storage, s3_client
from server.attachments.storage import LocalStorage, Storage, StoredObjectMissing
from tests.server.attachment_files import jpeg_with_exif
from tests.support.inproc import FAST, InProcServer, make_settings
from tests.support.live import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CREDS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture(scope="module")
def moto_url(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    # boto3 must never find real credentials or a real endpoint from the environment
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_ENDPOINT_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_CONFIG_FILE", "/dev/null")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield mp


def _bucket(moto_url: str) -> str:
    name = f"parley-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint_url=moto_url, **CREDS).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        store: Storage = LocalStorage(tmp_path / "attachments")
    else:
        url = request.getfixturevalue("moto_url")
        store = S3Storage(s3_client(endpoint_url=url, **CREDS), _bucket(url))
    yield store
    await store.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def _read(store: Storage, key: str) -> bytes:
    return b"".join([c async for c in store.get(key)])


async def test_put_get_replace_delete(storage: Storage) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, many chunks each way
    assert await storage.put("t1/abc", _chunks(big[:1000], big[1000:])) == len(big)
    assert await _read(storage, "t1/abc") == big
    await storage.put("t1/abc", _chunks(b"second"))
    assert await _read(storage, "t1/abc") == b"second"
    await storage.put("t1/abc.thumb", _chunks(b"thumb"))
    await storage.delete("t1/abc")
    with pytest.raises(StoredObjectMissing):
        await _read(storage, "t1/abc")
    assert await _read(storage, "t1/abc.thumb") == b"thumb"
    await storage.delete("t1/abc")  # deleting a missing object is not an error


async def test_keys_cannot_escape(storage: Storage) -> None:
    for key in ("../x", "t1/../../etc/passwd", "/abs", "t1/a b", ""):
        with pytest.raises(ValueError, match="bad storage key"):
            await storage.put(key, _chunks(b"x"))


async def test_a_failed_stream_leaves_nothing(storage: Storage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await storage.put("t1/broken", broken())
    with pytest.raises(StoredObjectMissing):
        await _read(storage, "t1/broken")


def test_the_app_keeps_files_in_the_bucket(moto_url: str, tmp_path: Path) -> None:
    bucket = _bucket(moto_url)
    settings: dict[str, Any] = {
        "attachment_storage": "s3", "attachment_s3_bucket": bucket, "attachment_s3_endpoint_url": moto_url,
        "attachment_s3_access_key": "testing", "attachment_s3_secret_key": "testing", **FAST}
    with InProcServer(make_settings(tmp_path, **settings)) as srv:
        srv.without_bot()
        tok = srv.token("s3-user")
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}, timeout=20) as c:
            conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
            r = c.post(f"/v1/conversations/{conv}/attachments", files={"file": ("p.jpg", jpeg_with_exif())})
            assert r.status_code == 201, r.text
            att = r.json()["attachment"]
            got = c.get(att["url"])
            assert got.status_code == 200 and got.content[:2] == b"\xff\xd8"
            assert c.get(att["thumbnail_url"]).status_code == 200
    keys = sorted(o["Key"] for o in s3_client(endpoint_url=moto_url, **CREDS)
                  .list_objects_v2(Bucket=bucket).get("Contents", []))
    assert len(keys) == 2 and keys[0].endswith(att["id"]) and keys[1].endswith(att["id"] + ".thumb")
    assert not (tmp_path / "attachments").exists()
