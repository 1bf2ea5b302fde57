"""launch called from Python hands the caller's SIGINT/SIGTERM handlers back (Ctrl-C keeps working after it)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest

from lora_audit.launch.executor import Launcher, Options


def _study(root: Path) -> Path:
    root.mkdir()
    (root / "study.toml").write_text('strategy = "ofat"\nvariants = ["v1"]\n')
    d = root / "v1"
    d.mkdir()
    (d / "train.sh").write_text("#!/usr/bin/env bash\nmkdir -p output; echo weights > output/lora.safetensors\n")
    (d / "variant.json").write_text(json.dumps({"id": "v1", "hash": "hash-v1"}))
    return root


@pytest.fixture
def caller_handlers():
    """The handlers a Python program had before it called launch (its own, not Python's defaults)."""
    def mine(*_):
        pass
    old = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    yield mine
    for s, h in old.items():
        signal.signal(s, h)


def test_launch_restores_the_callers_handlers(tmp_path, caller_handlers):
    seen = []
    launcher = Launcher(_study(tmp_path / "study"), Options(check_python=False),
                        echo=lambda _: seen.append(signal.getsignal(signal.SIGINT)))
    result = launcher.run()
    assert json.dumps(result)  # ran to its summary
    assert (tmp_path / "study" / "v1" / "output" / "lora.safetensors").exists()
    # while it ran, Ctrl-C was the launcher's (it stops children cleanly) ...
    assert seen and all(h is not caller_handlers for h in seen)
    # ... and afterwards it is the caller's again
    assert signal.getsignal(signal.SIGINT) is caller_handlers
    assert signal.getsignal(signal.SIGTERM) is caller_handlers


def test_handlers_restored_when_the_launcher_fails(tmp_path, caller_handlers, monkeypatch):
    def boom(*_):
        raise RuntimeError("scheduler broke")
    monkeypatch.setattr(Launcher, "_schedule", boom)
    with pytest.raises(RuntimeError, match="scheduler broke"):
        Launcher(_study(tmp_path / "study"), Options(check_python=False)).run()
    assert signal.getsignal(signal.SIGINT) is caller_handlers
    assert signal.getsignal(signal.SIGTERM) is caller_handlers


def test_launch_in_a_thread_leaves_handlers_alone(tmp_path, caller_handlers):
    """Only the main thread may set handlers: from a worker thread launch runs without touching them."""
    out: dict = {}

    def work():
        try:
            out["result"] = Launcher(_study(tmp_path / "study"), Options(check_python=False)).run()
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert "error" not in out, out.get("error")
    assert "result" in out
    assert signal.getsignal(signal.SIGINT) is caller_handlers


def test_public_launch_study_restores_the_callers_handlers(tmp_path, caller_handlers):
    """The documented API (`lora_audit.launch_study`) as a Python program calls it."""
    import lora_audit

    result = lora_audit.launch_study(_study(tmp_path / "study"), Options(check_python=False))
    assert result  # the summary `launch --json` prints
    assert (tmp_path / "study" / "v1" / "output" / "lora.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is caller_handlers
    assert signal.getsignal(signal.SIGTERM) is caller_handlers
