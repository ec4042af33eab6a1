"""Errors of the knowledge package.

Every error carries a ``code`` from the protocol's error list and a human ``detail``;
``server/errors.py`` alone maps codes to HTTP statuses.

    KnowledgeError                      (code varies, base)
    ├── UnsupportedFormat               validation_failed
    ├── UnsafeURL                       validation_failed
    ├── FetchFailed                     validation_failed
    ├── DocumentTooLarge                too_long
    ├── ParseFailed                     validation_failed
    │   └── DecompressionBomb           validation_failed
    ├── EmbeddingFailed                 unavailable
    ├── ModelMismatch                   validation_failed
    ├── KnowledgeBaseNotFound           not_found
    └── KnowledgeBaseExists             validation_failed
"""

__all__ = [
    "DecompressionBomb",
    "DocumentTooLarge",
    "EmbeddingFailed",
    "FetchFailed",
    "KnowledgeBaseExists",
    "KnowledgeBaseNotFound",
    "KnowledgeError",
    "ModelMismatch",
    "ParseFailed",
    "UnsafeURL",
    "UnsupportedFormat",
]


class KnowledgeError(Exception):
    """Base of every error raised on purpose by ``knowledge``."""

    code: str = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[type["KnowledgeError"], tuple[str]]:
        # Errors cross the parse worker's pipe; keep pickling to the one argument.
        return (type(self), (self.detail,))


class UnsupportedFormat(KnowledgeError):
    code = "validation_failed"


class UnsafeURL(KnowledgeError):
    code = "validation_failed"


class FetchFailed(KnowledgeError):
    code = "validation_failed"


class DocumentTooLarge(KnowledgeError):
    code = "too_long"


class ParseFailed(KnowledgeError):
    code = "validation_failed"


class DecompressionBomb(ParseFailed):
    pass


class EmbeddingFailed(KnowledgeError):
    code = "unavailable"


class ModelMismatch(KnowledgeError):
    code = "validation_failed"


class KnowledgeBaseNotFound(KnowledgeError):
    code = "not_found"


class KnowledgeBaseExists(KnowledgeError):
    code = "validation_failed"
