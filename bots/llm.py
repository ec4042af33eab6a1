"""The LLM seam: one factory for any OpenAI-compatible endpoint, and the error translation.

Everything provider-specific stops here: callers get a LangChain ``BaseChatModel`` and, on
failure, a :class:`bots.errors.LLMError` subclass (``raise translate_error(exc) from exc``).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr, ValidationError

from bots.config import LLMConfig
from bots.errors import (
    LLMConnectionError,
    LLMContextTooLong,
    LLMError,
    LLMProtocolError,
    LLMRateLimited,
    LLMRejected,
    LLMTimeout,
    LLMUnavailable,
)

__all__ = ["build_chat_model", "translate_error"]

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)


def build_chat_model(config: LLMConfig, *, http_client: httpx.AsyncClient | None = None) -> BaseChatModel:
    """Build a streaming ``ChatOpenAI`` for ``config``.

    ``http_client`` is handed to the SDK as its async transport so tests (respx, MockTransport)
    and the server (shared pool, limits) control every request. Timeout and retry budget are
    explicit because the SDK defaults are 10 minutes and 2 retries.
    """
    return ChatOpenAI(
        model=config.model,
        base_url=config.base_url,
        api_key=SecretStr(config.api_key),
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        temperature=config.temperature,
        max_completion_tokens=config.max_tokens,
        streaming=True,
        # The default reads an env var at construction time; we pass the value explicitly.
        stream_chunk_timeout=config.timeout_s,
        http_async_client=http_client,
    )


def _message_of(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text)[:300]


def translate_error(exc: BaseException) -> LLMError:
    """Map an openai / httpx / LangChain exception to our own type (never raises)."""
    if isinstance(exc, LLMError):
        return exc
    msg = _message_of(exc)
    body = str(getattr(exc, "body", "") or "")
    lowered = f"{msg} {body}".lower()
    if isinstance(exc, ContextOverflowError) or (
        isinstance(exc, openai.APIStatusError | openai.APIError) and any(m in lowered for m in _CONTEXT_MARKERS)
    ):
        return LLMContextTooLong(msg)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return LLMTimeout(msg)
    if isinstance(exc, openai.RateLimitError):
        return LLMRateLimited(msg)
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return LLMRateLimited(msg)
        if exc.status_code >= 500:
            return LLMUnavailable(f"{exc.status_code}: {msg}")
        return LLMRejected(f"{exc.status_code}: {msg}")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        return LLMConnectionError(msg)
    if isinstance(
        exc,
        json.JSONDecodeError
        | openai.APIResponseValidationError
        | ValidationError
        | httpx.DecodingError
        | UnicodeDecodeError
        | KeyError
        | TypeError
        | ValueError,
    ):
        return LLMProtocolError(f"malformed stream: {msg}")
    if isinstance(exc, openai.APIError):
        # An error event inside the SSE stream (``data: {"error": ...}``) has no status.
        return LLMUnavailable(msg)
    return LLMError(f"{type(exc).__name__}: {msg}")
