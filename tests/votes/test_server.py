"""The blind voting page's server: blinding, what a vote stores, undo, resume after a restart, concurrent votes,
malformed requests and path traversal, and the ``vote`` command's refusals and --judge."""

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from lora_audit.commands.vote import vote as vote_cmd
from lora_audit.errors import EvidenceError
from lora_audit.votes.queue import shown_order
from lora_audit.votes.server import MAX_NOTES, check_host, create_app
from lora_audit.votes.store import VoteStore

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

# Distinctive names, so "no model name in the page" cannot pass or fail by accident.
MODELS = ["basemodel_qx", "lora_zeta_v1", "lora_omega_v2"]
LOCAL = "http://127.0.0.1:8765"  # the Host the page is served under (any other is refused: DNS rebinding)
LEAKS = MODELS + [".safetensors", "images/", "/loras/", "seed1.png"]


@pytest.fixture
def folder(tmp_path):
    return make_comparison(tmp_path / "cmp", models=MODELS, prompts=["a knight", "a punk", "a cat"], seeds=[1, 2])


def client(folder, mode="best-of", voter="alice"):
    return TestClient(create_app(folder, mode, voter), raise_server_exceptions=False, base_url=LOCAL)


def cast(c, item, choice, notes=""):
    return c.post("/api/vote", json={"token": item["token"], "order": item["order"], "choice": choice,
                                     "notes": notes})


def assert_blind(text):
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} shown before the vote"


def test_page_images_and_state_name_no_model_until_the_vote(folder):
    c = client(folder)
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script" in page.text and "http://" not in page.text and "https://" not in page.text  # no CDN
    assert_blind(page.text)
    state = c.get("/api/state")
    assert_blind(state.text)
    item = state.json()["item"]
    for url in item["images"]:
        img = c.get(url)
        assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
        assert_blind(json.dumps(dict(img.headers)))
    r = cast(c, item, 1).json()
    assert sorted(s["model"] for s in r["reveal"]) == sorted(MODELS)  # named only now
    assert_blind(json.dumps(r["item"]))  # ... and the next item is blind again


def test_a_vote_stores_what_was_shown_where_and_the_slot_chosen(folder):
    c = client(folder, voter="alice")
    item = c.get("/api/state").json()["item"]
    task = c.app.state.queue.by_token(item["token"])
    order = shown_order(task, "alice")
    # each slot serves the image of the model the server says is there
    for slot, model in enumerate(order, 1):
        assert c.get(item["images"][slot - 1]).content == (folder / task.item.shot(model).image).read_bytes()
    r = cast(c, item, 2, notes="  hands are better  ").json()
    assert r["vote"]["choice"] == order[1] and r["vote"]["slot"] == 2
    assert [(s["slot"], s["model"]) for s in r["reveal"]] == list(enumerate(order, 1))
    assert [s["base"] for s in r["reveal"]] == [m == MODELS[0] for m in order]
    [v] = VoteStore(folder).votes()
    assert (v.comparison_id, v.prompt, v.seed, v.mode) == ("cmp-001-1", "a knight", 1, "best-of")
    assert (v.shown, v.choice, v.notes, v.voter, v.kind) == (order, order[1], "hands are better", "alice", "human")
    assert v.created_at.endswith("Z")


def test_the_order_is_shuffled_per_item_and_voter_and_stable_across_reloads(folder):
    a1, a2, b = client(folder, voter="alice"), client(folder, voter="alice"), client(folder, voter="bob")
    tasks = a1.app.state.queue.tasks
    alice = [shown_order(t, "alice") for t in tasks]
    assert alice == [shown_order(t, "alice") for t in a2.app.state.queue.tasks]  # a reload shows the same
    assert any(o != tuple(MODELS) for o in alice)
    assert len(set(alice)) > 1  # not one fixed permutation either
    assert alice != [shown_order(t, "bob") for t in b.app.state.queue.tasks]
    # the same slot of the same item serves the same image after a reload (new server, new tokens)
    i1, i2 = a1.get("/api/state").json()["item"], a2.get("/api/state").json()["item"]
    assert i1["token"] != i2["token"]
    assert [a1.get(u).content for u in i1["images"]] == [a2.get(u).content for u in i2["images"]]


def test_tie_both_bad_progress_and_the_end(folder):
    c = client(folder)
    state = c.get("/api/state").json()
    assert (state["done"], state["total"], state["mode"]) == (0, 6, "best-of")
    choices = ["tie", "both_bad", 1, 2, 3, "tie"]
    for n, choice in enumerate(choices, 1):
        r = cast(c, state["item"], choice)
        assert r.status_code == 200, r.text
        state = r.json()
        assert (state["done"], state["total"]) == (n, 6)
        assert state["vote"]["slot"] == (choice if isinstance(choice, int) else None)
    assert state["item"] is None and c.get("/api/state").json()["item"] is None
    assert [v.choice for v in VoteStore(folder).votes()][:2] == ["tie", "both_bad"]


