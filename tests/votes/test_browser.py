"""End to end: `lora-audit vote` served by a real uvicorn, driven with the keyboard in a real headless Chromium
(Debian's /usr/bin/chromium through Playwright; no browser download, no network). Skipped when either is missing,
unless LORA_AUDIT_REQUIRE_BROWSER=1 (CI), where that is a failure."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lora_audit.votes.data import load_folder
from lora_audit.votes.queue import build_tasks, shown_order
from lora_audit.votes.store import VoteStore

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODELS = ["basemodel_qx", "lora_zeta_v1", "lora_omega_v2"]
LEAKS = MODELS + [".safetensors", "images/", "/loras/"]


def _need_browser():
    why = None
    if importlib.util.find_spec("playwright") is None:
        why = "playwright is not installed (pip install playwright; no `playwright install` needed)"
    elif not os.access(CHROMIUM, os.X_OK):
        why = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if why:
        if os.environ.get("LORA_AUDIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LORA_AUDIT_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@pytest.fixture
def served(tmp_path):
    """`vote FOLDER --port 0 --voter alice --json` in a subprocess; yields (folder, url)."""
    _need_browser()
    folder = make_comparison(tmp_path / "cmp", models=MODELS, prompts=["a knight", "a punk"], seeds=[1, 2])
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lora_audit.commands.vote import vote; vote()", str(folder), "--port", "0",
         "--voter", "alice", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, proc.kill)  # a server that never says where it listens must not hang the test
    watchdog.start()
    line = proc.stdout.readline()
    watchdog.cancel()
    if not line:
        proc.kill()
        pytest.fail(f"the vote server did not start: {proc.stderr.read()}")
    info = json.loads(line)
    assert info["url"].startswith("http://127.0.0.1:") and (info["done"], info["total"]) == (0, 4)
    try:
        yield folder, info["url"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_keyboard_voting_in_a_headless_browser(served):
    from playwright.sync_api import expect, sync_playwright

    folder, url = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            api_bodies: list[str] = []
            page.on("response", lambda r: api_bodies.append(r.text()) if "/api/" in r.url else None)
            page.goto(url)
            shots, progress, body = page.locator("figure.shot"), page.locator("#progress"), page.locator("body")
            expect(shots).to_have_count(3)
            expect(progress).to_have_text("0 / 4")
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            html = page.content()
            for leak in LEAKS:  # blind: the page, and everything the page fetched, names no model
                assert leak not in html and not any(leak in b for b in api_bodies), leak
            first_where = page.locator("#where").inner_text()
            assert "a knight" in first_where and "seed 1" in first_where

            # n focuses the notes; digits and letters typed there do not vote; Enter leaves the field
            page.keyboard.press("n")
            page.keyboard.type("2 hands t b u 1")
            expect(page.locator("#notes")).to_have_value("2 hands t b u 1")
            page.keyboard.press("Enter")
            expect(progress).to_have_text("0 / 4")
            expect(body).not_to_have_class(re.compile("revealed"))

            page.keyboard.press("2")
            expect(body).to_have_class(re.compile("revealed"))
            names = [page.locator(f'figure.shot[data-slot="{k}"] .name').inner_text() for k in (1, 2, 3)]
            assert sorted(n.split()[0] for n in names) == sorted(MODELS)  # revealed after the vote
            slot2 = names[1].split()[0]
            expect(page.locator('figure.shot[data-slot="2"]')).to_have_class(re.compile("chosen"))
            expect(page.locator("#message")).to_contain_text(f"You chose {slot2}")

            # it moves on by itself, blind again
            expect(progress).to_have_text("1 / 4")
            expect(body).not_to_have_class(re.compile("revealed"))
            second_where = page.locator("#where").inner_text()
            assert second_where != first_where
            for leak in LEAKS:
                assert leak not in page.content(), leak

            page.keyboard.press("t")
            expect(body).to_have_class(re.compile("revealed"))
            expect(page.locator("#message")).to_have_text("Tie.")
            page.keyboard.press("Enter")  # skips the rest of the reveal
            expect(progress).to_have_text("2 / 4")
            expect(body).not_to_have_class(re.compile("revealed"))

            page.keyboard.press("u")  # back to the tied item
            expect(progress).to_have_text("1 / 4")
            expect(page.locator("#where")).to_have_text(second_where)
            expect(page.locator("#message")).to_contain_text("Undone")

            page.keyboard.press("1")
            expect(body).to_have_class(re.compile("revealed"))
            slot1 = page.locator('figure.shot[data-slot="1"] .name').inner_text().split()[0]
            expect(progress).to_have_text("2 / 4")
        finally:
            browser.close()

    cf = load_folder(folder)
    first, second = build_tasks(cf, "best-of")[:2]
    votes = VoteStore(folder).votes(include_undone=True)
    assert [(v.comparison_id, v.choice, v.undone_at is None) for v in votes] == [
        (first.item.comparison_id, slot2, True), (second.item.comparison_id, "tie", False),
        (second.item.comparison_id, slot1, True)]
    assert votes[0].shown == shown_order(first, "alice") and votes[0].shown[1] == slot2
    assert votes[2].shown == shown_order(second, "alice") and votes[2].shown[0] == slot1
    assert votes[0].notes == "2 hands t b u 1" and votes[1].notes == votes[2].notes == ""
    assert {(v.voter, v.kind, v.mode) for v in votes} == {("alice", "human", "best-of")}
