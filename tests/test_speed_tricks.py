"""Each measured speed trick is still at work: a test fails if one silently stops.

The tricks and their measured gains are described where they live: early writeback
(io/writeback.py), dropping the replaced output's page cache (io/output.release_cache), the
OpenBLAS setting and the fast exit (cli.main / cli.run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_python

from lstmshape.io import writeback


def test_npy_outputs_start_writeback_as_they_are_written(tmp_path: Path, invoke: Any,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    started: list[tuple[int, int]] = []

    def record(fd: int, offset: int, count: int, flags: int) -> int:
        started.append((offset, count))
        return 0

    monkeypatch.setattr(writeback, "sync_file_range", lambda: record)
    src = tmp_path / "in.npy"
    np.save(src, np.ones((2000, 100, 100), np.float32))  # 80 MB out
    assert invoke("pad", src, "-o", tmp_path / "out.npy", "-q").exit_code == 0
    assert len(started) >= 2 and sum(count for _, count in started) >= 2 * writeback.WRITEBACK_BYTES
    ends = [offset + count for offset, count in started]
    assert [offset for offset, _ in started[1:]] == ends[:-1]  # front to back, no range twice


def test_replacing_an_output_drops_its_page_cache_first(tmp_path: Path, invoke: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmshape.job

    released: list[str] = []
    monkeypatch.setattr(lstmshape.job, "release_cache", released.append)
    src, out = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, np.ones((10, 5), np.float32))
    assert invoke("pad", src, "-o", out, "-q").exit_code == 0
    assert released == [str(out)]


RUN_INSPECT = """
import atexit, os, sys
atexit.register(lambda: print("TEARDOWN RAN", flush=True))
from lstmshape.cli import run
sys.argv = ["lstmshape", "inspect", sys.argv[1], "--json"]
try:
    run()
finally:
    print("NOT REACHED", flush=True)
"""

COUNT_THREADS = """
import os, sys
from lstmshape.cli import main
try:
    main(["inspect", sys.argv[1], "--json"])
except SystemExit:
    pass
print("THREADS", len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def test_the_console_script_exits_without_pythons_teardown(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    done = run_python(RUN_INSPECT, str(tmp_path / "x.npy"))
    assert done.returncode == 0, done.stderr
    assert '"input_shape"' in done.stdout
    assert "TEARDOWN RAN" not in done.stdout and "NOT REACHED" not in done.stdout


def test_the_command_line_starts_no_openblas_threads(tmp_path: Path) -> None:
    """numpy's OpenBLAS starts a busy-waiting thread per extra core at import; the CLI asks for
    none, so a command that starts no thread of its own runs on one."""
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = run_python(COUNT_THREADS, tmp_path / "x.npy", env=env)
    assert done.stdout.split()[-3:] == ["THREADS", "1", "1"], done.stdout + done.stderr
