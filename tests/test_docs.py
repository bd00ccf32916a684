"""The examples in docstrings run and give what they show; every command has help."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from typing import Any

import pytest
from conftest import run_python

import lstmshape
from lstmshape.cli import cli

#: Modules whose examples need TensorFlow or a trained model: shown, not run.
NOT_DOCTESTED = {"lstmshape.tf", "lstmshape.commands.verify", "lstmshape.__main__"}
MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(lstmshape.__path__, "lstmshape.")
                 if name not in NOT_DOCTESTED)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL | doctest.NORMALIZE_WHITESPACE
    failures, _ = doctest.testmod(module, optionflags=flags, verbose=False)
    assert failures == 0


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(invoke: Any, command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert cli.commands[command].help


def test_help_does_not_import_h5py_tensorflow_matplotlib_torch_dask_or_zarr() -> None:
    code = ("import sys; from lstmshape.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('h5py', 'tensorflow', 'keras', 'rich', 'matplotlib',\n"
            "                     'torch', 'dask', 'distributed', 'zarr')\n"
            "         if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    done = run_python(code)
    assert "HEAVY []" in done.stderr, done.stderr


def test_python_dash_m_and_version() -> None:
    done = subprocess.run([sys.executable, "-m", "lstmshape", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and lstmshape.__version__ in done.stdout


def test_the_fast_exit_leaves_a_profilers_report_alone() -> None:
    """The console script skips Python's teardown (os._exit), except under a profiler."""
    done = subprocess.run([sys.executable, "-m", "cProfile", "-m", "lstmshape", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "function calls" in done.stdout, done.stdout[-500:]