def test_undo_marks_the_last_vote_and_goes_back_to_its_item(folder):
    c = client(folder)
    first = c.get("/api/state").json()["item"]
    second = cast(c, first, 1).json()["item"]
    cast(c, second, "tie")
    r = c.post("/api/undo", json={}).json()
    assert r["undone"] == {"prompt": "a knight", "seed": 2}
    assert r["done"] == 1 and r["item"]["prompt"] == second["prompt"] and r["item"]["seed"] == second["seed"]
    assert r["item"]["order"] == second["order"]  # shown as before
    assert_blind(json.dumps(r))
    again = cast(c, r["item"], 3)
    assert again.status_code == 200 and again.json()["done"] == 2
    votes = VoteStore(folder).votes(include_undone=True)
    assert [(v.choice == "tie", v.undone_at is not None) for v in votes] == [(False, False), (True, True),
                                                                             (False, False)]
    assert len(VoteStore(folder).votes()) == 2
    for _ in range(2):
        c.post("/api/undo")
    assert c.post("/api/undo").json()["undone"] is None


def test_undo_does_not_reach_into_the_other_mode(folder):
    pw = client(folder, mode="pairwise")
    cast(pw, pw.get("/api/state").json()["item"], 1)
    r = client(folder, mode="best-of").post("/api/undo")
    assert r.status_code == 409 and "pairwise" in r.json()["error"]
    assert VoteStore(folder).votes()[0].undone_at is None


def test_pairwise_shows_two_at_a_time_base_pairs_first(folder):
    c = client(folder, mode="pairwise")
    state = c.get("/api/state").json()
    assert state["total"] == 6 * 3 and state["mode"] == "pairwise"
    item = state["item"]
    assert item["slots"] == 2 and len(item["images"]) == 2
    assert cast(c, item, 3).status_code == 422
    r = cast(c, item, 2).json()
    assert {s["model"] for s in r["reveal"]} == {MODELS[0], MODELS[1]}
    assert r["item"]["slots"] == 2
    assert {s["model"] for s in cast(c, r["item"], 1).json()["reveal"]} == {MODELS[0], MODELS[2]}
    [v1, v2] = VoteStore(folder).votes()
    assert v1.mode == "pairwise" and len(v1.shown) == 2 and v1.choice == v1.shown[1]


def test_a_restarted_server_keeps_the_votes_and_resumes_at_the_next_item(folder):
    c = client(folder)
    item = c.get("/api/state").json()["item"]
    item = cast(c, item, 1).json()["item"]
    nxt = cast(c, item, 2).json()["item"]
    del c
    again = client(folder).get("/api/state").json()  # a new app on the same folder
    assert again["done"] == 2 and (again["item"]["prompt"], again["item"]["seed"]) == (nxt["prompt"], nxt["seed"])
    assert client(folder, voter="bob").get("/api/state").json()["done"] == 0
    assert len(VoteStore(folder).votes()) == 2


def test_concurrent_votes_from_two_servers_are_all_kept(folder):
    apps = [create_app(folder, "pairwise", voter) for voter in ("alice", "bob")]
    jobs = [(app, t) for app in apps for t in app.state.queue.tasks]

    def post(job):
        app, task = job
        q = app.state.queue
        with TestClient(app, base_url=LOCAL) as c:
            return c.post("/api/vote", json={"token": q.token(task), "order": q.order_signature(task),
                                             "choice": 1, "notes": f"{q.voter} {task.item.comparison_id}"})

    with ThreadPoolExecutor(16) as pool:
        codes = [r.status_code for r in pool.map(post, jobs)]
    assert codes == [200] * 36
    votes = VoteStore(folder).votes()
    assert len(votes) == 36 and len({(v.voter, v.key) for v in votes}) == 36
    for app in apps:
        assert app.state.queue.progress()[:2] == (18, 18)


def test_the_same_item_voted_twice_at_once_is_kept_once(folder):
    app = create_app(folder, "best-of", "alice")
    q = app.state.queue
    task = q.tasks[0]
    body = {"token": q.token(task), "order": q.order_signature(task), "choice": "tie"}
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: TestClient(app, base_url=LOCAL).post("/api/vote", json=body).status_code,
                                range(8)))
    assert codes == [200] + [409] * 7
    assert len(VoteStore(folder).votes()) == 1


