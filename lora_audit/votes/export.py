"""``lora-audit export``: a comparison folder with its votes, in the comparison guide's CSV and JSON schemas ("Report
Export"), the guide's keys and columns first and exact, our additions after them (stdlib only).

The winner of a comparison is the plurality of its counted human votes: the choice with strictly the most votes,
when that choice is a model (one pairwise vote counts for the model it chose). A top choice of 'tie' or 'both_bad',
or two models level at the top, leaves no winner, and the notes say which. Machine votes never set ``winner``; they
go to ``machine_winner`` by the same rule.

CSV ``winner``: as in the guide's example and its pandas snippet (``df['winner'] == 1``), the 0-based index, in the
comparison's model order (the base is 0), of the model that won that comparison, repeated on each of its rows; empty
when there is no winner. JSON ``winner``: the model's name, or null."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.format import csv_row
from lora_audit.votes.data import ComparisonFolder, load_folder
from lora_audit.votes.stats import folder_votes, summarize
from lora_audit.votes.store import BOTH_BAD, TIE, Vote

VERSION = "1.0.0"
GUIDE_COLUMNS = ["comparison_id", "prompt", "seed", "model_name", "base_model", "lora", "lora_strength",
                 "generation_time_s", "winner", "notes", "completed_at"]
VOTE_COLUMNS = ["winner_model", "human_votes", "votes_for_model", "machine_winner"]
FORMATS = ("csv", "json")


def plurality(votes: list[Vote]) -> tuple[str | None, str]:
    """(winning model or None, why none): see the module's docstring."""
    if not votes:
        return None, ""
    counts = Counter(v.choice for v in votes).most_common()
    top = [c for c, k in counts if k == counts[0][1]]
    if len(top) > 1:
        return None, "no winner: votes split (" + ", ".join(f"{c} {k}" for c, k in counts) + ")"
    if top[0] == TIE:
        return None, "no winner: tie"
    if top[0] == BOTH_BAD:
        return None, "no winner: both bad"
    return top[0], ""


def _notes(raw: dict[str, Any], human: list[Vote], why: str) -> str:
    parts = [why] if why else []
    if raw.get("notes"):
        parts.append(str(raw["notes"]))
    parts += list(dict.fromkeys(v.notes.strip() for v in human if v.notes.strip()))
    return " | ".join(parts)


def _rows(cf: ComparisonFolder, votes: list[Vote]) -> list[dict[str, Any]]:
    """One entry per comparison of comparison.json with its votes, winner and notes worked out."""
    out = []
    for raw in cf.data["comparisons"]:
        cid = str(raw["comparison_id"])
        mine = [v for v in votes if v.comparison_id == cid]
        human = [v for v in mine if v.kind == "human"]
        winner, why = plurality(human)
        if winner is not None and winner not in [m["name"] for m in raw["models"]]:  # a vote from an older compare
            winner, why = None, f"no winner: votes for {winner}, not in this comparison"
        out.append({"raw": raw, "human": human, "machine": [v for v in mine if v.kind == "machine"],
                    "winner": winner, "machine_winner": plurality([v for v in mine if v.kind == "machine"])[0],
                    "notes": _notes(raw, human, why)})
    return out


def _metric_columns(cf: ComparisonFolder) -> list[str]:
    cols: dict[str, None] = {}
    for raw in cf.data["comparisons"]:
        for m in raw["models"]:
            for k in m.get("metrics") or {}:
                cols.setdefault(k)
    return list(cols)


