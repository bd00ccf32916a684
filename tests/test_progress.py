"""Progress and summary go to a terminal only: nothing on a pipe, nothing with --quiet."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def run_with_tty_stderr(*args: str) -> tuple[int, str]:
    """Run lstmshape with stderr on a pseudo-terminal; return (exit code, what it drew)."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "lstmshape", *args], stderr=slave,
                               stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((4000, 100, 4), dtype=np.float32))
    return path


def test_terminal_gets_progress_bar_and_summary(source: Path, tmp_path: Path) -> None:
    code, drawn = run_with_tty_stderr("pad", str(source), "--memory-limit", "1MiB",
                                      "-o", str(tmp_path / "o.npy"))
    assert code == 0
    assert "samples" in drawn and "4000" in drawn.replace(",", "")  # the bar's counter
    assert "pad: wrote" in drawn


def test_quiet_terminal_gets_nothing(source: Path, tmp_path: Path) -> None:
    code, drawn = run_with_tty_stderr("pad", str(source), "-q", "--memory-limit", "1MiB",
                                      "-o", str(tmp_path / "o.npy"))
    assert code == 0 and drawn == ""


def test_pipe_gets_nothing(source: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "lstmshape", "pad", str(source),
                           "--memory-limit", "1MiB", "-o", str(tmp_path / "o.npy")],
                          capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stderr == b"" and done.stdout == b""


def test_binary_to_a_terminal_is_refused(source: Path) -> None:
    master, slave = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "lstmshape", "pad", str(source), "-o", "-"],
                          stdout=slave, stderr=subprocess.PIPE, timeout=60)
    os.close(slave)
    os.close(master)
    assert done.returncode == 2 and b"terminal" in done.stderr