def _bad_requests(item):
    tok, order = item["token"], item["order"]
    ok = {"token": tok, "order": order, "choice": 1}
    js = {"content-type": "application/json"}
    vote = [
        b"{", b"", b"[]", b"null", b'"tie"', b"1", b"\xff\xfe{}", b"[" * 50_000,
        json.dumps({"order": order, "choice": 1}).encode(),
        json.dumps({"token": tok, "choice": 1}).encode(),
        json.dumps({"token": tok, "order": order}).encode(),
        json.dumps({**ok, "token": 5}).encode(),
        json.dumps({**ok, "token": None}).encode(),
        json.dumps({**ok, "token": "0" * 24}).encode(),
        json.dumps({**ok, "token": "../comparison.json"}).encode(),
        json.dumps({**ok, "order": "0" * 24}).encode(),
        json.dumps({**ok, "order": ["x"]}).encode(),
        *(json.dumps({**ok, "choice": c}).encode()
          for c in (0, 4, -1, 10**30, True, 1.5, "1", "lora_zeta_v1", "TIE", None, [1], {"slot": 1})),
        json.dumps({**ok, "notes": 5}).encode(),
        json.dumps({**ok, "notes": "x" * (MAX_NOTES + 1)}).encode(),
        json.dumps({**ok, "notes": "x" * 100_000}).encode(),
    ]
    yield from (("POST", "/api/vote", body, js) for body in vote)
    yield "POST", "/api/vote", json.dumps(ok).encode(), {"content-type": "text/plain"}
    yield "POST", "/api/vote", json.dumps(ok).encode(), {}
    yield "GET", "/api/vote", None, {}
    yield "GET", "/api/undo", None, {}
    yield "PUT", "/api/state", b"{}", js
    yield "DELETE", "/", None, {}
    for path in ["/nope", "/api", "/api/state/x", "/comparison.json", "/votes.sqlite", "/images/p01/x/seed1.png",
                 f"/img/{tok}", f"/img/{tok}/0", f"/img/{tok}/4", f"/img/{tok}/99999999999999999999",
                 f"/img/{tok}/-1", f"/img/{tok}/x", f"/img/{tok}/1/x", "/img/unknown/1",
                 "/img/../comparison.json", "/img/..%2F..%2Fcomparison.json/1", f"/img/{tok}/..%2F1",
                 "/img/%2e%2e/1", "/templates/vote.html.j2"]:
        yield "GET", path, None, {}


def test_malformed_requests_get_a_4xx_json_error_never_a_500(folder):
    c = client(folder)
    item = c.get("/api/state").json()["item"]
    seen = 0
    for method, path, body, headers in _bad_requests(item):
        r = c.request(method, path, content=body, headers=headers)
        assert 400 <= r.status_code < 500, (method, path, body and body[:80], r.status_code, r.text)
        assert "Traceback" not in r.text and "File \"" not in r.text
        assert "error" in r.json(), r.text
        seen += 1
    assert seen > 50
    assert VoteStore(folder).votes() == []  # none of them stored anything
    assert cast(c, item, 1).status_code == 200  # and the server still works


def test_image_paths_in_the_folder_cannot_escape_it(folder, tmp_path):
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    data = json.loads((folder / "comparison.json").read_text())
    shots = data["comparisons"][0]["models"]
    shots[1]["image"] = "../secret.png"
    shots[2]["image"] = str(tmp_path / "secret.png")  # absolute
    (folder / "comparison.json").write_text(json.dumps(data))
    c = client(folder)
    item = c.get("/api/state").json()["item"]
    task = c.app.state.queue.by_token(item["token"])
    for slot, model in enumerate(shown_order(task, "alice"), 1):
        r = c.get(item["images"][slot - 1])
        if model == MODELS[0]:
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        else:
            assert r.status_code == 404 and b"secret" not in r.content


def test_check_host_allows_loopback_and_warns_or_refuses_the_rest():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.9"):
        assert check_host(host, allow_remote=False) is None
    for host in ("0.0.0.0", "192.168.1.7", "::", "example.org"):
        with pytest.raises(EvidenceError, match="--allow-remote"):
            check_host(host, allow_remote=False)
        assert "warning" in check_host(host, allow_remote=True)


def test_vote_command_refuses_a_remote_host_without_the_flag(folder):
    r = CliRunner().invoke(vote_cmd, [str(folder), "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --host 0.0.0.0 is not a loopback address") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output


def test_vote_command_one_line_errors_for_a_bad_folder_or_a_busy_port(folder, tmp_path):
    r = CliRunner().invoke(vote_cmd, [str(tmp_path / "missing")])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        r = CliRunner().invoke(vote_cmd, [str(folder), "--port", str(busy.getsockname()[1])])
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot listen on 127.0.0.1:")


def test_vote_judge_casts_machine_votes_without_a_server(tmp_path):
    folder = make_comparison(tmp_path / "cmp", models=MODELS,
                             metrics={MODELS[0]: {"grid_fit": 0.2}, MODELS[1]: {"grid_fit": 0.9},
                                      MODELS[2]: {"grid_fit": 0.5}})
    r = CliRunner().invoke(vote_cmd, [str(folder), "--judge", "grid_fit", "--json"])
    assert r.exit_code == 0, r.output
    votes = json.loads(r.stdout)
    assert len(votes) == 4 and {(v["kind"], v["choice"], v["judge"]) for v in votes} == {
        ("machine", MODELS[1], "grid_fit:max")}
    r = CliRunner().invoke(vote_cmd, [str(folder), "--judge", "grid_fit", "--mode", "pairwise"])
    assert r.exit_code == 0 and r.stdout.startswith("cast 12 machine vote(s) (pairwise)")
    r = CliRunner().invoke(vote_cmd, [str(folder), "--judge", "grid_fit"])
    assert r.exit_code == 0 and "no machine vote cast" in r.stdout
    assert len(VoteStore(folder).votes(kind="machine")) == 16 and VoteStore(folder).votes(kind="human") == []
    r = CliRunner().invoke(vote_cmd, [str(folder), "--judge", "nonsense"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "grid_fit" in r.stderr
