"""A verdict on one trained variant of a bisection: the changes it applied and what the judge said.

The searches (``ablate.group_testing`` and ``ablate.bisect``) read verdicts as these models, never as loose tuples
or dicts; ``bisect.verdicts(state)`` lists them from a ``BisectState`` (``bisect.json``, read by ``ablate.study.load``,
the one loader, which turns a damaged file into one line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict

Judgement = Literal["good", "bad", "unsure"]


class Verdict(BaseModel):
    """The good run with ``changes`` applied was trained and judged ``verdict`` (``unsure``: the judge could not
    tell; the search asks again with another seed, it never branches on it)."""

    model_config = ConfigDict(frozen=True)

    changes: tuple[str, ...]
    verdict: Judgement
    test: str = ""  # the variant id (r<round>-<letter>), where it came from a bisection


VerdictLike = Verdict | tuple[Sequence[str], str]


def as_verdicts(items: Iterable[VerdictLike]) -> list[Verdict]:
    """Verdicts from models or (changes, 'good' | 'bad' | 'unsure') pairs; a bad word is a ValueError."""
    out = []
    for v in items:
        if isinstance(v, Verdict):
            out.append(v)
            continue
        changes, word = v
        if word not in ("good", "bad", "unsure"):
            raise ValueError(f"verdict must be 'good', 'bad' or 'unsure', got {word!r}")
        out.append(Verdict(changes=tuple(changes), verdict=cast(Judgement, word)))
    return out
