"""Which runs are good and which bad: the one rule of ``audit``, ``ablate`` and ``bisect start``."""

from __future__ import annotations

from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.model import Run


def pick_runs(runs: list[Run], good: str | list[str] | None = None, bad: str | list[str] | None = None, *,
              others_are_bad: bool = False) -> tuple[list[Run], list[Run]]:
    """(good runs, bad runs) among ``runs``. A reference is a run's name among ``runs`` or a folder of one run (read
    with the same discovery rule as the runs given). Without ``good``: the runs whose verdict is good. Without
    ``bad``: the runs whose verdict is bad (a good one excepted), else, with ``others_are_bad`` (the audit), every
    other run."""
    loaded = {r.name: r for r in runs}

    def one(ref: str) -> Run:
        if ref in loaded:
            return loaded[ref]
        if Path(ref).exists():
            from lora_audit.evidence.run import load_runs

            found = load_runs([ref])
            if len(found) > 1:
                raise EvidenceError(f"{ref} holds {len(found)} runs ({', '.join(r.name for r in found)}): pass it "
                                    "as RUNS and name one with --good/--bad")
            return loaded.setdefault(found[0].name, found[0])
        raise EvidenceError(f"no run named {ref!r}" + (f" (runs: {', '.join(loaded)})" if loaded else "")
                            + " and no such folder")

    goods = [one(x) for x in ([good] if isinstance(good, str) else good or [])]
    bads = [one(x) for x in ([bad] if isinstance(bad, str) else bad or [])]
    if not goods:
        goods = [r for r in loaded.values() if r.verdict == "good"]
    if not goods:
        raise EvidenceError("no good run: mark one with verdict = \"good\" in its run.toml, or pass --good NAME")
    names = {r.name for r in goods}
    if not bads:
        bads = [r for r in loaded.values() if r.verdict == "bad" and r.name not in names]
    if not bads and others_are_bad:
        bads = [r for r in loaded.values() if r.name not in names]
    if not bads:
        raise EvidenceError("no run to compare with the good one: an audit needs a good and a bad run"
                            if others_are_bad else "no bad run: pass --bad RUN")
    return goods, bads


def good_and_bad(paths: list[str | Path], good: str, bad: str | list[str] | None = None) -> tuple[Run, list[Run]]:
    """``ablate``'s and ``bisect start``'s rule: the runs in ``paths`` (may be none), then :func:`pick_runs` with one
    good run (a name among them, or a folder): (the good run, the bad runs)."""
    from lora_audit.evidence.run import load_runs

    goods, bads = pick_runs(load_runs([str(p) for p in paths]) if paths else [], good, bad)
    return goods[0], bads
