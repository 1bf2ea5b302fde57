"""The durable state of a bisection (``bisect.json``): the tests asked round by round, the groups found, and the
small helpers every part of ``ablate.bisect`` reads it with. The search itself is ``ablate.bisect_search``; the
public API (``start``, ``record``, ``advance``...) and the explanation of the answer stay in ``ablate.bisect``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from lora_audit.ablate import group_testing as gt
from lora_audit.ablate.verdict import Judgement, Verdict

MAX_RETRIES = gt.MAX_UNSURE  # re-tests of one variant judged unsure before the search stops with it open


class Test(BaseModel):
    """One variant to train: the good run with ``changes`` applied."""

    __test__ = False  # not a pytest test class, though named like one

    id: str  # r<round>-<letter>, stable
    changes: list[str]
    verdict: Judgement | None = None
    purpose: str = ""  # the question this variant answers, for people
    retry: int = 0  # how many earlier variants asked the same question (judged unsure): the seed is moved this often


class Round(BaseModel):
    number: int
    tests: list[Test]


class BisectState(BaseModel):
    """Durable state of a bisection (stored as ``bisect.json`` in the study folder)."""

    changes: list[str]
    parallel: int = 2
    rounds: list[Round] = Field(default_factory=list)
    status: Literal["running", "found"] = "running"
    culprits: list[str] = Field(default_factory=list)  # union of the groups, in the order of ``changes``
    groups: list[list[str]] = Field(default_factory=list)  # each a minimal set that alone makes the run bad
    notes: list[str] = Field(default_factory=list)
    # True once a trained variant was bad; False when the good run with every change applied was trained and judged
    # good: then the failure does not follow from the changes and ``culprits`` is only the set still in play
    reproduced: bool | None = None
    # where the search stands: found part of the current group, and the pool it is searched in
    phase: Literal["search", "rest", "done"] = "search"
    fixed: list[str] = Field(default_factory=list)
    pool: list[str] = Field(default_factory=list)
    # absent in state files of the first version: they go on with the progressive search
    method: Literal["progressive", "group-testing"] = "progressive"
    controls: list[Test] = Field(default_factory=list)  # the good run again with other seeds (ids ctl-1, ...)
    basis: list[str] = Field(default_factory=list)  # what the answer rests on, one line per claim


def verdicts(state: BisectState) -> list[Verdict]:
    """Every verdict given so far, round by round (controls apart)."""
    return [Verdict(changes=tuple(t.changes), verdict=t.verdict, test=t.id)
            for r in state.rounds for t in r.tests if t.verdict is not None]


def _ordered(state: BisectState, subset: list[str]) -> list[str]:
    s = set(subset)
    return [c for c in state.changes if c in s]


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "nothing"


def _ids(rnd: Round) -> str:
    return ", ".join(t.id for t in rnd.tests)


def _letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s
