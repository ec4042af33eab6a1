"""The pages and their static files as plain HTTP (no browser needed): the demo page carries the
demo tenant's widget key on the first start and after a restart, every page ships its security
headers, and the static router serves nothing outside its folder."""

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from server.core.settings import Settings


def _app(data_dir: Path) -> Litestar:
    from litestar.exceptions import LitestarDeprecationWarning

    from server.app import create_app

    settings = Settings(data_dir=data_dir, demo=True, demo_knowledge=False, server="uvicorn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        return create_app(settings, server_kind="uvicorn")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(_app(tmp_path)) as c:
        yield c


async def test_demo_page_embeds_the_widget_with_the_demo_key(tmp_path: Path) -> None:
    async with AsyncTestClient(_app(tmp_path)) as c:
        r = await c.get("/")
        key = (tmp_path / "demo-widget-key.txt").read_text().strip()
        assert r.status_code == 200
        assert f'<script src="/widget.js" data-widget-key="{key}"' in r.text
    # After a restart the app no longer holds the created tenant; the key comes from the table.
    async with AsyncTestClient(_app(tmp_path)) as c:
        r = await c.get("/")
        assert f'data-widget-key="{key}"' in r.text


async def test_pages_and_scripts_are_served_with_their_headers(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/", "/agent", "/admin"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "img-src 'self' data:" in csp
        assert "object-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    w = await client.get("/widget.js")
    assert w.status_code == 200
    assert w.headers["content-type"].startswith("text/javascript")
    assert "document.currentScript" in w.text
    sw = await client.get("/sw.js")
    assert sw.headers["service-worker-allowed"] == "/"
    for name in ("agent.js", "admin.js", "safe.js", "app.css", "widget.css", "demo.css"):
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200, name


async def test_static_files_stay_in_their_folder(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/static/../handlers.py", "/static/%2e%2e/handlers.py", "/static/../../app.py", "/static/nope.js"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert "import" not in r.text


def test_no_page_script_writes_html_from_data() -> None:
    """A cheap guard beside the browser tests: the pages never use the HTML sinks."""
    static = Path(__file__).resolve().parents[2] / "server" / "web" / "static"
    for js in static.glob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{js.name} uses {sink}"
