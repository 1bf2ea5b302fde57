"""Group testing over changes (lora_audit.ablate.group_testing): right answers and worst-case trainings on every
culprit set, against noiseless and unsure oracles."""

import itertools
import random

import pytest

from lora_audit.ablate import group_testing as gt
from lora_audit.ablate.bisect import advance, pending, record, start, trainings

# cells where the minimax program needs trainings over min(k, c·⌈log2(k/c)⌉ + c + 1): (k, c) -> extra. Not knowing c
# costs them: at k = 6, 7 (and k = 8, c = 1 with the interaction check) no search can do better while keeping the
# other cells within k (ablate.gt_exact; see test_where_the_bound_cannot_be_met_no_search_can_meet_it)
OVER = {(6, 1): 1, (7, 1): 2, (8, 1): 1, (8, 2): 1, (11, 3): 1, (12, 3): 1, (14, 2): 1, (15, 1): 1, (16, 1): 1,
        (16, 3): 1}


def _items(k):
    return [f"change{i:02d}" for i in range(k)]


def _check_all(k, c, sets, parallel=1):
    worst = 0
    for hidden in sets:
        h = frozenset(hidden)
        out, n, _ = gt.simulate(_items(k), lambda s, h=h: bool(s & h), parallel)
        assert set(out.culprits) == h and not out.fallback and out.undecided is None, (k, hidden, out)
        assert set(out.tested_alone) | set(out.inferred) == h
        worst = max(worst, n)
    assert worst <= gt.bound(k, c) + gt.slack(k, c), (k, c, worst)
    assert worst <= k, "never more trainings than one change at a time"
    return worst


@pytest.mark.parametrize("k", range(4, 13))
@pytest.mark.parametrize("c", [1, 2, 3])
def test_every_culprit_set_is_found_within_the_bound(k, c):
    _check_all(k, c, itertools.combinations(_items(k), c))


@pytest.mark.parametrize("k", range(13, 17))
@pytest.mark.parametrize("c", [1, 2, 3])
def test_big_k_sampled(k, c):
    rng = random.Random(k * 10 + c)
    sets = list(itertools.combinations(_items(k), c))
    _check_all(k, c, sets if len(sets) <= 120 else rng.sample(sets, 120))


@pytest.mark.slow
@pytest.mark.parametrize("k", range(13, 17))
@pytest.mark.parametrize("c", [1, 2, 3])
def test_big_k_exhaustive(k, c):
    _check_all(k, c, itertools.combinations(_items(k), c))


def test_the_bound_is_met_except_where_the_program_says_and_never_past_k():
    for k in range(4, 17):
        for c in (1, 2, 3):
            assert gt.slack(k, c) == OVER.get((k, c), 0), (k, c)
            assert gt.bound(k, c) + gt.slack(k, c) <= k or gt.slack(k, c) == 0
    assert gt.bound(16, 1) == 6 and gt.bound(16, 2) == 9 and gt.bound(16, 3) == 13 and gt.bound(4, 3) == 4


@pytest.mark.slow
def test_slack_table_is_what_the_program_computes():
    assert {k: gt._search_slack(k) for k in range(1, 17)} == gt._SLACK


def test_worst_case_k16_three_culprits_beats_one_at_a_time():
    """The issue's case: 3 independent culprits among 16 cost at most 14 (bound 13 + 1), OFAT 16; the old
    progressive bisect needed up to 18."""
    worst = _check_all(16, 3, [("change00", "change05", "change15"), ("change02", "change05", "change15"),
                               ("change13", "change14", "change15")])
    assert worst <= 14


@pytest.mark.parametrize("hidden", [("change03", "change09"), ("change14", "change15"),
                                    ("change00", "change01", "change02")])
def test_an_interaction_hands_over_to_the_monotone_search(hidden):
    h = frozenset(hidden)
    out, _, _ = gt.simulate(_items(16), lambda s: h <= s)
    assert out.fallback and set(out.culprits) < h
    state = start(_items(16), parallel=2)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "bad" if h <= frozenset(t.changes) else "good")
        state = advance(state)
    assert state.groups == [list(hidden)], state.groups
    assert state.method == "progressive" and any("only together" in n for n in state.notes)


