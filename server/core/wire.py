"""The wire format in one place: client frames of the WebSocket protocol (strict parsing and
validation; every failure is a ``BadInput`` with the contract's code and, where there is one,
the offending field), the fan-out topics (build and parse) and the seq prefix of ``message``
frames that fan-out reads without parsing JSON."""

import json
import re
from typing import Annotated, Any

import msgspec

from server.errors import BadInput, TooLong

__all__ = [
    "MESSAGE_PREFIX",
    "TOPIC_EVENTS",
    "TOPIC_PRESENCE",
    "ClientFrame",
    "ConversationStart",
    "HandoffRequest",
    "Hello",
    "MessageDelete",
    "MessageEdit",
    "Ping",
    "ReactionAdd",
    "ReactionRemove",
    "Read",
    "Send",
    "Subscribe",
    "Typing",
    "Unsubscribe",
    "conversation_of",
    "frame_seq",
    "parse_frame",
    "parse_topic",
    "topic_agents",
    "topic_conversation",
    "topic_queue",
    "topic_user",
]

# ---- topics: what a socket follows on the bus ------------------------------------------------

#: Node-to-node topics (no socket follows them): conversation events and presence.
TOPIC_EVENTS = "n:events"
TOPIC_PRESENCE = "n:presence"


def topic_conversation(conversation_id: str) -> str:
    """What the user sees of a conversation (no agent notes)."""
    return f"c:{conversation_id}"


def topic_agents(conversation_id: str) -> str:
    """Everything of a conversation, agent notes and handoff summaries included."""
    return f"a:{conversation_id}"


def topic_queue(tenant_id: str) -> str:
    return f"q:{tenant_id}"


def topic_user(tenant_id: str, role: str, principal_id: str) -> str:
    return f"u:{tenant_id}:{role}:{principal_id}"


def parse_topic(topic: str) -> tuple[str, str]:
    """``(kind, rest)``: kind is ``c`` (conversation), ``a`` (agents), ``q``, ``u`` or ``n``."""
    kind, sep, rest = topic.partition(":")
    if not sep or kind not in ("c", "a", "q", "u", "n"):
        raise ValueError(f"not a topic: {topic!r}")
    return kind, rest


def conversation_of(topic: str) -> str | None:
    """The conversation a ``c:`` or ``a:`` topic belongs to, else None."""
    kind, rest = parse_topic(topic)
    return rest if kind in ("c", "a") else None


# ---- the seq prefix of message frames ----------------------------------------------------------

#: ``seq`` leads every ``message`` frame so fan-out can read it without parsing JSON.
MESSAGE_PREFIX = '{"type": "message", "seq": '
_PREFIX_LEN = len(MESSAGE_PREFIX)


def frame_seq(data: str) -> int | None:
    """The seq of a ``message`` frame, read from its fixed prefix; None for other frames."""
    if not data.startswith(MESSAGE_PREFIX):
        return None
    end = data.find(",", _PREFIX_LEN, _PREFIX_LEN + 24)
    try:
        return int(data[_PREFIX_LEN:end])
    except ValueError:
        return None


