"""The WebSocket gateway (``/v1/ws``): handshake, resume from the database, the client frames
of the contract, rate limits, bounded send queues and ``bye`` before every close it starts."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from litestar import WebSocket
from sqlmodel import col, select

from server.accounts.auth import Principal, token_limits, verify_token
from server.chat.edits import MessageEdits
from server.chat.events import ConversationEvent
from server.chat.lifecycle import OPEN_STATUSES, Action, Status
from server.chat.reactions import Reactions
from server.chat.service import ChatService, Sender, actor_of, conversation_json, iso, message_frame, message_json
from server.core.events import PresenceChanged
from server.core.metrics import Metrics
from server.core.models import Conversation, Message, new_id
from server.core.origins import origin_allowed
from server.core.ratelimit import Charge, Limiter, Limits, MemoryLimiter, TokenBucket, client_ip, tenant_key, user_key
from server.core.settings import Settings
from server.core.wire import (
    ConversationStart,
    HandoffRequest,
    Hello,
    MessageDelete,
    MessageEdit,
    Ping,
    ReactionAdd,
    ReactionRemove,
    Read,
    Send,
    Subscribe,
    Typing,
    Unsubscribe,
    conversation_of,
    parse_frame,
    topic_agents,
    topic_conversation,
    topic_queue,
    topic_user,
)
from server.errors import (
    CLIENT_ERRORS,
    AuthError,
    BadInput,
    Conflict,
    NotFound,
    ParleyError,
    RateLimited,
    as_parley,
    close_code_for,
)
from server.fanout import Bus, Connection
from server.realtime.presence import ClusterPresence

__all__ = ["Gateway", "Session"]

log = logging.getLogger("parley.gateway")


class _Closing(Exception):
    """Raised inside a session to end it after its error/bye frames went out."""


class _Flag:
    """A set-once flag (an ``asyncio.Event`` nobody waits on would hold a deque per socket)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Session:
    # Slots: ten thousand idle sessions each hold only what they need (no per-instance dict).
    __slots__ = ("_follow_later", "announced", "bucket", "closed", "conn", "gw", "id", "killing", "native",
                 "principal", "resumed", "socket", "task", "writer")

    def __init__(self, gw: "Gateway", socket: WebSocket[Any, Any, Any], native: bool) -> None:
        self.gw = gw
        self.socket = socket
        self.id = new_id()
        self.principal: Principal | None = None
        self.conn: Connection | None = None
        self.native = native
        self.writer: asyncio.Task[None] | None = None
        self.closed = _Flag()
        self.bucket = TokenBucket(gw.settings.rate_per_connection, gw.settings.burst_per_connection)
        self.killing = False
        self.task: asyncio.Task[Any] | None = None
        # Topics this session was told to follow before its resume was served: they wait.
        self.resumed = False
        self._follow_later: list[str] = []
        self.announced = False  # counted in cluster presence

    # -- output --------------------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> None:
        if self.conn is None:
            return
        self.conn.offer(json.dumps(frame))

    async def send_direct(self, frame: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # broad: the peer may be gone in any way; the session ends regardless
            await asyncio.wait_for(self.socket.send_text(json.dumps(frame)), self.gw.settings.goodbye_send_timeout_s)

    def _wake_writer(self) -> None:
        """A frame was queued: make sure a writer runs (one at a time, so frames keep their order)."""
        writer = self.writer
        if (writer is None or writer.done()) and not self.closed.is_set():
            self.writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Send what is queued, in order, then end: an idle socket holds no writer task."""
        conn = self.conn
        assert conn is not None
        q = conn.queue
        send = self.socket.send_text
        while not q.empty():
            try:
                await send(q.get_nowait())
            except Exception:  # broad: whatever the transport raises, the socket is gone
                conn.overflowed = True  # nothing more is queued (each frame would start a writer)
                q.abandon()
                log.debug("session %s: send failed; the socket is gone", self.id, exc_info=True)
                return
            q.task_done()
            if conn.backed_up():
                # uWS would drop what it cannot hold: wait until the reader takes some (the queue
                # fills meanwhile, which makes a reader that never does a slow consumer).
                await self._drained(conn)

    async def _drained(self, conn: Connection) -> None:
        deadline = time.monotonic() + self.gw.settings.replay_stall_s
        while conn.backed_up():
            if time.monotonic() > deadline and not conn.overflowed:
                conn.overflowed = True
                self.on_overflow(conn)
                return
            await asyncio.sleep(0.005)

    def on_overflow(self, _conn: Connection) -> None:
        if not self.killing:
            self.killing = True
            self.gw.metrics.errors.labels("slow_consumer").inc()
            asyncio.get_running_loop().create_task(
                self.kill("slow_consumer", "too many frames waiting; resume from your last seq", reconnect=True)
            )

    async def kill(self, code: str, detail: str, *, reconnect: bool) -> None:
        """End the session from outside its receive loop (slow consumer, shutdown). Once only:
        touching a socket socketify has already closed crashes the process."""
        if self.closed.is_set():
            return
        self.closed.set()
        if self.writer is not None:
            self.writer.cancel()
        conn = self.conn
        if conn is not None:
            conn.overflowed = True  # nothing more from the queue
            detach = getattr(self.gw.bus.local, "detach", None)
            if detach is not None:
                await detach(conn)  # nothing more from uWS topics
        if code != "shutdown":
            await self.send_direct({"type": "error", "code": code, "detail": detail, "fatal": True})
        await self.send_direct({"type": "bye", "code": code, "detail": detail, "reconnect": reconnect})
        await self._flushed()
        with contextlib.suppress(Exception):  # broad: closing a socket the peer may already have dropped
            await asyncio.wait_for(self.socket.close(code=close_code_for(code)), self.gw.settings.ws_close_timeout_s)
        # A reader that stopped reading leaves the handler blocked in receive(): end it, so the
        # session leaves the gateway and its memory is freed whatever the transport does.
        # (Not at shutdown: a session cut mid-query would only spoil its database connection.)
        if (code != "shutdown" and self.task is not None and self.task is not asyncio.current_task()
                and not self.task.done()):
            self.task.cancel()

    async def _flushed(self) -> None:
        """On socketify, closing drops what uWS still holds for the socket, the error and bye
        frames included: wait (``goodbye_send_timeout_s`` at most) until the reader took them."""
        conn = self.conn
        if conn is None or conn.buffered is None:
            return
        deadline = time.monotonic() + self.gw.settings.goodbye_send_timeout_s
        while conn.buffered() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def fatal(self, code: str, detail: str, *, reconnect: bool = False, ref: str | None = None,
                    retry_after_ms: int | None = None) -> None:
        self.gw.metrics.errors.labels(code).inc()
        if self.conn is not None:
            self.conn.queue.on_put = None  # no writer races the frames below
        if self.writer is not None:
            self.writer.cancel()
        frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail, "fatal": True}
        if ref is not None:
            frame["ref"] = ref
        if retry_after_ms is not None:
            frame["retry_after_ms"] = retry_after_ms
        await self.send_direct(frame)
        await self.send_direct({"type": "bye", "code": code, "detail": detail, "reconnect": reconnect})
        await self._flushed()
        with contextlib.suppress(Exception):  # broad: closing a socket the peer may already have dropped
            await asyncio.wait_for(self.socket.close(code=close_code_for(code)), self.gw.settings.ws_close_timeout_s)
        raise _Closing

    def error(self, exc: ParleyError, ref: str | None, client_msg_id: str | None = None,
              conversation_id: str | None = None) -> None:
        self.gw.metrics.errors.labels(exc.code).inc()
        frame: dict[str, Any] = {"type": "error", "code": exc.code, "detail": exc.detail, "fatal": False}
        if conversation_id is not None:
            frame["conversation_id"] = conversation_id
        if ref is not None:
            frame["ref"] = ref
        if client_msg_id is not None:
            frame["client_msg_id"] = client_msg_id
        if exc.retry_after_ms is not None:
            frame["retry_after_ms"] = exc.retry_after_ms
        if exc.field is not None:
            frame["field"] = exc.field
        self.push(frame)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        s = self.gw.settings
        origin = self.socket.headers.get("origin")
        self.task = asyncio.current_task()
        await self.socket.accept()
        try:
            if not self.gw.origin_allowed(origin, self.socket.headers.get("host"),
                                          self.socket.scope.get("scheme", "ws")):
                await self.fatal("forbidden", f"origin {origin!r} is not allowed")
            if self.gw.draining:
                await self.fatal("unavailable", "server is shutting down", reconnect=True)
            ip = self.gw.client_ip(self.socket)
            if not self.gw.begin_handshake(ip):
                await self.fatal("rate_limited", "too many sockets from your address are waiting to say hello",
                                 reconnect=True, retry_after_ms=int(s.hello_timeout_s * 1000))
            try:
                hello = await self._hello(s.hello_timeout_s)
                p = await self._authenticate(hello)
            finally:
                self.gw.end_handshake(ip)
            key = (p.tenant_id, p.role, p.id)
            if len(self.gw.by_principal.get(key, ())) >= s.max_connections_per_user:
                await self.fatal("connection_limit",
                                 f"at most {s.max_connections_per_user} connections per user")
            self.principal = p
            buffered = _buffered_amount(self.socket) if self.native else None
            self.conn = Connection(self.id, key, queue_max=s.send_queue_max, on_overflow=self.on_overflow,
                                   native_send=self.socket.send if self.native else None,  # type: ignore[arg-type]
                                   buffered=buffered, buffer_limit=s.ws_slow_reader_bytes)
            self.conn.queue.on_put = self._wake_writer
            self.gw.register(self)
            self.push({"type": "welcome", "connection_id": self.id,
                       "me": {"id": p.id, "role": p.role, "name": p.name},
                       "limits": {"max_frame_bytes": s.max_frame_bytes, "max_text_chars": s.max_text_chars,
                                  "edit_window_s": s.message_edit_window_s,
                                  "reaction_emojis": list(self.gw.reactions.allowed)},
                       **({"ref": hello.ref} if hello.ref else {})})
            await self._initial_subscriptions(p, hello.resume)
            await self._loop()
        except _Closing:
            pass
        except asyncio.CancelledError:
            if not self.killing:
                raise
        except Exception:  # broad: whatever ended a session is logged and answered internal
            log.exception("session %s failed", self.id)
            with contextlib.suppress(_Closing):
                await self.fatal("internal", "internal error", reconnect=True)
        finally:
            await self.gw.unregister(self)
            if self.writer is not None:
                self.writer.cancel()
            self.closed.set()

    async def _hello(self, timeout: float) -> Hello:
        try:
            event = await asyncio.wait_for(self.socket.receive(), timeout)
        except TimeoutError:
            await self.fatal("auth_timeout", f"no hello within {timeout:g} s")
        if event["type"] == "websocket.disconnect":
            raise _Closing
        text = event.get("text")
        if not isinstance(text, str):
            await self.fatal("bad_frame", "the first frame must be a JSON text frame 'hello'")
            raise AssertionError("unreachable")
        try:
            frame = parse_frame(text, max_bytes=self.gw.settings.max_frame_bytes,
                                max_depth=self.gw.settings.max_json_depth)
        except ParleyError as exc:
            await self.fatal(exc.code, exc.detail)
        if not isinstance(frame, Hello):
            await self.fatal("auth_required", "the first frame must be 'hello'", ref=frame.ref)
            raise AssertionError("unreachable")
        return frame

    async def _authenticate(self, hello: Hello) -> Principal:
        try:
            return await verify_token(self.gw.db, hello.token, token_limits(self.gw.settings))
        except AuthError as exc:
            await self.fatal(exc.code, exc.detail, ref=hello.ref)
        except ParleyError as exc:
            await self.fatal(exc.code, exc.detail, reconnect=True, ref=hello.ref)
        raise AssertionError("unreachable")

    async def _initial_subscriptions(self, p: Principal, resume: dict[str, int]) -> None:
        bus, conn = self.gw.bus, self.conn
        assert conn is not None
        await bus.subscribe(conn, topic_user(p.tenant_id, p.role, p.id))
        async with self.gw.db.session() as s:
            q = select(Conversation.id, Conversation.last_seq).where(Conversation.tenant_id == p.tenant_id)
            if p.role == "user":
                q = q.where(Conversation.user_id == p.id, col(Conversation.status).in_(OPEN_STATUSES))
            else:
                q = q.where(Conversation.assignee_id == p.id, Conversation.status == Status.ASSIGNED)
            own = list((await s.exec(q.limit(self.gw.settings.max_subscriptions))).all())
        if p.role == "agent":
            await bus.subscribe(conn, topic_queue(p.tenant_id))
        for cid, last_seq in own:
            if cid not in resume:
                topic = self._topic(cid)
                conn.resume.start_at(topic, last_seq)
                await bus.subscribe(conn, topic)
        for cid, last_seq in resume.items():
            try:
                await self._subscribe(cid, last_seq, ref=None, resume=True)
            except ParleyError as exc:
                self.error(exc, None, conversation_id=cid)
        self.resumed = True
        for topic in self._follow_later:
            await bus.subscribe(conn, topic)
        self._follow_later.clear()
        # Online only once the resume is served: what presence triggers (an assignment) then
        # reaches a session that is ready for it.
        await self.gw.came_online(self)

    async def follow(self, topic: str) -> None:
        """Follow ``topic`` from now on (a conversation this principal was given)."""
        if self.conn is None:
            return
        if not self.resumed:
            self._follow_later.append(topic)
            return
        await self.gw.bus.subscribe(self.conn, topic)

    def _topic(self, conversation_id: str) -> str:
        assert self.principal is not None
        return topic_conversation(conversation_id) if self.principal.role == "user" else topic_agents(conversation_id)

    async def _subscribe(self, cid: str, after_seq: int | None, *, ref: str | None, resume: bool = False) -> None:
        p, conn = self.principal, self.conn
        assert p is not None and conn is not None
        async with self.gw.db.session() as s:
            conv = await s.get(Conversation, cid)
        if conv is None or not self.gw.chat.can_see(p, conv):
            # Another tenant's conversation answers exactly like a missing one.
            if resume:
                raise Conflict(f"conversation {cid} cannot be resumed; start again from history",
                               code="resync_required")
            raise NotFound("conversation not found")
        if after_seq is not None and after_seq > conv.last_seq:
            raise Conflict(f"after_seq {after_seq} is ahead of the conversation (last_seq {conv.last_seq})",
                           code="invalid_cursor")
        if len(conn.topics) >= self.gw.settings.max_subscriptions:
            raise RateLimited("too many subscriptions on this connection", code="validation_failed")
        topic = self._topic(cid)
        if after_seq is not None and conv.last_seq > after_seq:
            # A replay reads and sends every message after the cursor: it is paid per message.
            wait = await self.gw.limiter.take(Charge(self.gw.limits.user_replay, self._user_key(),
                                                     conv.last_seq - after_seq))
            if wait:
                raise RateLimited(f"replaying {conv.last_seq - after_seq} messages would exceed your replay rate; "
                                  "subscribe again later", retry_after_ms=wait)
        if after_seq is None:
            conn.resume.start_at(topic, conv.last_seq)
            await self.gw.bus.subscribe(conn, topic)
            self.push({"type": "subscribed", "conversation_id": cid, "last_seq": conv.last_seq,
                       **({"ref": ref} if ref else {})})
            return
        last = await self.resync(cid, topic, after_seq)
        self.push({"type": "subscribed", "conversation_id": cid, "last_seq": last, **({"ref": ref} if ref else {})})

    async def resync(self, cid: str, topic: str, after_seq: int, *, thaw: bool = False) -> int:
        """Replay ``seq > after_seq`` from the database while live frames for the topic wait,
        then let through only what the replay did not send: no gap, no duplicate, no reordering.
        Live copies of replayed messages that are published later are dropped by the floor.
        ``thaw``: the catch-up after the bus's return, which ends the topic's freeze."""
        conn = self.conn
        assert conn is not None
        conn.resume.hold(topic)
        last = after_seq
        try:
            await self.gw.bus.subscribe(conn, topic)
            last = await self._replay(cid, after_seq)
        finally:
            held = conn.resume.release(topic, last)
            if thaw:
                held += conn.resume.thaw(topic)
        for data in held:
            conn.offer(data, topic)
        return last

    async def _replay(self, cid: str, after_seq: int) -> int:
        p = self.principal
        assert p is not None
        last = after_seq
        batch = self.gw.settings.replay_batch
        while True:
            q = (select(Message).where(Message.conversation_id == cid, Message.tenant_id == p.tenant_id,
                                       Message.seq > last).order_by(col(Message.seq)).limit(batch))
            if p.role == "user":
                q = q.where(Message.kind != "note")
            async with self.gw.db.session() as s:
                rows = list((await s.exec(q)).all())
            for m in rows:
                await self._room()
                self.conn.offer(message_frame(m))  # type: ignore[union-attr]
                last = m.seq
            if len(rows) < batch:
                break
        # Only what was replayed: a message committed after the query still arrives live.
        return last

    async def _room(self) -> None:
        """Wait until the send queue has room, so a long history never overflows it; a reader
        that takes no frames at all for ``replay_stall_s`` is a slow consumer after all."""
        conn = self.conn
        assert conn is not None
        limit = conn.queue.maxsize - 16
        if conn.queue.qsize() < limit:
            return
        deadline = time.monotonic() + self.gw.settings.replay_stall_s
        while conn.queue.qsize() >= limit and not conn.overflowed:
            if time.monotonic() > deadline:
                conn.overflowed = True
                self.on_overflow(conn)
                return
            await asyncio.sleep(0.005)

    async def _loop(self) -> None:
        s = self.gw.settings
        while True:
            event = await self.socket.receive()
            etype = event["type"]
            if etype == "websocket.disconnect":
                return
            if etype != "websocket.receive":
                continue
            text = event.get("text")
            if not isinstance(text, str):
                self.error(BadInput("binary frames are not supported; send JSON text frames", code="bad_frame"),
                           None)
                continue
            ref: str | None = None
            cmid: str | None = None
            try:
                frame = parse_frame(text, max_bytes=s.max_frame_bytes, max_depth=s.max_json_depth)
                ref = frame.ref
                cmid = getattr(frame, "client_msg_id", None)
                await self._dispatch(frame)
            except _Closing:
                raise
            except CLIENT_ERRORS as exc:
                self.error(as_parley(exc), ref, cmid)
            except Exception:  # broad: one bad frame must not end the session
                # One bad frame must not end the session: log it, answer it, keep reading.
                log.exception("frame failed on session %s", self.id)
                self.error(ParleyError("internal error handling this frame", code="internal"), ref, cmid)
            if self.closed.is_set():
                raise _Closing

    async def _dispatch(self, frame: Any) -> None:
        p = self.principal
        assert p is not None
        gw = self.gw
        await self._rate_limit(_FRAME_COST.get(type(frame), 1.0), message=isinstance(frame, Send))
        match frame:
            case Send():
                t0 = time.perf_counter()
                posted = await gw.chat.post_message(
                    p.tenant_id, frame.conversation_id, Sender.of(p), frame.text or "",
                    client_msg_id=frame.client_msg_id, principal=p, attachments=frame.attachments,
                    reply_to=frame.reply_to, rich=frame.rich)
                m = posted.message
                self.push({"type": "ack", "client_msg_id": m.client_msg_id, "conversation_id": m.conversation_id,
                           "message_id": m.id, "seq": m.seq, "created_at": message_created(m),
                           **({"ref": frame.ref} if frame.ref else {})})
                gw.metrics.ack_latency.observe(time.perf_counter() - t0)
                if posted.created:
                    gw.metrics.messages.labels(p.sender_kind).inc()
                if self.native and self.conn is not None:
                    # uWS topics bypass our queue; let the ack leave before the message does.
                    await self.conn.queue.join()
                await gw.chat.publish(posted)
            case Ping():
                self.push({"type": "pong", **({"ref": frame.ref} if frame.ref else {})})
            case Subscribe():
                await self._subscribe(frame.conversation_id, frame.after_seq, ref=frame.ref)
            case Unsubscribe():
                conv = await gw.chat.get_conversation(p, frame.conversation_id)
                assert self.conn is not None
                await gw.bus.unsubscribe(self.conn, self._topic(conv.id))
                self.push({"type": "unsubscribed", "conversation_id": conv.id,
                           **({"ref": frame.ref} if frame.ref else {})})
            case Typing():
                conv = await gw.chat.get_conversation(p, frame.conversation_id)
                await self._relay(conv.id, {"type": "typing", "conversation_id": conv.id,
                                            "participant": self._participant(), "active": frame.active})
            case Read():
                seq = await gw.chat.mark_read(p, frame.conversation_id, frame.seq)
                await self._relay(frame.conversation_id, {"type": "read", "conversation_id": frame.conversation_id,
                                                          "participant": self._participant(), "seq": seq})
            case HandoffRequest():
                conv = await gw.chat.get_conversation(p, frame.conversation_id)
                await gw.chat.apply(p.tenant_id, conv.id, Action.HANDOFF, actor_of(p), principal=p,
                                    reason="user_request")
                conv = await gw.chat.get_conversation(p, conv.id)  # as the handoff's handlers left it
                if frame.ref:
                    self.push({"type": "conversation", "conversation": conversation_json(conv), "ref": frame.ref})
            case ConversationStart():
                conv = await gw.chat.start_conversation(p, bot_id=frame.bot_id)
                assert self.conn is not None
                await gw.bus.subscribe(self.conn, self._topic(conv.id))
                self.push({"type": "conversation", "conversation": conversation_json(conv),
                           **({"ref": frame.ref} if frame.ref else {})})
                if frame.text:
                    await self._dispatch(Send(conversation_id=conv.id, text=frame.text, ref=frame.ref,
                                              client_msg_id=frame.client_msg_id or _uuid()))
            case MessageEdit() | MessageDelete() | ReactionAdd() | ReactionRemove():
                await self._change_message(frame)
            case Hello():
                raise BadInput("already authenticated", code="bad_frame")

    async def _change_message(self, frame: MessageEdit | MessageDelete | ReactionAdd | ReactionRemove) -> None:
        """Edit, delete, react: answered with the frame every side gets (and the ``ref``)."""
        p, gw = self.principal, self.gw
        assert p is not None
        ref = {"ref": frame.ref} if frame.ref else {}
        match frame:
            case MessageEdit():
                m = await gw.edits.edit(p, frame.conversation_id, frame.message_id, frame.text or "")
                self.push({"type": "message.edited", "conversation_id": m.conversation_id,
                           "message": message_json(m), **ref})
            case MessageDelete():
                m = await gw.edits.delete(p, frame.conversation_id, frame.message_id)
                self.push({"type": "message.deleted", "conversation_id": m.conversation_id, "message_id": m.id,
                           "seq": m.seq, "deleted_at": iso(m.deleted_at) if m.deleted_at else None, **ref})
            case ReactionAdd() | ReactionRemove():
                out = await gw.reactions.set(p, frame.conversation_id, frame.message_id, frame.emoji,
                                             active=isinstance(frame, ReactionAdd))
                self.push({**out, **ref})

    async def _relay(self, cid: str, frame: dict[str, Any]) -> None:
        data = json.dumps(frame)
        await self.gw.bus.publish(topic_conversation(cid), data)
        await self.gw.bus.publish(topic_agents(cid), data)

    def _participant(self) -> dict[str, Any]:
        p = self.principal
        assert p is not None
        return {"kind": p.sender_kind, "id": p.id, "name": p.name}

    def _user_key(self) -> str:
        p = self.principal
        assert p is not None
        return user_key(p.tenant_id, p.role, p.id)

    async def _rate_limit(self, cost: float, *, message: bool = False) -> None:
        """The connection's own bucket, then the user's (shared with REST writes) and, for a
        message, the tenant's: all taken or none."""
        p = self.principal
        assert p is not None
        limits = self.gw.limits
        wait = self.bucket.wait_ms(cost)
        if not wait:
            charges = [Charge(limits.user_frames, self._user_key(), cost)]
            if message:
                charges.append(Charge(limits.tenant_messages, tenant_key(p.tenant_id)))
            wait = await self.gw.limiter.take(*charges)
        if wait:
            raise RateLimited("too many frames; slow down", retry_after_ms=wait)
        self.bucket.take(cost)


#: What a frame costs against the rate limits (a send is 1). Every frame costs something, so no
#: kind of frame can be sent without limit.
_FRAME_COST: dict[type, float] = {Send: 1.0, ConversationStart: 1.0, Subscribe: 1.0, HandoffRequest: 1.0,
                                  Read: 0.5, Typing: 0.2, Unsubscribe: 0.2, Ping: 0.1, Hello: 0.1,
                                  MessageEdit: 1.0, MessageDelete: 1.0, ReactionAdd: 1.0, ReactionRemove: 1.0}


def _buffered_amount(socket: WebSocket[Any, Any, Any]) -> Callable[[], int] | None:
    """socketify's count of bytes uWS holds unsent for the socket (serving.py puts it in the
    scope's extensions)."""
    found = (socket.scope.get("extensions") or {}).get("parley.buffered_amount")
    return found if callable(found) else None


def message_created(m: Message) -> str:
    return iso(m.created_at)


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


class Gateway:
    def __init__(self, settings: Settings, db: Any, chat: ChatService, bus: Bus, metrics: Metrics,
                 *, native: bool = False, limiter: Limiter | None = None) -> None:
        self.settings = settings
        self.db = db
        self.chat = chat
        self.bus = bus
        self.metrics = metrics
        self.native = native
        self.sessions: dict[str, Session] = {}
        self.by_principal: dict[tuple[str, str, str], set[Session]] = {}
        self.limiter = limiter or MemoryLimiter(max_keys=settings.ratelimit_max_keys)
        self.limits = Limits.from_settings(settings)
        self._pending: dict[str, int] = {}
        self.draining = False
        self.drained = False
        self.presence = ClusterPresence(bus, heartbeat_s=settings.presence_heartbeat_s,
                                        ttl_s=settings.presence_ttl_s)
        # Changes to sent messages, over the socket and REST alike (server.chat.edits, .reactions).
        self.edits = MessageEdits(chat, window_s=settings.message_edit_window_s)
        self.reactions = Reactions(chat, allowed=settings.reaction_emojis)

    def origin_allowed(self, origin: str | None, host: str | None, scheme: str = "ws") -> bool:
        own = self.settings.public_url or (f"{scheme}://{host}" if host else None)
        return origin_allowed(origin, self.settings.allowed_origins, own=own)

    async def handle(self, socket: WebSocket[Any, Any, Any]) -> None:
        await Session(self, socket, self.native).run()

    def register(self, session: Session) -> None:
        assert session.conn is not None
        self.sessions[session.id] = session
        self.by_principal.setdefault(session.conn.key, set()).add(session)
        self.metrics.connections.set(len(self.sessions))

    async def unregister(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        assert session.conn is not None and session.principal is not None
        await self.bus.drop(session.conn)
        peers = self.by_principal.get(session.conn.key)
        if peers is not None:
            peers.discard(session)
            if not peers:
                del self.by_principal[session.conn.key]
        self.metrics.connections.set(len(self.sessions))
        if session.announced:
            session.announced = False
            try:
                if await self.presence.disconnected(session.conn.key):
                    await self.presence_changed(session.principal, "offline")
            except Exception:  # broad on purpose: a closing socket must leave whatever presence does
                log.exception("presence of closing session %s failed", session.id)

    def client_ip(self, socket: WebSocket[Any, Any, Any]) -> str:
        return client_ip(socket.scope.get("client"), socket.headers, self.settings.trusted_proxy_hops)

    def begin_handshake(self, ip: str) -> bool:
        """Count a socket that has not said hello yet; False when its address has too many."""
        n = self._pending.get(ip, 0)
        if n >= self.settings.max_pending_handshakes_per_ip:
            return False
        self._pending[ip] = n + 1
        return True

    def end_handshake(self, ip: str) -> None:
        n = self._pending.get(ip, 0) - 1
        if n > 0:
            self._pending[ip] = n
        else:
            self._pending.pop(ip, None)

    def is_online(self, tenant_id: str, role: str, principal_id: str) -> bool:
        """Connected to any node of the cluster."""
        return self.presence.is_online(tenant_id, role, principal_id)

    def online_agents(self, tenant_id: str) -> set[str]:
        """Agents connected to any node of the cluster."""
        return self.presence.online_agents(tenant_id)

    async def came_online(self, session: Session) -> None:
        assert session.conn is not None and session.principal is not None
        session.announced = True
        if await self.presence.connected(session.conn.key):
            await self.presence_changed(session.principal, "online")

    async def presence_changed(self, p: Principal, status: str) -> None:
        """The principal's first socket in the cluster opened, or its last one closed."""
        frame = json.dumps({"type": "presence", "participant": {"kind": p.sender_kind, "id": p.id, "name": p.name},
                            "status": status})
        await self.chat.events.publish(PresenceChanged(p.tenant_id, p.role, p.id, status == "online"))
        if p.role == "agent":
            await self.bus.publish(topic_queue(p.tenant_id), frame)
            return
        async with self.db.session() as s:
            ids = (await s.exec(select(Conversation.id).where(
                Conversation.tenant_id == p.tenant_id, Conversation.user_id == p.id,
                col(Conversation.status).in_(OPEN_STATUSES))
                .limit(self.settings.presence_max_conversations))).all()
        for cid in ids:
            await self.bus.publish(topic_agents(cid), frame)

    async def deliver_to(self, tenant_id: str, role: str, principal_id: str, frame: dict[str, Any]) -> bool:
        """Send a frame to every connection of one principal, on whichever node (in-app
        notifications): over the principal's own topic, which each of its sockets follows."""
        if not self.is_online(tenant_id, role, principal_id):
            return False
        await self.bus.publish(topic_user(tenant_id, role, principal_id), json.dumps(frame))
        return True

    async def catch_up(self) -> None:
        """After the bus lost messages (Redis down and back), give every socket of this node what
        it missed, from the database, starting at the last seq it was sent."""
        to_python = getattr(self.bus.local, "to_python", None)
        for sess in list(self.sessions.values()):
            conn = sess.conn
            if conn is None or sess.closed.is_set():
                continue
            for topic in list(conn.topics):
                cid = conversation_of(topic)
                if cid is None:
                    continue
                # A native socket's topic comes back to the Python path for the replay (and
                # moves to uWS again once it is over).
                seen = await to_python(conn, topic) if to_python is not None else conn.resume.seen(topic)
                if seen is None:
                    for data in conn.resume.thaw(topic):
                        conn.offer(data, topic)
                    continue
                try:
                    await sess.resync(cid, topic, seen, thaw=True)
                except Exception:  # broad: one socket's catch-up failing must not skip the others
                    log.exception("catch-up of %s failed on session %s", topic, sess.id)

    async def drain(self) -> None:
        """Graceful shutdown: refuse new sessions, tell every client to reconnect elsewhere.
        socketify's signal handler drains before lifespan shutdown asks again: once is enough."""
        if self.drained:
            return
        self.drained = True
        self.draining = True
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.kill("shutdown", "server is restarting", reconnect=True) for s in sessions),
                             return_exceptions=True)


    async def follow(self, tenant_id: str, role: str, principal_id: str, topic: str) -> None:
        """Subscribe every live connection of one principal on this node to ``topic``."""
        for sess in list(self.by_principal.get((tenant_id, role, principal_id), ())):
            await sess.follow(topic)

    async def on_conversation_event(self, event: ConversationEvent) -> None:
        """On every node: the sockets of whoever must follow the conversation now follow it."""
        for f in event.follow:
            topic = topic_agents(event.conversation_id) if f.role == "agent" else topic_conversation(
                event.conversation_id)
            await self.follow(event.tenant_id, f.role, f.principal_id, topic)
