"""The ``stats`` and ``export`` click commands (click and stdlib only): parse, call lora_audit.votes, print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lora_audit.commands.support import echo_json, one_line_errors
from lora_audit.votes.export import FORMATS, export, write_export
from lora_audit.votes.stats import folder_stats


def _p(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def render_section(title: str, sec: dict[str, Any]) -> list[str]:
    if not sec["votes"]:
        return [f"{title}: none yet (lora-audit vote DIR casts them)"]
    voters = sec["voters"]
    lines = [f"{title}: {sec['votes']} from {len(voters)} voter{'s' * (len(voters) != 1)} ({', '.join(voters)})"]
    rows = [["model", "shown", "wins", "ties", "both bad", "win rate", "95% CI", "by chance"]]
    rows += [[m["model"], str(m["appearances"]), str(m["wins"]), str(m["ties"]), str(m["both_bad"]),
              _p(m["win_rate"]), f"{100 * m['ci_lo']:.1f}–{100 * m['ci_hi']:.1f}%", _p(m["chance_rate"])]
             for m in sec["models"]]
    lines += _table(rows)
    if sec["versus_base"]:
        lines.append("  versus the base model:")
        lines += [f"    {v['sentence']}" for v in sec["versus_base"]]
    bt = sec.get("bradley_terry")
    if bt:
        lines.append("  Bradley–Terry strengths (geometric mean 1; P(i beats j) = s_i / (s_i + s_j)):")
        lines += ["  " + ln for ln in _table([["model", "strength", "95% CI"]] + [
            [s["model"], f"{s['strength']:.3g}", f"{s['ci_lo']:.3g}–{s['ci_hi']:.3g}"] for s in bt["strengths"]])]
        if bt["prior"]:
            lines.append(f"    (with {bt['prior']})")
    for judge, sub in (sec.get("by_judge") or {}).items():
        lines += ["  " + ln for ln in render_section(f"judge {judge}", sub)]
    return lines


def render(stats: dict[str, Any]) -> str:
    lines = [f"{stats['folder']}: {stats['comparisons']} comparisons of {', '.join(stats['models'])}"
             f" (base: {stats['base_model'] or 'none'})"]
    if "human" in stats:
        lines += render_section("human votes", stats["human"])
    if "machine" in stats:
        lines += render_section(f"machine votes ({', '.join(stats['machine']['judges'])})", stats["machine"])
    return "\n".join(lines)


@click.command("stats")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["all", "human", "machine"]), default="all", show_default=True,
              help="Which votes to report (human and machine votes are always reported apart).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@one_line_errors
def stats_cmd(folder: Path, kind: str, as_json: bool) -> None:
    """Win rates with 95% Wilson intervals, the exact sign test against the base model, Bradley–Terry strengths,
    and whether each LoRA's result is conclusive yet, from the votes on a comparison folder."""
    data = folder_stats(folder, kind)
    if as_json:
        echo_json(data)
    else:
        click.echo(render(data))


@click.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="The comparison guide's CSV (one row per image) or JSON schema, with winners, notes, statistics.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write here (default: standard output).")
@click.option("--json", "as_json", is_flag=True, help="With --out: say what was written, as JSON.")
@one_line_errors
def export_cmd(folder: Path, fmt: str, out: Path | None, as_json: bool) -> None:
    """Export a comparison folder with its votes in the comparison guide's schema."""
    if out is None:
        click.echo(export(folder, fmt), nl=False)
        return
    size = write_export(folder, fmt, out)
    if as_json:
        echo_json({"written": str(out), "format": fmt, "bytes": size}, indent=None)
    else:
        click.echo(f"written: {out}")
