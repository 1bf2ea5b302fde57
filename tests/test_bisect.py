"""bisect over a set of changes: the culprits it finds, the trainings it costs, its durable state and its errors."""

import math

import pytest

from lora_audit.ablate import group_testing as gt
from lora_audit.ablate.bisect import BisectState, advance, log, pending, record, simulate, start, trainings

CHANGES = ["arch:sdxl", "network_dim", "network_alpha", "learning_rate", "shuffle_caption", "noise_offset",
           "train_batch_size", "max_train_epochs", "optimizer_type", "lr_scheduler", "min_snr_gamma",
           "caption_dropout_rate", "keep_tokens", "clip_skip", "mixed_precision", "resolution"]


PROG = "progressive"


def run(changes, bad, parallel=2, method="group-testing"):
    """Judge every pending test with ``bad`` (True = bad), checking the state survives JSON at every step."""
    state = _roundtrip(start(changes, parallel, method=method))
    while state.status == "running":
        for t in pending(state):
            state = _roundtrip(record(state, t.id, "bad" if bad(frozenset(t.changes)) else "good"))
        state = _roundtrip(advance(state))
    return state


def _roundtrip(state: BisectState) -> BisectState:
    back = BisectState.model_validate_json(state.model_dump_json())
    assert back == state
    return back


def bound(k):
    return math.ceil(math.log2(k)) + 2


@pytest.mark.parametrize("k", range(4, 17))
@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_single_culprit_within_log2_plus_2_trainings_progressive(k, parallel):
    changes = CHANGES[:k]
    for culprit in changes:
        state = run(changes, lambda s, culprit=culprit: culprit in s, parallel, PROG)
        assert state.culprits == [culprit]
        assert state.groups == [[culprit]]
        assert trainings(state) <= bound(k), (culprit, log(state))
        assert all(len(r.tests) <= parallel for r in state.rounds)


@pytest.mark.parametrize("k", range(4, 17))
@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_single_culprit_group_testing_within_its_budget_and_sure(k, parallel):
    """Group testing: c = 1 within min(k, ⌈log2 k⌉ + 2) + slack (0, or 1-2 where the program needs it for c = 2..3
    to stay within their bound), the culprit trained alone."""
    changes = CHANGES[:k]
    for culprit in changes:
        state = run(changes, lambda s, culprit=culprit: culprit in s, parallel)
        assert state.culprits == [culprit] and state.groups == [[culprit]]
        assert trainings(state) <= gt.bound(k, 1) + gt.slack(k, 1) <= k, (culprit, log(state))
        assert all(len(r.tests) <= parallel for r in state.rounds)
        # the culprit itself is always trained alone; the rest together only where the budget allows
        assert state.basis[0].startswith(f"{culprit}: r") and "judged bad" in state.basis[0], state.basis
        assert state.basis[-1] in ("how sure: sure", "how sure: likely (rests on independent culprits)")


def test_spare_slots_save_rounds_not_trainings():
    changes = CHANGES[:12]
    one = run(changes, lambda s: "min_snr_gamma" in s, parallel=1, method=PROG)
    two = run(changes, lambda s: "min_snr_gamma" in s, parallel=2, method=PROG)
    assert one.culprits == two.culprits == ["min_snr_gamma"]
    assert len(two.rounds) < len(one.rounds)
    assert trainings(two) <= bound(12)


def test_first_round_is_a_half_and_tests_have_stable_ids():
    state = start(CHANGES[:8], method=PROG)
    assert [t.id for t in pending(state)] == ["r1-a"]
    assert pending(state)[0].changes == CHANGES[:4]
    assert "first 4 of the 8" in pending(state)[0].purpose
    assert state.rounds[0].number == 1


@pytest.mark.parametrize("pair", [("arch:sdxl", "resolution"), ("network_dim", "learning_rate"),
                                  ("noise_offset", "noise_offset")])
def test_independent_culprits_are_all_found(pair):
    """Each alone makes the run bad: both must come out, each as its own group, and the rest is good."""
    culprits = set(pair)
    state = run(CHANGES[:10] + ["resolution"], lambda s: bool(s & culprits), method=PROG)
    assert set(state.culprits) == culprits
    assert sorted(map(tuple, state.groups)) == sorted((c,) for c in culprits)
    assert any(t.verdict == "good" and set(t.changes) == set(CHANGES[:10] + ["resolution"]) - culprits
               for r in state.rounds for t in r.tests), "the bad run minus the culprits is shown good"


def test_three_independent_culprits():
    culprits = {"network_alpha", "min_snr_gamma", "clip_skip"}
    state = run(CHANGES, lambda s: bool(s & culprits))
    assert set(state.culprits) == culprits and len(state.groups) == 3


