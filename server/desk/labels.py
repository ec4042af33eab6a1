"""Labels: a tenant's named, coloured tags (its admins define them) that agents put on and take
off conversations. A label or conversation of another tenant is ``not_found`` like a missing one."""

import re

from sqlalchemy import delete as sql_delete
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.models import Conversation
from server.desk.models import ConversationLabel, Label
from server.errors import BadInput, Forbidden, NotFound

__all__ = ["add_to_conversation", "create_label", "delete_label", "get_label", "labels_of", "list_labels",
           "remove_from_conversation", "update_label"]

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _staff(p: Principal) -> None:
    if p.role not in ("agent", "admin"):
        raise Forbidden("labels are for agents and admins")


def _admin(p: Principal) -> None:
    if p.role != "admin":
        raise Forbidden("a tenant's labels are managed by its admins")


def _clean(name: str, colour: str) -> tuple[str, str]:
    name = name.strip()
    if not name:
        raise BadInput("name must not be blank", field="name")
    if not _COLOUR.fullmatch(colour):
        raise BadInput("colour must be #rrggbb", field="colour")
    return name, colour.lower()


async def list_labels(db: Database, p: Principal) -> list[Label]:
    _staff(p)
    async with db.session() as s:
        return list((await s.exec(select(Label).where(Label.tenant_id == p.tenant_id)
                                  .order_by(col(Label.name)))).all())


async def get_label(db: Database, p: Principal, label_id: str) -> Label:
    _staff(p)
    async with db.session() as s:
        row = await s.get(Label, label_id)
    if row is None or row.tenant_id != p.tenant_id:
        raise NotFound("label not found")
    return row


async def create_label(db: Database, p: Principal, name: str, colour: str, *, max_labels: int) -> Label:
    _admin(p)
    name, colour = _clean(name, colour)
    async with db.session() as s:
        count = (await s.exec(select(func.count()).select_from(Label).where(Label.tenant_id == p.tenant_id))).one()
        if count >= max_labels:
            raise BadInput(f"at most {max_labels} labels per tenant", field="name")
        row = Label(tenant_id=p.tenant_id, name=name, colour=colour)
        s.add(row)
        try:
            await s.commit()
        except IntegrityError:
            raise BadInput("a label with this name exists", field="name") from None
        await s.refresh(row)
    return row


async def update_label(db: Database, p: Principal, label_id: str, name: str | None, colour: str | None) -> Label:
    _admin(p)
    row = await get_label(db, p, label_id)
    name, colour = _clean(name if name is not None else row.name, colour if colour is not None else row.colour)
    async with db.session() as s:
        fresh = await s.get(Label, row.id)
        if fresh is None:
            raise NotFound("label not found")
        fresh.name, fresh.colour = name, colour
        s.add(fresh)
        try:
            await s.commit()
        except IntegrityError:
            raise BadInput("a label with this name exists", field="name") from None
        await s.refresh(fresh)
    return fresh


async def delete_label(db: Database, p: Principal, label_id: str) -> None:
    """The label goes, and with it from every conversation that carried it."""
    _admin(p)
    row = await get_label(db, p, label_id)
    async with db.session() as s:
        await s.exec(sql_delete(ConversationLabel).where(col(ConversationLabel.label_id) == row.id))
        fresh = await s.get(Label, row.id)
        if fresh is not None:
            await s.delete(fresh)
        await s.commit()


async def _conversation(db: Database, p: Principal, conversation_id: str) -> Conversation:
    async with db.session() as s:
        conv = await s.get(Conversation, conversation_id)
    if conv is None or conv.tenant_id != p.tenant_id:
        raise NotFound("conversation not found")
    return conv


async def labels_of(db: Database, p: Principal, conversation_id: str) -> list[Label]:
    _staff(p)
    conv = await _conversation(db, p, conversation_id)
    async with db.session() as s:
        q = (select(Label).join(ConversationLabel, col(ConversationLabel.label_id) == col(Label.id))
             .where(ConversationLabel.conversation_id == conv.id, ConversationLabel.tenant_id == p.tenant_id)
             .order_by(col(Label.name)))
        return list((await s.exec(q)).all())


def _agent(p: Principal) -> None:
    if p.role != "agent":
        raise Forbidden("labels are put on conversations by agents")


async def add_to_conversation(db: Database, p: Principal, conversation_id: str, label_id: str) -> list[Label]:
    """Put the label on the conversation (idempotent); the conversation's labels after."""
    _agent(p)
    conv = await _conversation(db, p, conversation_id)
    label = await get_label(db, p, label_id)
    async with db.session() as s:
        if await s.get(ConversationLabel, (conv.id, label.id)) is None:
            s.add(ConversationLabel(conversation_id=conv.id, label_id=label.id, tenant_id=p.tenant_id))
            try:
                await s.commit()
            except IntegrityError:  # a concurrent add of the same label
                await s.rollback()
    return await labels_of(db, p, conv.id)


async def remove_from_conversation(db: Database, p: Principal, conversation_id: str,
                                   label_id: str) -> list[Label]:
    _agent(p)
    conv = await _conversation(db, p, conversation_id)
    label = await get_label(db, p, label_id)
    async with db.session() as s:
        row = await s.get(ConversationLabel, (conv.id, label.id))
        if row is not None:
            await s.delete(row)
            await s.commit()
    return await labels_of(db, p, conv.id)
