"""Private notes: an agent writes a ``note`` message into a conversation of the tenant. Notes go
to agents only (the agents' topic, the agents' history): never to the end user's frames, history
or push, nor into the AI agent's context, which reads ``text`` messages only. The agents a note
@mentions are stored with their push rows, then told live with a ``note.mention`` frame on their
own topic (every console of theirs, on any node)."""

import json
from dataclasses import dataclass

from server.accounts.auth import Principal
from server.chat.service import ChatService, Sender, message_json
from server.core.models import Agent, Message
from server.core.wire import topic_user
from server.desk.notes import MentionPush, active_agents, mention_tokens, record_mentions, resolve_mentions
from server.errors import Conflict, Forbidden

__all__ = ["NotePosted", "mention_frame", "post_note"]


@dataclass(frozen=True)
class NotePosted:
    message: Message
    created: bool
    mentioned: list[Agent]
    unresolved: list[str]


def mention_frame(note: Message, author_name: str | None) -> str:
    return json.dumps({"type": "note.mention", "conversation_id": note.conversation_id,
                       "mention": {"message_id": note.id, "seq": note.seq, "author_id": note.sender_id,
                                   "author_name": author_name, "text": note.text},
                       "message": message_json(note)})


async def post_note(chat: ChatService, p: Principal, conversation_id: str, text: str, *, client_msg_id: str,
                    max_mentions: int) -> NotePosted:
    """Store the note (idempotent on ``client_msg_id`` like a message), then its mentions: a retry
    of the same note stores the mentions a crash in between may have lost, and tells nobody twice."""
    if p.role != "agent":
        raise Forbidden("notes are written by agents")
    await chat.get_conversation(p, conversation_id)
    posted = await chat.post_message(p.tenant_id, conversation_id, Sender.of(p), text, client_msg_id=client_msg_id,
                                     kind="note", principal=p)
    note = posted.message
    if note.kind != "note":
        raise Conflict("client_msg_id was already used for a message")
    tokens = mention_tokens(note.text, max_mentions)
    resolved = resolve_mentions(tokens, await active_agents(chat.db, p.tenant_id)) if tokens else None
    mentioned = [a for a in resolved.agents if a.id != p.id] if resolved else []
    fresh = await record_mentions(chat.db, note, mentioned, p.id, MentionPush(
        conversation_id=note.conversation_id, message_id=note.id, seq=note.seq,
        author_name=note.sender_name or "An agent", text=note.text)) if mentioned else []
    await chat.publish(posted)
    frame = mention_frame(note, note.sender_name)
    for agent_id in fresh:
        await chat.bus.publish(topic_user(p.tenant_id, "agent", agent_id), frame)
    return NotePosted(note, posted.created, mentioned, resolved.unresolved if resolved else [])
