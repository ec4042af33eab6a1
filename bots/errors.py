"""The one error hierarchy of ``bots``.

Every failure the agent core reports derives from :class:`BotError`, which carries a stable
machine ``code`` (used by the server in the ``{"error": {"code", "detail"}}`` envelope and in
handoff records) and a human ``detail``. SDK exceptions (openai, httpx, LangChain) never leak
past the LLM seam: :func:`bots.llm.translate_error` maps them here with ``raise ... from exc``.

Tree::

    BotError                      code="bot_error"
    ├── ConfigError               code="bot_config_invalid"
    ├── RetrievalError            code="retrieval_failed"
    ├── CircuitOpenError          code="circuit_open"
    └── LLMError                  code="llm_error"
        ├── LLMTimeout            code="llm_timeout"
        ├── LLMRateLimited        code="llm_rate_limited"
        ├── LLMUnavailable        code="llm_unavailable"      (5xx)
        ├── LLMConnectionError    code="llm_connection"       (reset, refused)
        ├── LLMProtocolError      code="llm_bad_stream"       (malformed chunk, empty answer)
        ├── LLMContextTooLong     code="llm_context_too_long"
        └── LLMRejected           code="llm_rejected"         (other 4xx: auth, bad request)
"""

from __future__ import annotations

__all__ = [
    "BotError",
    "CircuitOpenError",
    "ConfigError",
    "LLMConnectionError",
    "LLMContextTooLong",
    "LLMError",
    "LLMProtocolError",
    "LLMRateLimited",
    "LLMRejected",
    "LLMTimeout",
    "LLMUnavailable",
    "RetrievalError",
]


class BotError(Exception):
    """Base of every error raised by ``bots``."""

    code: str = "bot_error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.detail = detail or self.code
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"


class ConfigError(BotError):
    code = "bot_config_invalid"


class RetrievalError(BotError):
    code = "retrieval_failed"


class CircuitOpenError(BotError):
    code = "circuit_open"


class LLMError(BotError):
    code = "llm_error"
    #: Whether the fault says something about the provider's health (counts toward the breaker).
    provider_fault: bool = True


class LLMTimeout(LLMError):
    code = "llm_timeout"


class LLMRateLimited(LLMError):
    code = "llm_rate_limited"


class LLMUnavailable(LLMError):
    code = "llm_unavailable"


class LLMConnectionError(LLMError):
    code = "llm_connection"


class LLMProtocolError(LLMError):
    code = "llm_bad_stream"


class LLMContextTooLong(LLMError):
    code = "llm_context_too_long"
    # Our prompt was too big: the provider is healthy, so the breaker must not open.
    provider_fault = False


class LLMRejected(LLMError):
    code = "llm_rejected"
