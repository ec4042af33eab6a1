"""The bot runner: a subscriber with a wider scope. It takes user messages from the outbox
(woken at once after a commit, polling as the crash-repair path), runs the answer pipeline,
streams ``message.delta`` frames, and posts the final answer, an offer or a handoff through the
same write path as a person. A reply is idempotent per triggering message: its
``client_msg_id`` is derived from that message, so a replay after a crash posts it once."""

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from sqlmodel import col, select

from bots.circuit import CircuitBreaker
from bots.config import BotConfig, HandoffSettings
from bots.errors import BotError
from bots.pipeline import AnswerContext, AnswerPipeline, Delta, Final, Handoff, Offer
from bots.ports import Retriever
from bots.replies import Choice
from bots.summary import summarize
from bots.values import Turn
from server.chat.events import BotWork, ConversationEvent
from server.chat.service import ChatService, Sender
from server.core.db import Database
from server.core.metrics import Metrics
from server.core.models import Bot, Conversation, HandoffLog, Message, OutboxRow, Status, Tenant, User
from server.core.outbox import OutboxConsumer, Outcome, RetryPolicy
from server.core.wire import topic_agents, topic_conversation
from server.errors import Conflict, Forbidden, NotFound
from server.handoff.router import Router

__all__ = ["BotRunner", "tenant_canary"]

log = logging.getLogger("parley.bots")
_NS = uuid.UUID("6f1c7d4e-2b7a-4c35-9a59-51a8f0c2d9e1")


def tenant_canary(signing_secret: str) -> str:
    """A per-tenant secret string placed in the system prompt; seeing it in output is a leak."""
    return "cnry-" + hmac.new(signing_secret.encode(), b"prompt-canary", hashlib.sha256).hexdigest()[:20]


def reply_id(message_id: str) -> str:
    return str(uuid.uuid5(_NS, message_id))


