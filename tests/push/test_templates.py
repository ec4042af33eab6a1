"""A tenant's push template cannot stall the server, fill its memory or print a memory address:
bad templates are a 422 naming the field, data that makes a good template explode falls back
to the plain text, and rendering happens in the template threads, not on the event loop."""

import threading
from typing import Any

import pytest
from sqlmodel import select

from server.core.db import Database
from server.errors import BadInput
from server.push.engine import PushEngine
from server.push.models import Notification, PushRule
from server.push.presence import MemoryPresence
from server.push.templates import TemplateRenderer, validate_template
from tests.push.conftest import make_tenant, make_user
from tests.push.test_routes import RULE, api  # noqa: F401  (the REST fixture)

NESTED = ("{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}x"
          "{% endfor %}{% endfor %}{% endfor %}")
DOUBLING = "{% set a = 'xxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a|length }}"

BAD = [
    "{{ 9 ** 3000000 }}",
    "{{ 'x' * 100000000 }}",
    NESTED,
    DOUBLING,
    "{{ 'x'|center(1000000000) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'ab'.replace('', 'x' * 10000) }}",
    "{{ 'a'.ljust(10 ** 8) }}",
    "{{ ''.join(['x'] * 100000) }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% set b %}{% for i in range(999) %}" + "x" * 60 + "{% endfor %}{% endset %}{{ b }}",
    # a function or object prints its repr, with a memory address in it
    "{{ user.attributes.get }}",
    "{{ range }}",
    "{{ self }}",
    "{{ user.attributes.get|string }}",
    "{{ [user.attributes.get] }}",
    "{{ 'at ' ~ user.attributes.get }}",
    "{{ '%s' % user.attributes.get }}",
    "{{ '{}'.format(user.attributes.get) }}",
]


@pytest.mark.parametrize("source", BAD)
async def test_bad_templates_are_422_naming_the_field(api: Any, source: str) -> None:  # noqa: F811
    client, _ = api
    r = await client.post("/v1/push/rules", json={**RULE, "template": {"title": "Hi", "body": source}})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_failed"
    assert r.json()["error"]["field"] == "template.body"
    assert (await client.get("/v1/push/rules")).json()["rules"] == []


async def test_a_variant_is_checked_too(api: Any) -> None:  # noqa: F811
    client, _ = api
    r = await client.post("/v1/push/rules", json={**RULE, "variants": [{"name": "a", "title": NESTED}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "variants[0].title"


async def test_an_oversized_template_is_refused(api: Any) -> None:  # noqa: F811
    client, _ = api
    r = await client.post("/v1/push/rules", json={**RULE, "template": {"title": "x" * 2001, "body": "b"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "template.title"


GOOD = {
    "Hi {{ user.name }}": "Hi Uma",
    "{{ event.properties.plan|upper }} x{{ user.attributes.points * 2 }}": "PRO x10",
    "{% for i in event.properties['items'] %}{{ i }},{% endfor %}": "1,2,3,",
    "{{ user.name ~ '!' }} {{ '%s has %d' % (user.name, 3) }}": "Uma! Uma has 3",
    "{{ '{} x'.format(user.name) }} {{ user.attributes.tags|join('/') }}": "Uma x a/b",
    "{% for k, v in user.attributes|dictsort %}{{ k }}={{ v }};{% endfor %}": "points=5;tags=['a', 'b'];",
    "{{ user.attributes.get('points') }} {{ range(3)|list }} {{ 2 ** 10 }}": "5 [0, 1, 2] 1024",
    "{{ user.attributes }}": "{'points': 5, 'tags': ['a', 'b']}",
}
CTX = {"user": {"name": "Uma", "attributes": {"points": 5, "tags": ["a", "b"]}},
       "event": {"properties": {"plan": "pro", "items": [1, 2, 3]}}}


@pytest.mark.parametrize(("source", "expected"), GOOD.items())
def test_ordinary_templates_still_work(source: str, expected: str) -> None:
    r = TemplateRenderer()
    validate_template(r, {"title": source, "body": "b"})
    out = r.render({"title": source, "body": "b"}, CTX)
    assert (out.title, out.fell_back) == (expected, False)


async def test_data_that_makes_a_template_explode_falls_back(db: Database) -> None:
    """Validated with no data, fine; at send time the data makes it huge: the plain fallback."""
    t = await make_tenant(db)
    await make_user(db, t.id, "u1", name="Uma")
    engine = PushEngine(db, {}, MemoryPresence())
    body = "{% for a in event.properties.xs %}{% for b in event.properties.xs %}{{ a }}{% endfor %}{% endfor %}"
    template = {"title": "Hi", "body": body, "fallback": {"body": "Something new for you"}}
    validate_template(engine.renderer, template)
    async with db.write() as s:
        s.add(PushRule(tenant_id=t.id, name="r", trigger_event="go", category="transactional", template=template))
    res = await engine.ingest_events(t.id, [{"event_id": "e1", "user_id": "u1", "name": "go",
                                             "properties": {"xs": list(range(1000))}}])
    assert res.accepted == 1
    async with db.session() as s:
        n = (await s.exec(select(Notification))).one()
    assert n.body == "Something new for you"


async def test_a_stored_template_never_prints_a_memory_address(db: Database) -> None:
    """Written before validation existed (or by hand): rendering still refuses the repr."""
    t = await make_tenant(db)
    await make_user(db, t.id, "u1", name="Uma")
    engine = PushEngine(db, {}, MemoryPresence())
    async with db.write() as s:
        s.add(PushRule(tenant_id=t.id, name="r", trigger_event="go", category="transactional",
                       template={"title": "Hi", "body": "see {{ user.attributes.get }}"}))
    await engine.ingest_events(t.id, [{"event_id": "e1", "user_id": "u1", "name": "go"}])
    async with db.session() as s:
        n = (await s.exec(select(Notification))).one()
    assert "0x" not in n.body and "built-in" not in n.body
    assert n.body == "see"


async def test_rendering_and_validation_run_off_the_event_loop(db: Database) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    r = TemplateRenderer()
    real = r.render

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(threading.get_ident())
        return real(*a, **kw)

    r.render = spy  # type: ignore[method-assign]
    out = await r.render_async({"title": "Hi {{ user.name }}", "body": "b"}, CTX)
    assert out.title == "Hi Uma"
    await r.run(lambda: seen.append(threading.get_ident()))
    with pytest.raises(BadInput):
        await r.run(lambda: validate_template(r, {"title": NESTED, "body": "b"}))
    assert len(seen) == 2 and loop_thread not in seen
    r.close()
