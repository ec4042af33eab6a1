"""``parley bots ...``: offline tools for the handoff policy (imports only ``bots`` and click).

- ``eval-handoff [PATH...]``: precision/recall of the policy, per language and category, on labelled
  sets (default: the one shipped in ``bots/data`` and the held-out tuning half).
- ``train-handoff [PATH...]``: reproduce the learned layer's weights (``bots/data/handoff_model.npz``).
- ``replay FILE.jsonl [--settings JSON]``: re-run logged decisions (``HandoffDecision.to_record()``
  lines) against settings and count what changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bots.config import HandoffSettings
from bots.errors import BotError
from bots.evaluation import Confusion, default_set_path, heldout_paths, load_cases, report_handoff
from bots.handoff_model import default_model_path, shipped_scorer
from bots.handoff_training import default_training_paths, train_from_paths
from bots.replay import load_records, replay

__all__ = ["bots"]


@click.group("bots")
def bots() -> None:
    """The AI agent's offline tools."""


def _table(title: str, rows: dict[str, Confusion]) -> list[str]:
    out = [f"  {title:<22} {'n':>4} {'P':>6} {'R':>6}   tp  fp  fn  tn"]
    for name, c in sorted(rows.items()):
        counts = f"{c.tp:>4}{c.fp:>4}{c.fn:>4}{c.tn:>4}"
        out.append(f"  {name:<22} {c.total:>4} {c.precision:>6.3f} {c.recall:>6.3f} {counts}")
    return out


@bots.command("eval-handoff")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--show-errors/--no-show-errors", default=True)
@click.option("--learned/--no-learned", default=True, help="Score turns with the shipped learned model.")
@click.option("--test-half/--no-test-half", default=False,
              help="Also run the held-out test half (report it; never tune after looking).")
def eval_handoff(paths: tuple[Path, ...], show_errors: bool, learned: bool, test_half: bool) -> None:
    """Precision and recall of the handoff policy, overall, per language and per category.

    Without PATHS: the shipped labelled set and the held-out tuning half (``bots/data/heldout``)."""
    if paths:
        sets = {p.stem: p for p in paths}
    else:
        sets = {"handoff_set": default_set_path()}
        if (extra := default_set_path().with_name("handoff_extra.jsonl")).exists():
            sets["handoff_extra"] = extra
        for name, path in heldout_paths().items():
            if name != "test" or test_half:
                sets[f"heldout_{name}"] = path
    scorer = shipped_scorer() if learned else None
    for name, path in sets.items():
        try:
            cases, settings = load_cases(path)
        except BotError as exc:
            raise click.ClickException(exc.detail) from exc
        report = report_handoff(cases, settings, scorer)
        conf = report.overall
        click.echo(f"== {name} ({path.name}), learned layer {'on' if scorer else 'off'}")
        click.echo(f"cases: {conf.total}")
        click.echo(f"precision: {conf.precision:.3f}")
        click.echo(f"recall: {conf.recall:.3f}")
        click.echo(f"confusion: {json.dumps(conf.to_dict())}")
        for line in _table("language", report.by_lang) + _table("category", report.by_category):
            click.echo(line)
        click.echo("  handoffs by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(report.reasons.items())))
        if show_errors:
            for line in conf.errors:
                click.echo(f"  miss {line}")


@bots.command("train-handoff")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the weights (default: the shipped bots/data/handoff_model.npz).")
def train_handoff(paths: tuple[Path, ...], out: Path | None) -> None:
    """Reproduce the learned layer's weights from labelled sets (default: the shipped training sets,
    see ``bots.handoff_training``; a test half that is not retired is refused)."""
    chosen = list(paths) or default_training_paths()
    try:
        report = train_from_paths(chosen)
    except BotError as exc:
        raise click.ClickException(exc.detail) from exc
    target = out or default_model_path()
    report.model.save(target)
    click.echo(f"trained on {report.turns} turns ({report.positives} handoffs) from "
               f"{', '.join(p.name for p in chosen)}; texts sha256 {report.sources}")
    click.echo(f"out-of-fold at threshold {report.model.threshold:.3f}: precision {report.oof_precision:.3f}, "
               f"recall {report.oof_recall:.3f}")
    click.echo(f"wrote {target}")


@bots.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with handoff settings (default: the built-in defaults).",
)
@click.option("--rescore/--no-rescore", default=False,
              help="Score every turn again with the shipped learned model instead of the logged score.")
def replay_cmd(file: Path, settings_path: Path | None, rescore: bool) -> None:
    """Re-run logged handoff decisions offline and count changes."""
    try:
        settings = (
            HandoffSettings.from_dict(json.loads(settings_path.read_text(encoding="utf-8")))
            if settings_path
            else HandoffSettings()
        )
        report = replay(load_records(file), settings, shipped_scorer() if rescore else None)
    except (BotError, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"decisions: {report.total}")
    click.echo(f"changed: {report.changed}")
    for transition, count in report.transitions.most_common():
        click.echo(f"  {count:5d}  {transition}")
