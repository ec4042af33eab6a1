"""The AI agent inside the server: a human who joins mid-stream stops it; reopen cool-down;
queue positions; behaviour pushes reach an online user in-app. One in-process server."""

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bots.circuit import CircuitBreaker
from bots.pipeline import AnswerPipeline
from bots.ports import Passage
from bots.testing import InMemoryRetriever, ScriptedChatModel
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient

KB = "kb-test"
LONG = " ".join(f"word{i}" for i in range(120)) + " [1]"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    data: Path = tmp_path_factory.mktemp("runner")
    srv = InProcServer(make_settings(data, reopen_cooldown_s=600))
    runner = srv.app.state.bot_runner
    retriever = InMemoryRetriever({KB: [Passage("c1", "d1", "Descaling", "kb:descaling", "Descaling",
                                               "Hold both buttons for three seconds to descale.", 0.9)]})
    # A slow model so that a human can join while the answer streams.
    runner.model = ScriptedChatModel(replies=[LONG], token_delay_s=0.05)
    runner.pipeline = AnswerPipeline(retriever, runner.model, CircuitBreaker())
    runner._kb_for = _fixed_kb  # every conversation of this test tenant reads the test passages
    srv.start()
    yield srv
    srv.stop()


async def _fixed_kb(tenant_id: str, bot: object) -> str:
    return KB


def _admin(srv: InProcServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=10)


async def _history(srv: InProcServer, cid: str) -> list[dict[str, object]]:
    async with _admin(srv) as http:
        return list((await http.get(f"/v1/conversations/{cid}/messages", params={"limit": 200})).json()["messages"])


async def test_a_human_joining_mid_stream_stops_the_answer(server: InProcServer) -> None:
    _, agent_token = server.agent("Ana", f"ana-{uuid.uuid4().hex[:6]}@example.com")
    user = await WsClient.connect(server.ws_url, server.token(f"u-{uuid.uuid4().hex[:6]}"))
    cid = await user.start("How do I descale?")
    first = await user.expect("message.delta", timeout=10)
    assert first["conversation_id"] == cid
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {agent_token}"}) as http:
        r = await http.post(f"/v1/conversations/{cid}/claim")
        assert r.json()["conversation"]["status"] == "assigned"
    frames = await user.drain(1.0)
    # The stream stops: far fewer than the 120 words arrive, and no final answer is stored.
    deltas = [f for f in user.seen if f["type"] == "message.delta"]
    assert len(deltas) < 100
    assert not [f for f in frames if f["type"] == "message.delta"][20:]
    assert not [m for m in await _history(server, cid) if m["sender"]["kind"] == "bot"]  # type: ignore[index]
    await user.close()


async def test_user_writing_after_resolve_goes_back_to_the_last_agent_within_the_cool_down(
        server: InProcServer) -> None:
    agent_id, agent_token = server.agent("Bo", f"bo-{uuid.uuid4().hex[:6]}@example.com")
    user = await WsClient.connect(server.ws_url, server.token(f"u-{uuid.uuid4().hex[:6]}"))
    cid = await user.start()
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {agent_token}"}) as http:
        assert (await http.post(f"/v1/conversations/{cid}/claim")).status_code == 200
        assert (await http.post(f"/v1/conversations/{cid}/resolve")).json()["conversation"]["status"] == "resolved"
    while (await user.expect("conversation.updated", timeout=5))["conversation"]["status"] != "resolved":
        pass
    await user.say(cid, "one more thing")
    reopened = await user.expect("conversation.updated", timeout=5)
    while reopened["conversation"]["status"] == "resolved":
        reopened = await user.expect("conversation.updated", timeout=5)
    assert reopened["conversation"]["status"] == "assigned"
    assert reopened["conversation"]["assignee"] == agent_id
    await user.close()


