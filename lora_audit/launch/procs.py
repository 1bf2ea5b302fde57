"""Processes of the launcher's children: each train.sh in its own process group, dying with its launcher, marked
with ``LORA_AUDIT_ATTEMPT`` so that what a dead launcher left running can be found and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from lora_audit.launch.state import Attempt


# -- processes ----------------------------------------------------------------------------------------------------
def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def marker(a: Attempt) -> str:
    return f"{a.variant}#{a.attempt}"


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def kill_orphans(a: Attempt) -> int:
    """Kill what a dead launcher left running of attempt ``a``: processes whose environment carries its marker."""
    if a.pid is None or not Path("/proc").is_dir():
        return 0
    tag = f"LORA_AUDIT_ATTEMPT={marker(a)}".encode()
    killed = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.getpgid(int(p.name)) != a.pid:
                continue
            if tag in (p / "environ").read_bytes().split(b"\0"):
                os.kill(int(p.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed
