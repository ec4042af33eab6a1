"""The REST surface of attachments (README "Attachments"): upload into a conversation, download
a file or its thumbnail. Downloads are never rendered by the browser as a page of our origin:
``nosniff``, a sandboxing CSP, and ``attachment`` disposition for everything but images."""

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Stream

from server.accounts.auth import Principal
from server.attachments.service import AttachmentService
from server.errors import BadInput

__all__ = ["attachment_handlers"]

PrincipalDep = NamedDependency[Principal]
#: by the name ``attachment_service``: a dependency named like a body field (``attachments``) would make
#: Litestar report that field's validation errors as a failed dependency (500).
AttachmentsDep = NamedDependency[AttachmentService]

#: Room for the multipart framing around a file of the largest allowed size.
MULTIPART_OVERHEAD = 64 * 1024
_SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, max-age=3600",
    "Cross-Origin-Resource-Policy": "same-site",
}


@dataclass
class FileUpload:
    """One file in the multipart field ``file``."""

    file: UploadFile


def _disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def attachment_handlers(max_file_bytes: int) -> list[Any]:
    """The routes, with the body limit of the largest file (refused while it streams in)."""

    @post("/v1/conversations/{conversation_id:str}/attachments", status_code=201,
          request_max_body_size=max_file_bytes + MULTIPART_OVERHEAD,
          opt={"body_types": ("multipart/form-data",)})
    async def upload_attachment(
        request: Request[Any, Any, Any], principal: PrincipalDep, attachment_service: AttachmentsDep,
        conversation_id: FromPath[str],
        data: Annotated[FileUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> dict[str, Any]:
        """Upload one file (multipart field ``file``) into a conversation; send it with a message's
        ``attachments: [id]``. The type is read from the bytes; images are re-encoded."""
        part = data.file
        if not isinstance(part, UploadFile):
            raise BadInput("multipart upload needs a 'file' field holding one file", field="file")
        try:
            body = await part.read(max_file_bytes + 1)
        finally:
            await part.close()
        claimed = {k.lower(): v for k, v in part.headers.items()}.get("content-type")
        att = await attachment_service.upload(principal, conversation_id, filename=part.filename, claimed_type=claimed,
                                       data=body)
        return {"attachment": att.summary()}

    async def _serve(principal: Principal, attachments: AttachmentService, attachment_id: str,
                     thumbnail: bool) -> Response[Any]:
        dl = await attachments.download(principal, attachment_id, thumbnail=thumbnail)
        inline = dl.media_type.startswith("image/")
        headers = {**_SAFE_HEADERS, "Content-Disposition": _disposition("inline" if inline else "attachment",
                                                                         dl.attachment.name),
                   "Content-Length": str(dl.size)}
        return Stream(dl.chunks, media_type=dl.media_type, headers=headers)

    @get("/v1/attachments/{attachment_id:str}")
    async def download_attachment(principal: PrincipalDep, attachment_service: AttachmentsDep,
                                  attachment_id: FromPath[str]) -> Response[Any]:
        """The file, to members of its conversation."""
        return await _serve(principal, attachment_service, attachment_id, False)

    @get("/v1/attachments/{attachment_id:str}/thumbnail")
    async def download_thumbnail(principal: PrincipalDep, attachment_service: AttachmentsDep,
                                 attachment_id: FromPath[str]) -> Response[Any]:
        """An image's thumbnail (at most ``attachment_thumbnail_px`` on its longer side)."""
        return await _serve(principal, attachment_service, attachment_id, True)

    @delete("/v1/attachments/{attachment_id:str}", status_code=204)
    async def delete_attachment(principal: PrincipalDep, attachment_service: AttachmentsDep,
                                attachment_id: FromPath[str]) -> None:
        """Remove an upload that was never sent (its uploader only)."""
        await attachment_service.delete_unsent(principal, attachment_id)

    return [upload_attachment, download_attachment, download_thumbnail, delete_attachment]