def test_unsure_is_asked_again_never_branched_on():
    k, h = 12, frozenset({"change07"})
    items = _items(k)
    verdicts = []
    unsure_left = {0: 2, 3: 1}  # the 1st and 4th questions are first judged unsure
    asked = 0
    while True:
        step = gt.next_step(items, verdicts)
        if step.outcome:
            break
        q = step.queries[0]
        if unsure_left.get(asked, 0):
            unsure_left[asked] -= 1
            assert not verdicts or verdicts[-1][0] != q.changes or verdicts[-1][1] == "unsure"
            verdicts.append((q.changes, "unsure"))
            again = gt.next_step(items, verdicts).queries
            assert again[0].changes == q.changes, "the same group is asked again"
            continue
        verdicts.append((q.changes, "bad" if h & frozenset(q.changes) else "good"))
        asked += 1
    assert step.outcome.culprits == ["change07"]
    clean, n, _ = gt.simulate(items, lambda s: bool(s & h))
    assert [v for v in verdicts if v[1] != "unsure"] == [v for v in _replay(items, h)]
    assert len([v for v in verdicts if v[1] != "unsure"]) == n


def _replay(items, h):
    verdicts = []
    while True:
        step = gt.next_step(items, verdicts)
        if step.outcome:
            return verdicts
        verdicts += [(q.changes, "bad" if h & frozenset(q.changes) else "good") for q in step.queries]


def test_always_unsure_routes_around_then_stops_with_the_question_open():
    out, n, _ = gt.simulate(_items(8), lambda s: "unsure")
    assert out.undecided is not None and out.culprits == [] and len(out.undecided.changes) == 1
    assert "stayed unsure" in out.reason and n <= 4 * (gt.MAX_UNSURE + 1)


def test_a_group_that_stays_unsure_is_routed_around():
    """The first group is unsure whatever the seed: the search asks smaller groups and still finds the culprit."""
    h = frozenset({"change06"})
    first = gt.next_step(_items(12)).queries[0].changes

    def judge(s):
        return "unsure" if s == frozenset(first) else "bad" if s & h else "good"
    out, n, _ = gt.simulate(_items(12), judge)
    assert out.culprits == ["change06"] and out.undecided is None


def test_split_verdicts_on_one_group_are_asked_again():
    items = _items(8)
    q = gt.next_step(items).queries[0]
    step = gt.next_step(items, [(q.changes, "good"), (q.changes, "bad")])
    assert step.queries and step.queries[0].changes == q.changes


def test_more_than_three_culprits_are_still_found():
    for k in (8, 12, 16):
        rng = random.Random(k)
        for _ in range(30):
            h = frozenset(rng.sample(_items(k), rng.randint(4, k)))
            out, n, _ = gt.simulate(_items(k), lambda s, h=h: bool(s & h))
            assert set(out.culprits) == h, (k, sorted(h), out)


def test_errors():
    with pytest.raises(ValueError, match="parallel"):
        gt.next_step(["a"], parallel=0)
    with pytest.raises(ValueError, match="nothing"):
        gt.next_step([])


def test_bisect_trainings_match_the_pure_search():
    h = frozenset({"change02", "change09"})
    state = start(_items(14), parallel=1)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "bad" if h & frozenset(t.changes) else "good")
        state = advance(state)
    _, n, _ = gt.simulate(_items(14), lambda s: bool(s & h))
    assert state.culprits == sorted(h) and trainings(state) == n


@pytest.mark.parametrize("parallel", [2, 4])
def test_parallel_slots_never_raise_the_worst_case(parallel):
    """Spare slots only batch the final checks (each needed whatever the other answers): rounds, never trainings."""
    for k in (6, 9, 12):
        for c in (1, 2, 3):
            sets = list(itertools.combinations(_items(k), c))[::3]
            assert _check_all(k, c, sets, parallel) <= gt.bound(k, c) + gt.slack(k, c)
    h = frozenset({"change01", "change06", "change10"})
    one, n1, r1 = gt.simulate(_items(12), lambda s: bool(s & h), 1)
    many, n2, r2 = gt.simulate(_items(12), lambda s: bool(s & h), parallel)
    assert one.culprits == many.culprits and n2 == n1 and r2 <= r1