def test_interaction_needs_both():
    """Bad only when both are applied: neither alone is a culprit, the pair is (ofat would find nothing)."""
    pair = {"shuffle_caption", "keep_tokens"}
    state = run(CHANGES[:13], lambda s: pair <= s)
    assert state.groups == [["shuffle_caption", "keep_tokens"]]
    assert state.culprits == ["shuffle_caption", "keep_tokens"]
    singles = {frozenset(t.changes): t.verdict for r in state.rounds for t in r.tests if len(t.changes) == 1}
    assert all(v == "good" for v in singles.values())
    assert "# culprit group: shuffle_caption + keep_tokens (bad only together)" in log(state)
    assert any("keep_tokens alone is good" in n or "bad only together" in n for n in state.notes), state.notes


def test_interaction_plus_independent_culprit():
    pair = {"network_dim", "network_alpha"}
    state = run(CHANGES[:9], lambda s: pair <= s or "optimizer_type" in s, method=PROG)
    assert sorted(map(sorted, state.groups)) == [["network_alpha", "network_dim"], ["optimizer_type"]]


def test_every_group_is_minimal_and_reverting_them_fixes_the_run():
    import random

    rng = random.Random(7)
    for _ in range(300):
        k = rng.randint(2, 12)
        changes = CHANGES[:k]
        terms = [frozenset(rng.sample(changes, rng.randint(1, min(3, k)))) for _ in range(rng.randint(1, 3))]
        bad = lambda s, terms=terms: any(t <= s for t in terms)  # noqa: E731
        state = run(changes, bad, parallel=rng.randint(1, 3), method=PROG)
        for g in state.groups:
            assert bad(frozenset(g)) and not any(bad(frozenset(g) - {c}) for c in g), (terms, state.groups)
        assert not bad(frozenset(changes) - set(state.culprits))
        tested = [frozenset(t.changes) for r in state.rounds for t in r.tests]
        assert len(tested) == len(set(tested)), "no variant is trained twice"


def test_one_change_needs_no_training():
    state = start(["network_dim"])
    assert state.status == "found" and state.culprits == ["network_dim"]
    assert trainings(state) == 0 and pending(state) == []
    assert "without training anything" in state.notes[0]
    assert simulate(["network_dim"], lambda s: True) == (["network_dim"], 0)
    assert "found: network_dim after 0 trainings" in log(state)[-1]


def test_all_subsets_good_stops_with_the_full_set_and_a_note():
    """The bad run never reproduces (noise, or a cause outside the changes): no endless loop, a clear note."""
    changes = CHANGES[:8]
    state = run(changes, lambda s: False)
    assert state.status == "found"
    assert state.culprits == changes
    assert state.reproduced is False
    assert any("does not reproduce" in n and "full remaining set" in n for n in state.notes)
    assert trainings(state) <= 2 * len(changes)


def test_interaction_of_three_is_checked_against_the_remade_bad_run():
    triple = {"network_dim", "learning_rate", "optimizer_type"}
    state = run(CHANGES[:10], lambda s: triple <= s)
    assert set(state.culprits) == triple and state.reproduced is True


def test_noisy_verdicts_always_end():
    import random

    rng = random.Random(3)
    for _ in range(200):
        k = rng.randint(1, 12)
        state = start(CHANGES[:k], rng.randint(1, 3))
        while state.status == "running":
            for t in pending(state):
                state = record(state, t.id, rng.choice(["good", "bad"]))
            state = advance(state)
        assert state.culprits and trainings(state) <= 3 * k


def test_contradicting_verdicts_are_noted_and_the_search_still_ends():
    """A round of two prefixes where the smaller is judged bad and the larger good cannot both be right."""
    state = start(CHANGES[:3], parallel=2, method=PROG)
    assert [t.changes for t in pending(state)] == [CHANGES[:1], CHANGES[:2]]
    state = advance(record(record(state, "r1-a", "bad"), "r1-b", "good"))
    assert state.notes == ["r1-b was judged good but holds every change of r1-a, judged bad: noise between "
                           "trainings, or a change that hides another; the bisection goes on with the verdicts as "
                           "given (re-train both, and the control, to check)"]
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "bad")
        state = advance(state)
    # as the verdicts say: the rest {dim, alpha} bad, {dim} good
    assert state.culprits == ["arch:sdxl", "network_alpha"]
    assert any(line.startswith("# note: r1-b was judged good") for line in log(state))


