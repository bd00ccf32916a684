"""Helpers for the hostile-input, fault, determinism and fuzz tests (issue 5).

Every check runs the CLI in a real subprocess and asserts the contract of a failure: exactly one
line on stderr, starting ``Error: ``, naming the file and what is wrong; the documented exit code;
no traceback; nothing left in the output folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import files_in

#: prctl(2) option and capability numbers from <linux/prctl.h> and <linux/capability.h>.
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def error_lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]


def assert_refused(proc: subprocess.CompletedProcess[bytes], *needles: str, code: int = 1,
                   folder: Path | None = None) -> str:
    """One ``Error:`` line containing every needle (case-insensitive), exit ``code``, no
    traceback, and (when given) an empty output folder. Returns the line."""
    stderr = proc.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    lines = error_lines(proc)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("Error: "), line
    assert proc.returncode == code, (proc.returncode, line)
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    if folder is not None:
        assert files_in(folder) == [], files_in(folder)
    return line


def assert_ok(proc: subprocess.CompletedProcess[bytes]) -> None:
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Error:" not in stderr, stderr


def drop_file_permission_override() -> None:
    """preexec_fn for root: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding set, so
    that after exec the child obeys file modes (chmod 000, a read-only folder) like any user."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def unprivileged_preexec() -> Callable[[], None] | None:
    """What makes a child obey file modes: nothing for a normal user, a capability drop for root."""
    return drop_file_permission_override if os.geteuid() == 0 else None


def run_cli(*args: Any, input: bytes | None = None, timeout: float = 60,
            env: dict[str, str] | None = None,
            preexec_fn: Callable[[], None] | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m lstmshape ARGS`` in a subprocess, like conftest's ``run_lstmshape`` plus a
    ``preexec_fn`` (resource limits, dropped capabilities)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LSTMSHAPE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lstmshape", *map(str, args)], input=input,
                          capture_output=True, timeout=timeout, env=full_env,
                          preexec_fn=preexec_fn, cwd=cwd)
