"""Parley's server: the Litestar app and its composition root, storage, auth, the chat
service (the only write path for messages), the WebSocket gateway, fan-out, handoff routing,
the push engine and the CLI."""