def test_record_errors():
    state = start(CHANGES[:8])
    with pytest.raises(ValueError, match=r"unknown test 'r9-z'.*current round is 1: r1-a"):
        record(state, "r9-z", "bad")
    with pytest.raises(ValueError, match="verdict must be 'good', 'bad' or 'unsure'"):
        record(state, "r1-a", "meh")
    state = advance(record(state, "r1-a", "bad"))
    with pytest.raises(ValueError, match=r"r1-a belongs to round 1, whose verdicts are already used; the current "
                                         r"round is 2"):
        record(state, "r1-a", "good")
    done = run(CHANGES[:4], lambda s: "network_dim" in s)
    with pytest.raises(ValueError, match="finished"):
        record(done, "r1-a", "bad")


def test_record_does_not_mutate_and_can_be_corrected_before_advance():
    state = start(CHANGES[:8])
    judged = record(state, "r1-a", "bad")
    assert state.rounds[0].tests[0].verdict is None
    judged = record(judged, "r1-a", "good")
    assert judged.rounds[0].tests[0].verdict == "good"


def test_advance_is_idempotent_until_the_round_is_complete():
    state = start(CHANGES[:12], parallel=2, method=PROG)
    assert advance(state) == state
    while len(pending(state)) < 2:  # a culprit in the first half; the round "alone bad? rest good?" has two tests
        state = advance(record(state, pending(state)[0].id, "bad"))
    partial = record(state, pending(state)[0].id, "good")
    assert advance(partial) == partial and advance(advance(partial)) == partial
    done = run(CHANGES[:4], lambda s: "network_dim" in s)
    assert advance(done) == done


def test_start_errors():
    with pytest.raises(ValueError, match="nothing to bisect"):
        start([])
    with pytest.raises(ValueError, match="repeated: network_dim"):
        start(["network_dim", "lr", "network_dim"])
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        start(["a", "b"], parallel=0)


def test_log_reads_like_git_bisect_log():
    state = run(CHANGES[:6], lambda s: "noise_offset" in s, method=PROG)
    lines = log(state)
    assert lines[0] == "# bisect over 6 changes: " + ", ".join(CHANGES[:6])
    assert lines[2] == "# round 1"
    assert lines[3].startswith("r1-a  ") and "+arch:sdxl, network_dim, network_alpha" in lines[3]
    assert "# culprit group: noise_offset (alone makes the run bad)" in lines
    assert lines[-1] == f"# found: noise_offset after {trainings(state)} trainings in {len(state.rounds)} rounds"
    running = log(start(CHANGES[:6], method=PROG))
    assert running[-1] == "# running: round 1, waiting for r1-a"


def test_simulate_counts_every_variant():
    culprits, n = simulate(CHANGES[:16], lambda s: "lr_scheduler" in s)
    assert culprits == ["lr_scheduler"] and n <= gt.bound(16, 1) + gt.slack(16, 1)
    assert simulate(CHANGES[:16], lambda s: "lr_scheduler" in s, method=PROG) == (["lr_scheduler"], 6)


@pytest.mark.parametrize("method", [PROG, "group-testing"])
def test_unsure_verdicts_are_asked_again_and_an_endless_unsure_stops(method):
    changes = CHANGES[:8]
    state = start(changes, 2, method=method)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "unsure")
        state = advance(state)
    assert state.basis[-1] == "how sure: undecided" and trainings(state) <= 4 * 3
    again = [t for r in state.rounds for t in r.tests if t.retry]
    assert again and all("another seed" in t.purpose for t in again)
    state = start(changes, 2, method=method)
    while state.status == "running":
        for t in pending(state):
            v = "unsure" if len(state.rounds) in (1, 3) else "bad" if "noise_offset" in t.changes else "good"
            state = record(state, t.id, v)
        state = advance(state)
    assert state.culprits == ["noise_offset"]
    assert state.basis[-1] == "how sure: uncertain" and any("unsure" in b for b in state.basis)


def test_verdicts_are_models_with_their_variant_ids():
    from pydantic import ValidationError

    from lora_audit.ablate.bisect import verdicts
    from lora_audit.ablate.verdict import Verdict, as_verdicts

    state = start(["a", "b", "c", "d"], parallel=1)
    first = pending(state)[0]
    state = advance(record(state, first.id, "unsure"))
    again = pending(state)[0]
    assert again.changes == first.changes and again.retry == 1
    state = advance(record(state, again.id, "good"))
    got = verdicts(state)
    assert [(v.test, v.verdict) for v in got] == [(first.id, "unsure"), (again.id, "good")]
    assert all(isinstance(v, Verdict) and v.changes == tuple(first.changes) for v in got)
    with pytest.raises(ValidationError):
        Verdict(changes=("a",), verdict="maybe")
    with pytest.raises(ValueError, match="verdict must be"):
        as_verdicts([(("a",), "maybe")])
    assert as_verdicts([(["a"], "bad")]) == [Verdict(changes=("a",), verdict="bad")]