# ---- client frames -------------------------------------------------------------------------------

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Ref = Annotated[str, msgspec.Meta(max_length=128)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class _Frame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    ref: Ref | None = None


class Hello(_Frame, tag="hello", frozen=True):
    token: Annotated[str, msgspec.Meta(max_length=8192)] = ""
    resume: Annotated[dict[Id, Seq], msgspec.Meta(max_length=500)] = msgspec.field(default_factory=dict)


class ConversationStart(_Frame, tag="conversation.start", frozen=True):
    bot_id: Id | None = None
    text: str | None = None
    client_msg_id: Id | None = None


class Subscribe(_Frame, tag="subscribe", frozen=True):
    conversation_id: Id = ""
    after_seq: Seq | None = None


class Unsubscribe(_Frame, tag="unsubscribe", frozen=True):
    conversation_id: Id = ""


class Send(_Frame, tag="send", frozen=True):
    conversation_id: Id = ""
    client_msg_id: Id | None = None
    text: str | None = None
    attachments: Annotated[list[Id], msgspec.Meta(max_length=100)] | None = None  # ids of uploads
    reply_to: Id | None = None  # the id of the message of this conversation it quotes
    rich: dict[str, Any] | None = None  # quick replies, a card or a form (bots and agents; server.chat.rich)


class MessageEdit(_Frame, tag="message.edit", frozen=True):
    conversation_id: Id = ""
    message_id: Id = ""
    text: str | None = None


class MessageDelete(_Frame, tag="message.delete", frozen=True):
    conversation_id: Id = ""
    message_id: Id = ""


class ReactionAdd(_Frame, tag="reaction.add", frozen=True):
    conversation_id: Id = ""
    message_id: Id = ""
    emoji: str | None = None  # checked against the allow-list by server.chat.reactions


class ReactionRemove(_Frame, tag="reaction.remove", frozen=True):
    conversation_id: Id = ""
    message_id: Id = ""
    emoji: str | None = None


class Typing(_Frame, tag="typing", frozen=True):
    conversation_id: Id = ""
    active: bool = True


class Read(_Frame, tag="read", frozen=True):
    conversation_id: Id = ""
    seq: Seq = 0


class HandoffRequest(_Frame, tag="handoff.request", frozen=True):
    conversation_id: Id = ""
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Ping(_Frame, tag="ping", frozen=True):
    pass


ClientFrame = (Hello | ConversationStart | Subscribe | Unsubscribe | Send | Typing | Read | HandoffRequest | Ping
               | MessageEdit | MessageDelete | ReactionAdd | ReactionRemove)
_TYPES = {
    "hello", "conversation.start", "subscribe", "unsubscribe", "send", "typing", "read", "handoff.request", "ping",
    "message.edit", "message.delete", "reaction.add", "reaction.remove",
}
_REQUIRED = {
    "subscribe": ("conversation_id",),
    "unsubscribe": ("conversation_id",),
    "send": ("conversation_id", "client_msg_id", "text"),
    "typing": ("conversation_id",),
    "read": ("conversation_id", "seq"),
    "handoff.request": ("conversation_id",),
    "message.edit": ("conversation_id", "message_id", "text"),
    "message.delete": ("conversation_id", "message_id"),
    "reaction.add": ("conversation_id", "message_id", "emoji"),
    "reaction.remove": ("conversation_id", "message_id", "emoji"),
    "hello": ("token",),
}
_FIELD = re.compile(r"`\$\.([A-Za-z_\.]+)")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MAX_INT_DIGITS = 20


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BadInput(f"duplicate key {k!r}", code="bad_frame", field=k)
        out[k] = v
    return out


def _bounded_int(s: str) -> int:
    if len(s.lstrip("-")) > _MAX_INT_DIGITS:
        raise BadInput("integer has too many digits", code="bad_frame")
    return int(s)


def _no_constant(name: str) -> Any:
    raise BadInput(f"{name} is not valid JSON", code="bad_frame")


def _depth_ok(raw: str, limit: int) -> bool:
    # Cheap upper bound on nesting: brackets inside strings only make it stricter.
    if raw.count("[") + raw.count("{") <= limit:
        return True
    depth = 0
    in_str = esc = False
    for ch in raw:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def parse_frame(raw: str, *, max_bytes: int = 65536, max_depth: int = 32) -> ClientFrame:
    if len(raw) > max_bytes or len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise TooLong(f"frame is larger than {max_bytes} bytes")
    if not _depth_ok(raw, max_depth):
        raise BadInput(f"JSON nested deeper than {max_depth} levels", code="bad_frame")
    try:
        data = json.loads(raw, object_pairs_hook=_no_duplicates, parse_int=_bounded_int,
                          parse_constant=_no_constant)
    except BadInput:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"frame is not valid JSON: {str(exc)[:120]}", code="bad_frame") from None
    if not isinstance(data, dict):
        raise BadInput("frame must be a JSON object", code="bad_frame")
    # Lone surrogates can only arrive as JSON escapes; no database or encoder accepts them, so
    # they are refused here, the same on every backend.
    if ("\\u" in raw or _SURROGATE.search(raw)) and _has_surrogate(data):
        raise BadInput("frame contains an unpaired surrogate", field=_surrogate_field(data))
    ftype = data.get("type")
    if not isinstance(ftype, str):
        raise BadInput("frame has no string 'type'", code="bad_frame", field="type")
    if ftype not in _TYPES:
        raise BadInput(f"unknown frame type {ftype[:64]!r}", code="unknown_type", field="type")
    for name in _REQUIRED.get(ftype, ()):
        if data.get(name) is None:
            raise BadInput(f"field '{name}' is required", field=name)
    try:
        frame: ClientFrame = msgspec.convert(data, ClientFrame, strict=True)
        return frame
    except UnicodeEncodeError:
        raise BadInput("frame contains an unpaired surrogate") from None
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = _MISSING.search(msg) or _UNKNOWN.search(msg) or _FIELD.search(msg)
        field = m.group(1) if m else None
        raise BadInput(f"invalid frame: {msg}", field=field) from None


def _surrogate_field(data: dict[str, Any]) -> str | None:
    for k, v in data.items():
        if _has_surrogate(k) or _has_surrogate(v):
            return k if not _has_surrogate(k) else None
    return None
