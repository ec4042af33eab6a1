"""Snooze: an agent puts a conversation assigned to them aside until a time. It leaves their active
list (and their capacity) and comes back, assigned to them with a ``conversation.updated`` frame,
when the time comes (the waker on every node; a second node's wake changes nothing) or as soon as
the user writes (``server.chat.lifecycle``: a user's write wakes it)."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from server.accounts.auth import Principal
from server.chat.lifecycle import Action, Actor, ActorKind
from server.chat.service import ChatService, actor_of
from server.core.models import Conversation, utcnow
from server.desk.routing import due_snoozes, set_snooze
from server.errors import BadInput, Forbidden, ParleyError

__all__ = ["SnoozeWaker", "snooze", "wake"]

log = logging.getLogger("parley.snooze")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def snooze(chat: ChatService, p: Principal, conversation_id: str, until: datetime, *,
                 max_s: int) -> Conversation:
    if p.role != "agent":
        raise Forbidden("conversations are snoozed by their agent")
    await chat.get_conversation(p, conversation_id)  # another tenant's: not_found, whatever the time
    until, now = _aware(until), utcnow()
    if until <= now:
        raise BadInput("until must be in the future", field="until")
    if until > now + timedelta(seconds=max_s):
        raise BadInput(f"a conversation is snoozed for at most {max_s} s", field="until")
    # the time first: a snoozed conversation always has one (a refused snooze leaves a time that
    # nothing reads, since only snoozed conversations are woken)
    await set_snooze(chat.db, p.tenant_id, conversation_id, until)
    return await chat.apply(p.tenant_id, conversation_id, Action.SNOOZE, actor_of(p), principal=p)


async def wake(chat: ChatService, p: Principal, conversation_id: str) -> Conversation:
    """Its agent takes it up before the time."""
    if p.role != "agent":
        raise Forbidden("conversations are woken by their agent")
    await chat.get_conversation(p, conversation_id)
    conv = await chat.apply(p.tenant_id, conversation_id, Action.WAKE, actor_of(p), principal=p)
    await set_snooze(chat.db, p.tenant_id, conversation_id, None)
    return conv


class SnoozeWaker:
    """Wakes the conversations whose snooze has ended, every ``poll_s`` seconds."""

    def __init__(self, chat: ChatService, *, poll_s: float, batch: int = 100) -> None:
        self.chat = chat
        self.poll_s = poll_s
        self.batch = batch

    async def wake_due(self) -> int:
        woken = 0
        actor = Actor(ActorKind.SYSTEM, "snooze", "Snooze")
        for tenant_id, cid in await due_snoozes(self.chat.db, utcnow(), self.batch):
            try:
                await self.chat.apply(tenant_id, cid, Action.WAKE, actor)
                await set_snooze(self.chat.db, tenant_id, cid, None)
                woken += 1
            except ParleyError:
                log.exception("waking snoozed conversation %s failed", cid)
        return woken

    async def run(self) -> None:
        while True:
            try:
                await self.wake_due()
            except Exception:  # broad: a database hiccup must not end the waker; the next round retries
                log.exception("snooze waker round failed")
            await asyncio.sleep(self.poll_s)
