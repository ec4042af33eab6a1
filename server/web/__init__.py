"""Parley's web pages, served by the app itself with no CDN and no build step: the embeddable
chat widget (``/widget.js``, demo shop page at ``/``), its push service worker (``/sw.js``), the
agent console (``/agent``) and the admin pages (``/admin``). Plain HTML, CSS and JavaScript
modules under ``static/``; everything a person or the model wrote is rendered as text."""

from server.web.handlers import web_handlers

__all__ = ["web_handlers"]