async def test_queue_positions_are_told_and_updated(server: InProcServer) -> None:
    users = [await WsClient.connect(server.ws_url, server.token(f"q-{uuid.uuid4().hex[:6]}")) for _ in range(2)]
    cids = []
    for u in users:
        cid = await u.start()
        await u.send({"type": "handoff.request", "conversation_id": cid, "ref": "h"})
        await u.expect("conversation", ref="h", timeout=5)
        cids.append(cid)
    async with _admin(server) as http:
        queued = (await http.get("/v1/conversations", params={"status": "queued"})).json()["conversations"]
    ahead = len([c for c in queued if c["id"] not in cids])
    second = users[1]
    pos = await second.expect("conversation.updated", timeout=5)
    while pos["conversation"].get("queue_position") is None:
        pos = await second.expect("conversation.updated", timeout=5)
    assert pos["conversation"]["queue_position"] == ahead + 2
    assert pos["conversation"]["eta_seconds"] > 0
    # An agent takes the first one: the second moves up.
    _, agent_token = server.agent("Cy", f"cy-{uuid.uuid4().hex[:6]}@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {agent_token}"}) as http:
        assert (await http.post(f"/v1/conversations/{cids[0]}/claim")).status_code == 200
    while True:
        upd = await second.expect("conversation.updated", timeout=5)
        if upd["conversation"].get("queue_position") == ahead + 1:
            break
    for u in users:
        await u.close()


async def test_behaviour_push_reaches_an_online_user_in_app(server: InProcServer) -> None:
    uid = f"shopper-{uuid.uuid4().hex[:6]}"
    user = await WsClient.connect(server.ws_url, server.token(uid, name="Alice"))
    async with _admin(server) as http:
        r = await http.put(f"/v1/users/{uid}", json={"name": "Alice", "timezone": "UTC"})
        assert r.status_code == 200
        rule = {
            "name": "price drop", "trigger_event": "price.dropped", "category": "transactional",
            "template": {"title": "Good news, {{ user.name }}", "body": "{{ event.properties.item }} is cheaper"},
        }
        r = await http.post("/v1/push/rules", json=rule)
        assert r.status_code == 201, r.text
        r = await http.post("/v1/events", json={"events": [
            {"event_id": str(uuid.uuid4()), "user_id": uid, "name": "price.dropped",
             "properties": {"item": "Brightbrew One"}}]})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1
    note = await user.expect("notification", timeout=15)
    assert note["notification"]["title"] == "Good news, Alice"
    assert note["notification"]["body"] == "Brightbrew One is cheaper"
    await user.close()
    await asyncio.sleep(0)


async def test_a_safety_report_sent_while_the_bot_streams_hands_off_and_stops_the_stream(
        server: InProcServer) -> None:
    user = await WsClient.connect(server.ws_url, server.token(f"u-{uuid.uuid4().hex[:6]}"))
    cid = await user.start("How do I descale?")
    await user.expect("message.delta", timeout=10)
    await user.say(cid, "Wait, there is smoke coming out of the machine and it smells like burning!")
    update = await user.expect("conversation.updated", timeout=10)
    while update["conversation"]["status"] == "bot":
        update = await user.expect("conversation.updated", timeout=10)
    assert update["conversation"]["status"] in ("queued", "assigned")
    at = next(i for i, f in enumerate(user.seen) if f is update)
    await user.drain(1.0)
    # The answer that was streaming stops with the handoff: a few deltas in flight at most, and
    # no bot answer is stored after it.
    assert len([f for f in user.seen[at:] if f["type"] == "message.delta"]) < 20
    history = await _history(server, cid)
    assert not [m for m in history if m["sender"]["kind"] == "bot" and "word1" in str(m["text"])]  # type: ignore[index]
    assert update["conversation"]["handoff_reason"] == "safety"
    await user.close()


async def test_an_answer_asks_whether_it_helped_and_the_button_hands_off(server: InProcServer) -> None:
    """The AI's cited answer carries "That helped" / "I still need help" quick replies; pressing
    one sends its value as the user's message, which the handoff policy reads as meant."""
    user = await WsClient.connect(server.ws_url, server.token(f"u-{uuid.uuid4().hex[:6]}"))
    try:
        cid = await user.start("How do I descale?")
        answer = (await user.expect("message", timeout=30, conversation_id=cid))["message"]
        while answer["sender"]["kind"] != "bot":
            answer = (await user.expect("message", timeout=30, conversation_id=cid))["message"]
        buttons = answer["rich"]["quick_replies"]
        assert [b["label"] for b in buttons] == ["That helped", "I still need help"]
        await user.say(cid, buttons[1]["value"])
        update = await user.expect("conversation.updated", timeout=15)
        while update["conversation"]["status"] != "queued":
            update = await user.expect("conversation.updated", timeout=15)
    finally:
        await user.close()
    assert update["conversation"]["handoff_reason"] == "user_request"
