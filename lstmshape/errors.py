"""The one exception hierarchy of lstmshape.

Library code raises a subclass of :class:`LstmshapeError` with a message that names the file and
the shape or value involved. The CLI turns every one of them into a single ``Error: ...`` line on
stderr and the exit code carried by the class, in one place (``lstmshape.cli.main``).

Example:
    >>> try:
    ...     raise InputError("data.npy: expected 2-D or 3-D array, found shape (5,)")
    ... except LstmshapeError as err:
    ...     (str(err), err.exit_code)
    ('data.npy: expected 2-D or 3-D array, found shape (5,)', 1)
"""

from __future__ import annotations


class LstmshapeError(Exception):
    """Base of every error lstmshape raises on purpose; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(LstmshapeError):
    """An input is missing, unreadable, damaged, or holds data the command cannot use."""


class OutputError(LstmshapeError):
    """An output cannot be written (missing folder, read-only, disk full, same file as an input)."""


class CheckFailed(LstmshapeError):
    """A check the user asked for did not pass (``inspect --expect-shape``, ``verify``)."""


class OptionError(LstmshapeError):
    """A combination of options that cannot work for this input (e.g. ``--stateful --shuffle``)."""