# --- the bound, exhaustively, through the bisect flow the user runs -----------------------------------------

def _bisect_worst(k, c, oracle_of, parallel=2):
    """Every culprit set of size c through start/record/advance: (worst trainings, every answer right)."""
    worst, right = 0, True
    for hidden in itertools.combinations(_items(k), c):
        h = frozenset(hidden)
        oracle = oracle_of(h)
        state = start(_items(k), parallel=parallel)
        while state.status == "running":
            for t in pending(state):
                state = record(state, t.id, "bad" if oracle(frozenset(t.changes)) else "good")
            state = advance(state)
        right &= set(state.culprits) == h
        worst = max(worst, trainings(state))
    return worst, right


@pytest.mark.parametrize("k,c", [(4, 3), (5, 2), (9, 1), (9, 2), (9, 3), (10, 1), (10, 2), (10, 3), (12, 2)])
def test_cells_at_the_bound_meet_it_for_every_culprit_set(k, c):
    """min(k, c·⌈log2(k/c)⌉ + c + 1) trainings, the final checks included, on every set of c independent culprits,
    and the answer is always the hidden set."""
    worst, right = _bisect_worst(k, c, lambda h: (lambda s: bool(s & h)))
    assert right
    assert worst <= gt.bound(k, c) and gt.slack(k, c) == 0


@pytest.mark.parametrize("k,c", [(6, 2), (7, 2), (8, 2), (6, 3), (7, 3)])
def test_interactions_are_always_found_on_a_noiseless_oracle(k, c):
    """Every set of c changes that are bad only all together (a pair, a triple) comes out as that group."""
    _, right = _bisect_worst(k, c, lambda h: (lambda s: h <= s))
    assert right


def test_where_the_bound_cannot_be_met_no_search_can_meet_it():
    """k = 6: no adaptive search that does not know c finds 1 culprit in 5 trainings and 2 or 3 in 6 (= k): the exact
    minimax over every knowledge state says so, with or without the interaction check; 6, 6, 6 is possible, and
    the search meets it."""
    from lora_audit.ablate import gt_exact

    assert (gt.bound(6, 1), gt.bound(6, 2), gt.bound(6, 3)) == (5, 6, 6)
    assert not gt_exact.feasible(6, (5, 6, 6))
    assert not gt_exact.feasible(6, (5, 6, 6), interactions=True)
    assert gt_exact.feasible(6, (5, 7, 7))  # past k for c = 2, 3 it would be possible: the min(k, ...) is the cost
    assert gt_exact.feasible(6, (6, 6, 6), interactions=True)
    for c in (1, 2, 3):
        worst, right = _bisect_worst(6, c, lambda h: (lambda s: bool(s & h)))
        assert right and worst == 6


def test_the_exact_program_knows_the_easy_cases():
    from lora_audit.ablate import gt_exact

    assert gt_exact.feasible(4, (4, 4, 4)) and not gt_exact.feasible(4, (3, 4, 4))
    assert gt_exact.feasible(5, (5, 5, 5)) and not gt_exact.feasible(5, (4, 5, 5))


def test_k7_one_culprit_needs_seven_when_two_and_three_stay_within_k():
    """The (7, 1) cell is over the bound by 2, and that is optimal: 6 trainings for one culprit would cost more
    than k = 7 for two or three (exact minimax, about a second)."""
    from lora_audit.ablate import gt_exact

    assert not gt_exact.feasible(7, (6, 7, 7))
    assert gt_exact.feasible(7, (7, 7, 7)) and gt_exact.feasible(7, (5, 7, 8))  # past k for c = 3 it would be
    with pytest.raises(TimeoutError):
        gt_exact.feasible(8, (5, 7, 8), seconds=0.5)  # an open question stops in time instead of hanging
    assert gt.bound(7, 1) + gt.slack(7, 1) == 7
