"""Realtime: the WebSocket gateway and the socketify/uvicorn serving."""
