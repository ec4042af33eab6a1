"""Rich messages a bot or an agent can send: quick-reply buttons, a card with a link, a short
form. Validated strictly (bounded sizes, links http/https only); end users never send them."""

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from server.errors import BadInput, Forbidden

__all__ = ["Rich", "validate_rich"]

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
Body = Annotated[str, msgspec.Meta(max_length=500)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
FieldName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class QuickReply(msgspec.Struct, forbid_unknown_fields=True):
    label: Label
    value: Value  # what the user's message says when the button is pressed


class Card(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    url: Url
    text: Body | None = None
    link_label: Label | None = None


class FormField(msgspec.Struct, forbid_unknown_fields=True):
    name: FieldName
    label: Label
    type: Literal["text", "email", "number"] = "text"
    required: bool = False


class Form(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    fields: Annotated[list[FormField], msgspec.Meta(min_length=1, max_length=5)]
    submit_label: Label = "Send"


class Rich(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    quick_replies: Annotated[list[QuickReply], msgspec.Meta(min_length=1, max_length=10)] | None = None
    card: Card | None = None
    form: Form | None = None


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL.search(url):
        raise BadInput("a card's url must be an http or https link", field="rich.card.url")


def validate_rich(data: Any, sender_kind: str) -> dict[str, Any]:
    """The rich content as stored and sent (unknown fields, oversize lists, a ``javascript:`` link
    refused with ``validation_failed``); an end user may not send any (``forbidden``)."""
    if sender_kind not in ("bot", "agent"):
        raise Forbidden("only a bot or an agent sends rich messages")
    try:
        rich = msgspec.convert(data, Rich, strict=True)
    except msgspec.ValidationError as exc:
        raise BadInput(f"invalid rich message: {exc}", field="rich") from None
    if rich.quick_replies is None and rich.card is None and rich.form is None:
        raise BadInput("a rich message has quick_replies, a card or a form", field="rich")
    if rich.card is not None:
        _check_url(rich.card.url)
    if rich.form is not None and len({f.name for f in rich.form.fields}) != len(rich.form.fields):
        raise BadInput("form field names must be unique", field="rich.form.fields")
    out: dict[str, Any] = msgspec.to_builtins(rich)
    return out
