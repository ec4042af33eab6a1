"""The S3-compatible storage adapter (AWS S3, MinIO, Ceph, R2) over boto3. boto3 blocks, so every
call runs in a worker thread, never on the event loop."""

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from server.attachments.storage import CHUNK, Storage, StoredObjectMissing, check_key

__all__ = ["S3Storage", "s3_client"]

#: An upload is spooled in memory up to this, then on disk, before it goes to the bucket.
SPOOL_BYTES = 1024 * 1024


def s3_client(*, endpoint_url: str | None, region: str, access_key: str | None, secret_key: str | None,
              timeout_s: float = 10.0) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 2},
                      s3={"addressing_style": "path"}))


class S3Storage(Storage):
    def __init__(self, client: Any, bucket: str, prefix: str = "attachments/") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buf:
            async for chunk in chunks:
                size += len(chunk)
                await asyncio.to_thread(buf.write, chunk)
            buf.seek(0)
            # upload_fileobj switches to a multipart upload for large objects by itself
            await asyncio.to_thread(self.client.upload_fileobj, buf, self.bucket, self._key(key))
        return size

    async def get(self, key: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            obj = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoredObjectMissing(key) from None
            raise
        body = obj["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)
