"""What a file is, from its bytes: never from its name or the client's Content-Type. A claimed
type (the part's Content-Type or the name's extension) that disagrees with the bytes is refused."""

import mimetypes

import filetype

from server.errors import BadInput

__all__ = ["UnsupportedType", "check_claims", "sniff"]

# Types that several spellings share
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
# Claims that say nothing about the content
_VAGUE = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}


class UnsupportedType(BadInput):
    code = "unsupported_media_type"
    status = 415


def sniff(data: bytes) -> str:
    """The media type of ``data``: a known binary signature, else UTF-8 text, else octet-stream."""
    kind = filetype.guess(data[:8192])
    if kind is not None:
        return str(kind.mime)
    if b"\x00" not in data[:8192]:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "application/octet-stream"
        return "text/plain"
    return "application/octet-stream"


def _norm(media: str | None) -> str:
    media = (media or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(media, media)


def check_claims(sniffed: str, *, filename: str, claimed_type: str | None, allowed: tuple[str, ...]) -> None:
    if sniffed not in allowed:
        raise UnsupportedType(f"files of type {sniffed} are not accepted here (allowed: {', '.join(allowed)})",
                              field="file")
    claimed = _norm(claimed_type)
    if claimed not in _VAGUE and claimed != sniffed:
        raise UnsupportedType(f"the file is {sniffed}, not the claimed {claimed}", field="file")
    by_name = _norm(mimetypes.guess_type(filename, strict=False)[0])
    if by_name and by_name != sniffed and not (sniffed == "text/plain" and by_name.startswith("text/")):
        raise UnsupportedType(f"the file is {sniffed}, but its name says {by_name}", field="file")
