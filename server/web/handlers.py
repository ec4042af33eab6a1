"""Routes for the pages and their static files. The pages only talk to the public protocol
(REST and ``/v1/ws``); nothing here reads or writes conversations."""

import html
from pathlib import Path
from typing import Any

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.static_files import create_static_files_router
from sqlmodel import col, select

from server.accounts.tenants import CreatedTenant
from server.core.db import Database
from server.core.models import Tenant
from server.core.settings import Settings

__all__ = ["STATIC_DIR", "web_handlers"]

STATIC_DIR = Path(__file__).parent / "static"

#: Pages only load their own scripts and styles, talk to their own origin and show no remote images.
#: (Attachments show as blob: URLs: the files are fetched with the bearer token, never by URL.)
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
_PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def _page(name: str, **values: str) -> Response[str]:
    text = _read(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return Response(text, media_type="text/html", headers=_PAGE_HEADERS)


async def demo_widget_key(demo: CreatedTenant | None, db: Database, settings: Settings) -> str:
    """The demo tenant's public widget key: from the first start's state, else the tenant table
    (the first tenant named "Demo"), else the key file in the data dir; empty when there is none."""
    if demo is not None:
        return str(demo.tenant.widget_key)
    async with db.session() as s:
        tenant = (await s.exec(select(Tenant).where(Tenant.name == "Demo")
                               .order_by(col(Tenant.created_at)).limit(1))).first()
    if tenant is not None:
        return str(tenant.widget_key)
    path = settings.data_dir / "demo-widget-key.txt"
    return path.read_text().strip() if path.exists() else ""


@get("/", include_in_schema=False)
async def demo_page(demo: NamedDependency[CreatedTenant | None], db: NamedDependency[Database],
                    settings: NamedDependency[Settings]) -> Response[str]:
    return _page("demo.html", WIDGET_KEY=await demo_widget_key(demo, db, settings))


@get("/agent", include_in_schema=False)
async def agent_page() -> Response[str]:
    return _page("agent.html")


@get("/admin", include_in_schema=False)
async def admin_page() -> Response[str]:
    return _page("admin.html")


@get("/widget.js", include_in_schema=False)
async def widget_script() -> Response[str]:
    # Embedded on other sites: any origin may load it; it is short-cached so fixes roll out.
    return Response(_read("widget.js"), media_type="text/javascript",
                     headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
                              "Access-Control-Allow-Origin": "*"})


@get("/sw.js", include_in_schema=False)
async def service_worker() -> Response[str]:
    return Response(_read("sw.js"), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/",
                             "X-Content-Type-Options": "nosniff"})


static_files = create_static_files_router(
    path="/static", directories=[STATIC_DIR], name="web-static",
    cache_control=CacheControlHeader(no_cache=True), include_in_schema=False,
)

web_handlers: list[Any] = [demo_page, agent_page, admin_page, widget_script, service_worker, static_files]