class BotRunner:
    def __init__(
        self,
        db: Database,
        chat: ChatService,
        router: Router,
        retriever: Retriever,
        *,
        model: BaseChatModel | None,
        metrics: Metrics,
        default_kb: Callable[[str], Any] | None = None,
        policy: RetryPolicy | None = None,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        batch: int = 20,
        concurrency: int = 8,
        history_turns: int = 20,
        answer_deadline_s: float = 15.0,
        canary_refresh_s: float = 60.0,
        foreign_canaries_max: int = 10_000,
    ) -> None:
        self.db = db
        self.chat = chat
        self.router = router
        self.retriever = retriever
        self.model = model
        self.metrics = metrics
        self.breaker = CircuitBreaker()
        self.pipeline = AnswerPipeline(retriever, model, self.breaker)
        self.default_kb = default_kb
        self.history_turns = history_turns
        self.answer_deadline_s = answer_deadline_s
        self.canary_refresh_s = canary_refresh_s
        self.foreign_canaries_max = foreign_canaries_max
        self._canaries: dict[str, str] = {}
        self._canaries_at: float | None = None
        self.consumer = OutboxConsumer(db, "bot", self._handle, policy=policy or RetryPolicy(max_attempts=3),
                                       lease_s=lease_s, batch=batch, concurrency=concurrency, poll_s=poll_s,
                                       on_start=self.pipeline.start_warming)
        self.streaming: dict[str, asyncio.Task[Any]] = {}
        # Every answer in flight by conversation: a newer message (a safety report, a request for
        # a person) may hand off while the answer to an earlier one still streams.
        self._answering: dict[asyncio.Task[Any], str] = {}
        self._taken_over: set[asyncio.Task[Any]] = set()

    async def on_bot_work(self, _event: BotWork) -> None:
        self.consumer.wake.set()

    async def on_conversation_event(self, event: ConversationEvent) -> None:
        """On every node (the answer may stream from any): a human took over, or the user asked
        for one, so whatever the bot streams into the conversation stops now. The bot's own
        handoff arrives here from inside its task, which must finish its work."""
        if event.stop_bot:
            current = asyncio.current_task()
            for task, cid in list(self._answering.items()):
                if cid == event.conversation_id and task is not current:
                    del self._answering[task]
                    if self.streaming.get(cid) is task:
                        del self.streaming[cid]
                    self._taken_over.add(task)
                    task.cancel()

    def start(self) -> "asyncio.Task[None]":
        """The runner's outbox consumer, in the background of this process (the app's start-up)."""
        return self.consumer.start()

    async def run_once(self) -> int:
        return await self.consumer.run_once()

    async def drain(self) -> None:
        """Handle everything due now (tests and shutdown)."""
        await self.consumer.drain()

    async def stop(self) -> None:
        """Cancel the answers in hand; their rows are claimed again when the lease runs out."""
        await self.consumer.stop()

    async def _handle(self, row: OutboxRow) -> Outcome:
        cid = str(row.payload.get("conversation_id"))
        task = asyncio.current_task()
        assert task is not None
        try:
            self.streaming[cid] = task
            self._answering[task] = cid
            await self._answer(row.tenant_id, cid, str(row.payload.get("message_id")))
            return Outcome(True)
        except asyncio.CancelledError:
            if task not in self._taken_over:
                raise  # shut down: the row keeps its lease and is answered after a restart
            # Cancelled because a human joined: the row is settled, nothing more to post.
            task.uncancel()
            return Outcome(True, error="cancelled: human took over")
        finally:
            self._taken_over.discard(task)
            if self.streaming.get(cid) is task:
                del self.streaming[cid]
            self._answering.pop(task, None)

    async def _load(self, tenant_id: str, cid: str, message_id: str) -> tuple[
            Conversation, Tenant, Bot | None, Message, list[Message], User | None] | None:
        async with self.db.session() as s:
            conv = await s.get(Conversation, cid)
            trigger = await s.get(Message, message_id)
            if (conv is None or conv.tenant_id != tenant_id or trigger is None or conv.status != Status.BOT
                    or trigger.deleted_at is not None):
                return None  # (a question its sender deleted before the answer is not answered)
            tenant = await s.get(Tenant, tenant_id)
            bot = await s.get(Bot, conv.bot_id) if conv.bot_id else None
            if trigger.seq < conv.last_seq:
                # an agent's private note is no answer to the user (nor part of the AI's context)
                later = (await s.exec(select(Message).where(
                    Message.conversation_id == cid, Message.seq > trigger.seq, Message.kind == "text",
                    col(Message.sender_kind).in_(("bot", "agent"))).limit(1))).first()
                if later is not None and later.sender_kind == "agent":
                    return None
            history = list((await s.exec(
                select(Message).where(Message.conversation_id == cid, Message.seq < trigger.seq,
                                      Message.kind == "text", col(Message.deleted_at).is_(None))
                .order_by(col(Message.seq).desc()).limit(self.history_turns))).all())
            user = (await s.exec(select(User).where(User.tenant_id == tenant_id,
                                                    User.external_id == conv.user_id))).first()
        assert tenant is not None
        return conv, tenant, bot, trigger, list(reversed(history)), user

    async def _kb_for(self, tenant_id: str, bot: Bot | None) -> str:
        if bot is not None and bot.knowledge_base_id:
            return bot.knowledge_base_id
        if self.default_kb is not None:
            kb = await self.default_kb(tenant_id)
            if kb:
                return str(kb)
        return "none"

    async def _answer(self, tenant_id: str, cid: str, message_id: str) -> None:
        loaded = await self._load(tenant_id, cid, message_id)
        if loaded is None:
            return
        conv, tenant, bot, trigger, history, user = loaded
        kb_id = await self._kb_for(tenant_id, bot)
        try:
            config = BotConfig(name=bot.name if bot else "Assistant", knowledge_base_id=kb_id,
                               persona=(bot.persona or "") if bot else "",
                               handoff=HandoffSettings.from_dict(bot.handoff if bot else None),
                               answer_deadline_s=self.answer_deadline_s)
        except BotError:
            config = BotConfig(name="Assistant", knowledge_base_id=kb_id, answer_deadline_s=self.answer_deadline_s)
        ctx = AnswerContext(
            bot=config, canary=tenant_canary(tenant.signing_secret), text=trigger.text,
            history=[_turn(m) for m in history], user_attributes=(user.attributes if user else {}) or {},
            offered_human_before=conv.bot_offered_human, foreign_canaries=await self.foreign_canaries(tenant_id),
        )
        sender = Sender("bot", conv.bot_id or "bot", config.name)
        draft_id = reply_id(message_id)
        cmid = draft_id
        async for event in self.pipeline.run(ctx):
            match event:
                case Delta():
                    frame = json.dumps({"type": "message.delta", "conversation_id": cid, "draft_id": draft_id,
                                        "index": event.index, "delta": event.text})
                    await self.chat.bus.publish(topic_conversation(cid), frame)
                    await self.chat.bus.publish(topic_agents(cid), frame)
                case Final():
                    await self._log(tenant_id, cid, event.decision.to_record() if event.decision else None)
                    cites = [c.to_dict() for c in event.citations]
                    await self._post(tenant_id, cid, sender, event.text, cmid, draft_id, cites, event.choices)
                    self.metrics.bot_answered(tenant_id)
                case Offer():
                    await self._log(tenant_id, cid, event.decision.to_record())
                    if await self._post(tenant_id, cid, sender, event.text, cmid, draft_id, [], event.choices):
                        await self._mark_offered(cid)
                case Handoff():
                    await self._log(tenant_id, cid, event.decision.to_record())
                    await self.router.handoff(tenant_id, cid, reason=event.decision.reason_code,
                                              notice=event.notice)

    async def foreign_canaries(self, tenant_id: str) -> tuple[str, ...]:
        """Every other tenant's canary: seeing one in this tenant's answer is a cross-tenant leak,
        refused by the output guard. Reloaded every ``canary_refresh_s`` (new tenants)."""
        now = time.monotonic()
        if self._canaries_at is None or now - self._canaries_at >= self.canary_refresh_s:
            async with self.db.session() as s:
                rows = (await s.exec(select(Tenant).order_by(col(Tenant.created_at).desc())
                                     .limit(self.foreign_canaries_max + 1))).all()
            self._canaries = {t.id: tenant_canary(t.signing_secret) for t in rows}
            self._canaries_at = now
        return tuple(c for tid, c in self._canaries.items() if tid != tenant_id)

    async def _post(self, tenant_id: str, cid: str, sender: Sender, text: str, cmid: str, draft_id: str,
                    citations: list[dict[str, Any]], choices: tuple[Choice, ...] = ()) -> bool:
        """``choices``: quick-reply buttons under the message (server.chat.rich)."""
        rich = {"quick_replies": [{"label": c.label, "value": c.value} for c in choices]} if choices else None
        try:
            await self.chat.send(tenant_id, cid, sender, text, client_msg_id=cmid, draft_id=draft_id,
                                 citations=citations, rich=rich)
            return True
        except (Forbidden, NotFound, Conflict):
            return False  # a human owns the conversation now, or it is gone

    async def _mark_offered(self, cid: str) -> None:
        async with self.db.write() as s:
            conv = await s.get(Conversation, cid)
            if conv is not None:
                conv.bot_offered_human = True
                s.add(conv)

    async def _log(self, tenant_id: str, cid: str, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        async with self.db.write() as s:
            s.add(HandoffLog(tenant_id=tenant_id, conversation_id=cid, action=str(record.get("action")),
                             reason_code=str(record.get("reason_code")), record=_jsonable(record)))

    async def post_summary(self, event: ConversationEvent) -> None:
        """After a handoff, the agents get a summary of the conversation as a note."""
        if not event.summarize:
            return
        text = await self.summary(event.tenant_id, event.conversation_id)
        if text:
            await self.chat.send(event.tenant_id, event.conversation_id,
                                 Sender("system", "system", "Handoff summary"), text, kind="note")

    async def summary(self, tenant_id: str, cid: str) -> str | None:
        async with self.db.session() as s:
            conv = await s.get(Conversation, cid)
            msgs = list((await s.exec(select(Message).where(Message.conversation_id == cid, Message.kind == "text",
                                                            col(Message.deleted_at).is_(None))
                                      .order_by(col(Message.seq).desc()).limit(self.history_turns))).all())
        reason = conv.handoff_reason if conv else None
        return await summarize([_turn(m) for m in reversed(msgs)], self.model, reason=reason)


def _turn(m: Message) -> Turn:
    role = {"user": "user", "bot": "bot", "agent": "agent"}.get(m.sender_kind, "system")
    return Turn(role=role, text=m.text, name=m.sender_name)  # type: ignore[arg-type]


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o)))

