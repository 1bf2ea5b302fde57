"""What a voter has left to judge on a comparison folder, and in which order each item is shown (stdlib only).

best-of: one task per (prompt, seed) with all its models; pairwise: one task per pair of its models (the base
against each LoRA first). A task this voter already has a counted vote on is done, so a restarted server resumes.
The display order is shuffled per task and per voter, seeded from both, so a reload shows the same order."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random
from dataclasses import dataclass

from lora_audit.votes.data import ComparisonFolder, Item
from lora_audit.votes.store import MODES, VoteStore


@dataclass(frozen=True)
class Task:
    item: Item
    models: tuple[str, ...]  # in the comparison's order (base first)

    @property
    def key(self) -> tuple[str, frozenset[str]]:
        """As ``Vote.key``: the (prompt, seed) and the set of models shown."""
        return self.item.comparison_id, frozenset(self.models)


def build_tasks(folder: ComparisonFolder, mode: str) -> list[Task]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    tasks = []
    for it in folder.items:
        if len(it.shots) < 2:
            continue
        groups = [tuple(it.models)] if mode == "best-of" else itertools.combinations(it.models, 2)
        tasks += [Task(it, tuple(g)) for g in groups]
    return tasks


def shown_order(task: Task, voter: str) -> tuple[str, ...]:
    """The models of ``task`` in the order ``voter`` sees them, left to right (stable across reloads/restarts)."""
    seed = hashlib.sha256("\0".join([voter, task.item.comparison_id, *task.models]).encode()).digest()
    order = list(task.models)
    random.Random(seed).shuffle(order)
    return tuple(order)


class Queue:
    """The tasks of one voter in one mode. Tokens and order signatures are opaque (keyed with ``secret``), so the
    page can name an item and the order it showed without learning any model name."""

    def __init__(self, folder: ComparisonFolder, mode: str, voter: str, store: VoteStore, secret: bytes):
        self.mode, self.voter, self.store, self._secret = mode, voter, store, secret
        self.tasks = build_tasks(folder, mode)
        self._by_token = {self.token(t): t for t in self.tasks}
        self._by_key = {t.key: t for t in self.tasks}

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:24]

    def token(self, task: Task) -> str:
        return self._sign("item", task.item.comparison_id, *task.models)

    def order_signature(self, task: Task) -> str:
        return self._sign("order", self.voter, task.item.comparison_id, *shown_order(task, self.voter))

    def by_token(self, token: str) -> Task | None:
        return self._by_token.get(token)

    def by_key(self, key: tuple[str, frozenset[str]]) -> Task | None:
        return self._by_key.get(key)

    def judged(self) -> set[tuple[str, frozenset[str]]]:
        return self.store.judged(self.voter, "human")

    def progress(self) -> tuple[int, int, Task | None]:
        """(done, total, the next task or None when all are done)."""
        judged = self.judged()
        left = [t for t in self.tasks if t.key not in judged]
        return len(self.tasks) - len(left), len(self.tasks), left[0] if left else None
