"""The variables of a canned response: ``{{user.name}}``, ``{{agent.name}}`` and
``{{conversation.id}}``, filled by plain substitution of that fixed set of names. No template
engine runs, so a text cannot reach Python objects; a ``{{ ... }}`` naming anything else is
refused when the response is saved (and left as written if it were ever met while rendering)."""

import re
from collections.abc import Mapping

from server.errors import BadInput

__all__ = ["VARIABLES", "check_variables", "render"]

VARIABLES = ("user.name", "agent.name", "conversation.id")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def check_variables(text: str) -> None:
    """Refuse a text whose ``{{ ... }}`` names anything but the known variables."""
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if name not in VARIABLES:
            shown = match.group(0) if len(match.group(0)) <= 60 else match.group(0)[:57] + "..."
            raise BadInput(f"unknown variable {shown}; the variables are "
                           + ", ".join("{{" + v + "}}" for v in VARIABLES), field="text")


def render(text: str, values: Mapping[str, str]) -> str:
    """Each known ``{{name}}`` (spaces inside allowed) replaced by its value; anything else kept."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        return values[name] if name in values else match.group(0)

    return _PLACEHOLDER.sub(fill, text)
