"""Core: settings, database, models, outbox, wire format, metrics, rate limits.

Imports nothing of server but `server.errors`."""
