"""Upload, download and the link to messages. Every check runs before anything is stored: a
refused file leaves no object and no row."""

import asyncio
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, update
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.attachments.images import IMAGE_TYPES, process_image
from server.attachments.models import Attachment, attachment_id
from server.attachments.settings import AttachmentSettings
from server.attachments.sniff import check_claims, sniff
from server.attachments.storage import Storage, StoredObjectMissing
from server.core.db import Database
from server.core.models import Conversation, Message
from server.errors import BadInput, Conflict, Forbidden, NotFound, TooLong

__all__ = ["AttachmentService", "Download", "claim_for_message", "load_for_message", "safe_name"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_name(raw: str | None, max_chars: int = 200) -> str:
    """The file's display name. A name that tries to be a path is refused, not quietly rewritten:
    the sender learns why, and nothing downstream ever sees ``../``."""
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if not name:
        return "file"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".."):
        raise BadInput("file names may not contain path separators or '..'", field="file")
    if _CONTROL.search(name):
        raise BadInput("file names may not contain control characters", field="file")
    if len(name) > max_chars:
        raise BadInput(f"file names are limited to {max_chars} characters", field="file")
    return name


def may_see(p: Principal, conv: Conversation) -> bool:
    """The chat service's visibility rule (``ChatService.can_see``): a user sees their own
    conversations, an agent every conversation of the tenant."""
    if conv.tenant_id != p.tenant_id:
        return False
    if p.role == "user":
        return conv.user_id == p.id
    return p.role == "agent"


@dataclass(frozen=True, slots=True)
class Download:
    attachment: Attachment
    media_type: str
    size: int
    chunks: AsyncIterator[bytes]


class AttachmentService:
    def __init__(self, db: Database, storage: Storage, settings: AttachmentSettings | None = None) -> None:
        self.db = db
        self.storage = storage
        self.settings = settings or AttachmentSettings()

    async def _conversation(self, p: Principal, conversation_id: str) -> Conversation:
        async with self.db.session() as s:
            conv = await s.get(Conversation, conversation_id)
        if conv is None or not may_see(p, conv):
            raise NotFound("conversation not found")
        return conv

    async def upload(self, p: Principal, conversation_id: str, *, filename: str | None,
                     claimed_type: str | None, data: bytes) -> Attachment:
        if p.role not in ("user", "agent"):
            raise Forbidden("files are uploaded by the people in the conversation")
        cfg = self.settings
        conv = await self._conversation(p, conversation_id)
        if len(data) > cfg.max_file_bytes:
            raise TooLong(f"files are limited to {cfg.max_file_bytes} bytes", field="file")
        if not data:
            raise BadInput("the file is empty", field="file")
        name = safe_name(filename, cfg.max_name_chars)
        media = await asyncio.to_thread(sniff, data)  # reads up to the whole file (UTF-8 check)
        check_claims(media, filename=name, claimed_type=claimed_type, allowed=cfg.allowed_types)
        att = Attachment(id=attachment_id(), tenant_id=p.tenant_id, conversation_id=conv.id,
                         uploader_kind=p.sender_kind, uploader_id=p.id, name=name, media_type=media,
                         size=len(data), storage_key="")
        thumb: bytes | None = None
        if media in IMAGE_TYPES:
            img = await asyncio.to_thread(process_image, data, media, max_pixels=cfg.max_image_pixels,
                                          thumbnail_px=cfg.thumbnail_px)
            data, thumb = img.data, img.thumbnail
            att.media_type, att.size, att.width, att.height = img.media_type, len(img.data), img.width, img.height
            if img.media_type != media:  # a GIF becomes its first frame as PNG: say so in the name
                att.name = name.rsplit(".", 1)[0] + ".png" if "." in name else name + ".png"
            att.thumbnail_type, att.thumbnail_size = img.thumbnail_type, len(thumb)
        await self._check_quota(p.tenant_id, att.size + att.thumbnail_size)
        att.storage_key = f"{p.tenant_id}/{att.id}"
        await self.storage.put(att.storage_key, _once(data))
        try:
            if thumb is not None:
                att.thumbnail_key = f"{p.tenant_id}/{att.id}.thumb"
                await self.storage.put(att.thumbnail_key, _once(thumb))
            async with self.db.write() as s:
                s.add(att)
        except BaseException:
            await self._discard(att)
            raise
        return att

    async def _check_quota(self, tenant_id: str, extra: int) -> None:
        async with self.db.session() as s:
            total = func.coalesce(func.sum(col(Attachment.size) + col(Attachment.thumbnail_size)), 0)
            used = (await s.exec(select(total).where(Attachment.tenant_id == tenant_id))).one()
        limit = self.settings.max_tenant_bytes
        if int(used) + extra > limit:
            raise TooLong(f"this workspace's files are limited to {limit} bytes in all; {int(used)} are used",
                          field="file")

    async def _discard(self, att: Attachment) -> None:
        for key in (att.storage_key, att.thumbnail_key):
            if key:
                await self.storage.delete(key)

    async def get(self, p: Principal, attachment_id_: str) -> Attachment:
        """An attachment the principal may read: of a conversation they see; before it is sent,
        only its uploader; in an agents' note, never an end user."""
        async with self.db.session() as s:
            att = await s.get(Attachment, attachment_id_)
            conv = await s.get(Conversation, att.conversation_id) if att is not None else None
            msg = await s.get(Message, att.message_id) if att is not None and att.message_id else None
        if att is None or conv is None or att.tenant_id != p.tenant_id or not may_see(p, conv):
            raise NotFound("attachment not found")
        if att.message_id is None and (att.uploader_kind, att.uploader_id) != (p.sender_kind, p.id):
            raise NotFound("attachment not found")
        if p.role == "user" and msg is not None and msg.kind == "note":
            raise NotFound("attachment not found")
        if msg is not None and msg.deleted_at is not None:
            raise NotFound("attachment not found")  # deleted for everyone (the file stays for the audit)
        return att

    async def delete_unsent(self, p: Principal, attachment_id_: str) -> None:
        """An upload that was never sent, removed by its uploader (it counts against the tenant's
        limit until then). A sent file stays with its message."""
        att = await self.get(p, attachment_id_)
        if (att.uploader_kind, att.uploader_id) != (p.sender_kind, p.id):
            raise Forbidden("only the uploader may delete an attachment")
        if att.message_id is not None:
            raise Conflict("this attachment was sent; it stays with its message", code="validation_failed")
        table = Attachment.__table__  # type: ignore[attr-defined]
        async with self.db.write() as s:
            conn = await s.connection()
            gone = await conn.execute(table.delete().where(table.c.id == att.id, table.c.message_id.is_(None)))
        if gone.rowcount != 1:
            raise Conflict("this attachment was sent; it stays with its message", code="validation_failed")
        await self._discard(att)

    async def download(self, p: Principal, attachment_id_: str, *, thumbnail: bool = False) -> Download:
        att = await self.get(p, attachment_id_)
        if thumbnail:
            if not att.thumbnail_key or not att.thumbnail_type:
                raise NotFound("this attachment has no thumbnail")
            key, media, size = att.thumbnail_key, att.thumbnail_type, att.thumbnail_size
        else:
            key, media, size = att.storage_key, att.media_type, att.size
        chunks = self.storage.get(key)
        try:
            first = await anext(chunks)
        except (StoredObjectMissing, StopAsyncIteration):
            raise NotFound("attachment not found") from None
        return Download(att, media, size, _prepend(first, chunks))


