"""Parsing in a bounded child process.

Parsers are the part of ingestion an attacker controls the input of: a zip bomb, a PDF whose
streams inflate to gigabytes, a file that sends a parser into a loop. Each parse runs in a
fresh child forked from a forkserver with CPU-time and address-space limits and a wall-clock
timeout; whatever happens to the child, the caller gets a ``KnowledgeError`` and carries on.
"""

import multiprocessing
import multiprocessing.connection
import signal
import sys
from collections.abc import Callable
from typing import Any

from knowledge.documents import ParsedDocument
from knowledge.errors import DocumentTooLarge, KnowledgeError, ParseFailed
from knowledge.settings import KnowledgeSettings

__all__ = ["Parser", "parse_in_subprocess"]

Parser = Callable[[bytes, str, "str | None", KnowledgeSettings], ParsedDocument]

_context: Any = None


def _mp_context() -> Any:
    global _context
    if _context is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            # Imported once in the fork server, so each parse forks with parsers loaded.
            ctx.set_forkserver_preload(["knowledge.loaders"])
        _context = ctx
    return _context


def _limit_resources(settings: KnowledgeSettings) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    import resource

    cpu = max(1, int(settings.parse_cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(settings.parse_memory_bytes)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or memory < hard:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child(
    conn: multiprocessing.connection.Connection,
    parser: Parser,
    data: bytes,
    filename: str,
    content_type: str | None,
    settings: KnowledgeSettings,
) -> None:
    try:
        _limit_resources(settings)
        result: tuple[str, object] = ("ok", parser(data, filename, content_type, settings))
    except KnowledgeError as exc:
        result = ("error", exc)
    except MemoryError:
        result = ("error", ParseFailed("parsing needed more memory than allowed; the file was refused"))
    except RecursionError:
        result = ("error", ParseFailed("the file is nested too deeply to parse"))
    except Exception as exc:  # noqa: BLE001 (any parser crash becomes a clear refusal)
        result = ("error", ParseFailed(f"the file could not be parsed ({type(exc).__name__}: {exc})"[:500]))
    try:
        conn.send(result)
    except MemoryError:
        conn.send(("error", ParseFailed("the parsed document is too large to return")))
    finally:
        conn.close()


def _default_parser(
    data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings
) -> ParsedDocument:
    from knowledge.loaders import parse_document

    return parse_document(data, filename, content_type, settings)


def parse_in_subprocess(
    data: bytes,
    filename: str,
    content_type: str | None,
    settings: KnowledgeSettings,
    *,
    parser: Parser | None = None,
) -> ParsedDocument:
    """Parse ``data`` in a resource-limited child; raise a ``KnowledgeError`` on any failure.

    ``parser`` must be a module-level function (it is pickled to the child); tests use it to
    stand in a parser that loops or allocates without end.
    """
    if len(data) > settings.max_upload_bytes:
        raise DocumentTooLarge(f"the file has {len(data)} bytes; the limit is {settings.max_upload_bytes}")
    ctx = _mp_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child,
        args=(sender, parser or _default_parser, data, filename, content_type, settings),
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(settings.parse_wall_seconds):
            raise ParseFailed(f"parsing took longer than {settings.parse_wall_seconds:g} s; the file was refused")
        try:
            status, payload = receiver.recv()
        except (EOFError, OSError) as exc:
            process.join(5)
            raise ParseFailed(_death_reason(process.exitcode, settings)) from exc
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
        process.close()
    if status == "ok" and isinstance(payload, ParsedDocument):
        return payload
    if isinstance(payload, KnowledgeError):
        raise payload
    raise ParseFailed("the parse worker returned nothing usable")


def _death_reason(exitcode: int | None, settings: KnowledgeSettings) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        if sig == signal.SIGXCPU or sig == signal.SIGKILL:
            return f"parsing used more than {settings.parse_cpu_seconds} s of CPU time; the file was refused"
        if sig == signal.SIGSEGV:
            return "the parser crashed on this file (likely out of memory); the file was refused"
        return f"the parse worker died with signal {signal.Signals(sig).name}; the file was refused"
    return f"the parse worker exited unexpectedly (status {exitcode}); the file was refused"
