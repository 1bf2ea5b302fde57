"""Evaluate the impact rules (impact.toml) on a good→bad pair: Findings, ranked.

The code here only evaluates: which rule fires, at which level, and why, is all in the rules file.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from lora_audit.derive import derive
from lora_audit.diff import Change, RunDiff, diff_runs
from lora_audit.expr import View, compile_expr, evaluate
from lora_audit.format import format_value
from lora_audit.kohya.semantics import effective
from lora_audit.model import Run

Level = Literal["primary", "secondary", "unlikely", "unknown"]
_LEVEL: dict[str, Level] = {"high": "primary", "medium": "secondary", "low": "unlikely"}
_RANK = {"primary": 0, "secondary": 1, "unlikely": 2, "unknown": 3}


class Finding(BaseModel):
    id: str
    kind: Literal["change", "fact", "unknown"] = "change"  # a parameter change, a fact of the evidence, a gap
    params: list[str]
    level: Level
    impact: str  # high / medium / low / unknown
    title: str
    rationale: str
    evidence: list[str] = Field(default_factory=list)  # sources behind the finding
    good: str
    bad: str
    inert: str | None = None  # why the change does nothing, when it does nothing


class RuleError(ValueError):
    pass


@cache
def _bundled() -> dict:
    return tomllib.loads((resources.files("lora_audit.rules") / "impact.toml").read_text("utf-8"))


def load_rules(path: str | Path | None = None) -> dict:
    data = tomllib.loads(Path(path).read_text("utf-8")) if path else _bundled()
    for r in data.get("rule", []) + data.get("fact", []):
        for key in ("id", "impact", "title", "why"):
            if key not in r:
                raise RuleError(f"rule {r.get('id', '?')} lacks {key!r}")
        if r["impact"] not in _LEVEL:
            raise RuleError(f"rule {r['id']}: impact must be high, medium or low")
        if "when" in r:
            compile_expr(r["when"])
    return data


class _Fmt:
    """Attribute access that formats values for rule texts: {good.network_dim} -> "32"."""

    def __init__(self, values: dict[str, Any]):
        self._v = values

    def __getattr__(self, name: str) -> str:
        v = self._v.get(name)
        return "unknown" if v is None else format_value(v)


def _values(run: Run) -> dict[str, Any]:
    vals = {k: effective(k, p.value)[0] for k, p in run.params.items() if p.origin != "unknown"}
    vals.update({k: p.value for k, p in derive(run).items() if p.origin != "unknown"})
    return vals


def _sources(changes: list[Change]) -> list[str]:
    return list(dict.fromkeys(c.source for ch in changes for c in ch.values.values() if c.source))


def find_suspects(good: Run, bad: Run, diff: RunDiff | None = None, rules: dict | None = None) -> list[Finding]:
    """Findings for one good→bad pair, best suspects first, unknowns last."""
    rules = rules or load_rules()
    diff = diff or diff_runs([good, bad])
    effective_changes = {c.param: c for c in diff.effective_changes()}
    gv, bv = _values(good), _values(bad)
    env = {"good": View(gv), "bad": View(bv)}
    fmt = {"good": _Fmt(gv), "bad": _Fmt(bv)}
    findings: list[Finding] = []
    covered: set[str] = set()
    for rule in rules.get("rule", []):
        on = rule.get("on", ["changed", "added", "removed"])
        hit = [effective_changes[p] for p in rule["params"]
               if p in effective_changes and effective_changes[p].kind in on]
        if not hit:
            continue
        if "when" in rule and not evaluate(rule["when"], env):
            continue
        covered.update(c.param for c in hit)
        words = "; ".join(f"{c.param} {c.words}" if len(hit) > 1 else c.words for c in hit)
        level = _LEVEL[rule["impact"]]
        inert = _inert_both(hit, good.name, bad.name)
        if inert:
            level = "unlikely"
        findings.append(Finding(
            id=rule["id"], params=[c.param for c in hit], level=level, impact=rule["impact"],
            title=rule["title"].format(words=words, **fmt),
            rationale=" ".join(rule["why"].format(words=words, **fmt).split()),
            evidence=_sources(hit), good=good.name, bad=bad.name, inert=inert))
    for param, c in effective_changes.items():
        if param in covered or c.kind == "unknown" or param in {d.param for d in diff.derived}:
            continue
        impact = rules.get("category", {}).get(c.category, "low")
        inert = _inert_both([c], good.name, bad.name)
        findings.append(Finding(
            id=f"change:{param}", params=[param], level="unlikely" if inert else _LEVEL[impact], impact=impact,
            title=f"{param} {c.words}",
            rationale=f"No specific rule covers {param}; a change in {c.category} is rated {impact} by default.",
            evidence=_sources([c]), good=good.name, bad=bad.name, inert=inert))
    for fact_rule in rules.get("fact", []):
        for item in bad.facts.get(fact_rule["fact"], []):  # a rules file may name a fact no run has
            ctx = {"item": _Fmt(item), **fmt}
            findings.append(Finding(
                id=fact_rule["id"], kind="fact", params=[str(item.get("name") or item.get("key") or item.get("flag"))],
                level=_LEVEL[fact_rule["impact"]], impact=fact_rule["impact"], title=fact_rule["title"].format(**ctx),
                rationale=" ".join(fact_rule["why"].format(**ctx).split()), evidence=[item.get("source", "")],
                good=good.name, bad=bad.name))
    findings.extend(_unknown_findings(good, bad, {c.param: c for c in diff.changes}))
    findings.sort(key=lambda f: (_RANK[f.level], {"high": 0, "medium": 1, "low": 2}.get(f.impact, 3)))
    return findings


def _inert_both(hit: list[Change], good: str, bad: str) -> str | None:
    whys = [c.inert.get(bad) for c in hit if c.inert.get(good) and c.inert.get(bad)]
    return whys[0] if whys and len(whys) == len(hit) else None


def _unknown_findings(good: Run, bad: Run, changes: dict[str, Change]) -> list[Finding]:
    out = []
    for run in (good, bad):
        unknown = [p for p, c in changes.items() if c.values.get(run.name) and c.values[run.name].origin == "unknown"
                   and c.kind == "unknown"]
        if unknown:
            note = next((run.params[p].note for p in unknown if p in run.params and run.params[p].note), None)
            out.append(Finding(
                id=f"unknown:{run.name}", kind="unknown", params=unknown, level="unknown", impact="unknown",
                title=f"{len(unknown)} parameter(s) unknown in {run.name}",
                rationale=f"Not known for {run.name}: {', '.join(unknown)}. {note or ''}".strip(),
                good=good.name, bad=bad.name))
        for p, param in run.params.items():
            if param.alternatives and param.origin == "inferred":
                alts = ", ".join(format_value(a.value) + (f" ({a.note})" if a.note else "") for a in param.alternatives)
                out.append(Finding(
                    id=f"ambiguous:{run.name}:{p}", kind="unknown", params=[p], level="unknown", impact="unknown",
                    title=f"{p} of {run.name} is inferred and ambiguous: {format_value(param.value)} or {alts}",
                    rationale=f"{(param.note or '').rstrip('.')}. The LoRA file itself (its header: tensor "
                              "shapes, dtype and ss_* metadata) would settle it: "
                              "`lora-audit inspect FILE.safetensors`.".strip(),
                    evidence=[param.source] if param.source else [], good=good.name, bad=bad.name))
    return out