def load_for_message(conn: Connection, *, tenant_id: str, conversation_id: str, sender_kind: str,
                     sender_id: str, ids: Sequence[str], max_per_message: int) -> list[dict[str, Any]]:
    """The summaries a message stores about its files, in the order given. Each must be an upload of
    this sender in this conversation; another tenant's or conversation's id is ``not_found``. One
    already sent is refused by ``claim_for_message`` after the insert, so that a retried send reaches
    the idempotency check first."""
    if len(ids) > max_per_message:
        raise BadInput(f"a message carries at most {max_per_message} attachments", field="attachments")
    if len(set(ids)) != len(ids):
        raise BadInput("an attachment is listed twice", field="attachments")
    table = Attachment.__table__  # type: ignore[attr-defined]
    rows = conn.execute(table.select().where(table.c.id.in_(list(ids)))).all()
    found = {r.id: Attachment(**r._mapping) for r in rows}
    out = []
    for aid in ids:
        att = found.get(aid)
        if att is None or att.tenant_id != tenant_id or att.conversation_id != conversation_id:
            raise NotFound(f"attachment {aid} not found in this conversation", field="attachments")
        if (att.uploader_kind, att.uploader_id) != (sender_kind, sender_id):
            raise Forbidden(f"attachment {aid} was uploaded by someone else", field="attachments")
        out.append(att.summary())
    return out


def claim_for_message(conn: Connection, message_id: str, ids: Sequence[str]) -> None:
    """Tie the files to the message in the message's own transaction; a concurrent send that took
    one of them first makes this one fail (and roll back) rather than share it."""
    table = Attachment.__table__  # type: ignore[attr-defined]
    result = conn.execute(update(table).where(table.c.id.in_(list(ids)), table.c.message_id.is_(None))
                          .values(message_id=message_id))
    if result.rowcount != len(ids):
        raise Conflict("an attachment is already in another message", code="validation_failed",
                       field="attachments")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
