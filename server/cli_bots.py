"""``parley bots ...``: offline tools for the handoff policy (imports only ``bots`` and click).

- ``eval-handoff [PATH]``: precision/recall of the policy on a labelled set (default: the one
  shipped in ``bots/data``).
- ``replay FILE.jsonl [--settings JSON]``: re-run logged decisions (``HandoffDecision.to_record()``
  lines) against settings and count what changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bots.config import HandoffSettings
from bots.errors import BotError
from bots.evaluation import evaluate_handoff, load_cases
from bots.replay import load_records, replay

__all__ = ["bots"]


@click.group("bots")
def bots() -> None:
    """The AI agent's offline tools."""


@bots.command("eval-handoff")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--show-errors/--no-show-errors", default=True)
def eval_handoff(path: Path | None, show_errors: bool) -> None:
    """Print precision and recall of the handoff policy on a labelled set."""
    try:
        cases, settings = load_cases(path)
    except BotError as exc:
        raise click.ClickException(exc.detail) from exc
    precision, recall, conf = evaluate_handoff(cases, settings)
    click.echo(f"cases: {len(cases)}")
    click.echo(f"precision: {precision:.3f}")
    click.echo(f"recall: {recall:.3f}")
    click.echo(f"confusion: {json.dumps(conf.to_dict())}")
    if show_errors:
        for line in conf.errors:
            click.echo(f"  miss {line}")


@bots.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with handoff settings (default: the built-in defaults).",
)
def replay_cmd(file: Path, settings_path: Path | None) -> None:
    """Re-run logged handoff decisions offline and count changes."""
    try:
        settings = (
            HandoffSettings.from_dict(json.loads(settings_path.read_text(encoding="utf-8")))
            if settings_path
            else HandoffSettings()
        )
        report = replay(load_records(file), settings)
    except (BotError, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"decisions: {report.total}")
    click.echo(f"changed: {report.changed}")
    for transition, count in report.transitions.most_common():
        click.echo(f"  {count:5d}  {transition}")