def to_csv(cf: ComparisonFolder, votes: list[Vote]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    metrics = _metric_columns(cf)
    w.writerow(csv_row(GUIDE_COLUMNS + ["image", "distance_to_base"] + metrics + VOTE_COLUMNS))
    for r in _rows(cf, votes):
        raw = r["raw"]
        names = [m["name"] for m in raw["models"]]
        index = names.index(r["winner"]) if r["winner"] in names else None
        for m in raw["models"]:
            guide = [raw["comparison_id"], raw["prompt"], raw["seed"], m["name"], m.get("base_model"),
                     m.get("lora") or "", m.get("lora_strength"), m.get("generation_time_s"), index, r["notes"],
                     m.get("completed_at")]
            extra = [m.get("image"), m.get("distance_to_base")] + [(m.get("metrics") or {}).get(k) for k in metrics]
            tally = [r["winner"], len(r["human"]), sum(v.choice == m["name"] for v in r["human"]), r["machine_winner"]]
            w.writerow(csv_row(guide + extra + tally))  # text that would start a formula gets a leading '

    return buf.getvalue()


def _vote_json(v: Vote) -> dict[str, Any]:
    return {"choice": v.choice, "mode": v.mode, "shown": list(v.shown), "voter": v.voter, "kind": v.kind,
            "judge": v.judge, "notes": v.notes, "created_at": v.created_at}


def to_json(cf: ComparisonFolder, votes: list[Vote]) -> dict[str, Any]:
    rows = _rows(cf, votes)
    total = len(rows)
    decided = [r for r in rows if r["winner"]]
    wins = Counter(r["winner"] for r in decided)
    meta = cf.data.get("metadata") or {}
    src_stats = cf.data.get("statistics") or {}
    guide_stats = ("total_comparisons", "comparisons_with_preference", "preference_rate", "model_wins")
    comparisons = []
    for r in rows:
        raw = r["raw"]
        models = [{"name": m["name"], "base_model": m.get("base_model"), "lora": m.get("lora") or None,
                   "generation_time_s": m.get("generation_time_s"),
                   **{k: v for k, v in m.items() if k not in ("name", "base_model", "lora", "generation_time_s")}}
                  for m in raw["models"]]
        comparisons.append({"comparison_id": raw["comparison_id"], "prompt": raw["prompt"], "seed": raw["seed"],
                            "models": models, "winner": r["winner"], "notes": r["notes"],
                            "machine_winner": r["machine_winner"],
                            "votes": [_vote_json(v) for v in r["human"] + r["machine"]]})
    return {
        "metadata": {"generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "version": VERSION,
                     "total_comparisons": total,
                     **{k: v for k, v in meta.items() if k not in ("generated_at", "version", "total_comparisons")},
                     "tool": "lora-audit export", "compared_at": meta.get("generated_at")},
        "comparisons": comparisons,
        "statistics": {
            "total_comparisons": total, "comparisons_with_preference": len(decided),
            "preference_rate": round(100 * len(decided) / total, 1) if total else 0.0,
            # share of the comparisons with a preference (the guide's example: 3 + 7 of 10 -> 30.0, 70.0)
            "model_wins": [{"model_name": m, "wins": wins[m],
                            "win_rate": round(100 * wins[m] / len(decided), 1) if decided else 0.0}
                           for m in cf.models],
            **{k: v for k, v in src_stats.items() if k not in guide_stats and k != "lora_audit"},
            "lora_audit": summarize(votes, cf)},
        **{k: v for k, v in cf.data.items() if k not in ("metadata", "comparisons", "statistics")},
    }


def export(folder: Path | str, fmt: str) -> str:
    """The folder's comparisons and votes as CSV or JSON text (``fmt``: 'csv' or 'json')."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be csv or json, not {fmt!r}")
    cf = load_folder(folder)
    votes = folder_votes(cf.path)
    if fmt == "csv":
        return to_csv(cf, votes)
    return json.dumps(to_json(cf, votes), indent=2, default=str) + "\n"


# what lora-audit compare, vote and judge keep in a comparison folder: an export never lands on one of them
_FOLDER_FILES = ("comparison.json", "comparison.csv", "report.md", "journal.jsonl")


def check_out(folder: Path | str, out: Path | str) -> None:
    """``export --out``: a file path that is not a folder, not a special file, and not one of the comparison
    folder's own files (comparison.json/.csv, report.md, the journal, votes.sqlite and its journals, grids,
    images). EvidenceError otherwise."""
    out, folder = Path(out), Path(folder)
    try:
        target, root = out.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        raise EvidenceError("--out cannot be resolved (a symlink loop?)", str(out)) from None
    if out.exists() and not out.is_file():
        raise EvidenceError("--out exists and is not a regular file: give a file path", str(out))
    if not target.is_relative_to(root):
        return
    rel = target.relative_to(root)
    name = rel.name
    if (rel.parts and rel.parts[0] == "images") or name in _FOLDER_FILES or name.startswith("votes.sqlite") \
            or (name.startswith("grid-") and name.endswith(".png")):
        raise EvidenceError(f"--out is a file of the comparison itself ({rel.as_posix()}): write the export to "
                            "another name", str(out))


def write_export(folder: Path | str, fmt: str, out: Path | str) -> int:
    """``export --out``: :func:`export` written to ``out`` (checked first with :func:`check_out`; its folder made).
    Returns the bytes written."""
    check_out(folder, out)
    text = export(folder, fmt)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise EvidenceError(f"cannot write: {e.strerror or e}", str(out)) from None
    return len(text.encode("utf-8"))
