"""The output guard's cross-tenant check runs on the real answer path: another tenant's prompt
canary in this tenant's answer is refused, streamed deltas included. One in-process server."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.circuit import CircuitBreaker
from bots.guard import REFUSAL_EN
from bots.pipeline import AnswerPipeline
from bots.ports import Passage
from bots.testing import InMemoryRetriever, ScriptedChatModel
from server.accounts.tenants import create_tenant
from server.agent.runner import tenant_canary
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient

KB = "kb-canary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    data: Path = tmp_path_factory.mktemp("canary")
    srv = InProcServer(make_settings(data))
    srv.start()
    yield srv
    srv.stop()


async def _fixed_kb(tenant_id: str, bot: object) -> str:
    return KB


async def test_another_tenants_canary_never_reaches_a_user(server: InProcServer) -> None:
    other = server.call(create_tenant(server.app.state.db, f"Other {uuid.uuid4().hex[:6]}"))
    leaked = tenant_canary(other.tenant.signing_secret)
    runner = server.app.state.bot_runner
    retriever = InMemoryRetriever({KB: [Passage("c1", "d1", "Descaling", "kb:descaling", "Descaling",
                                               "Hold both buttons for three seconds to descale.", 0.9)]})
    runner.model = ScriptedChatModel(replies=[f"Hold both buttons for three seconds {leaked} to descale. [1]"])
    runner.pipeline = AnswerPipeline(retriever, runner.model, CircuitBreaker())
    runner._kb_for = _fixed_kb
    runner._canaries_at = None  # the other tenant was created just now
    user = await WsClient.connect(server.ws_url, server.token(f"u-{uuid.uuid4().hex[:6]}"))
    cid = await user.start("How do I descale?")
    answer = await user.expect("message", timeout=20, conversation_id=cid)
    while answer["message"]["sender"]["kind"] != "bot":
        answer = await user.expect("message", timeout=20, conversation_id=cid)
    await user.drain(0.5)
    streamed = "".join(str(f["delta"]) for f in user.seen if f["type"] == "message.delta")
    assert leaked not in streamed and leaked not in answer["message"]["text"]
    assert answer["message"]["text"] == REFUSAL_EN
    await user.close()
