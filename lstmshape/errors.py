"""The one exception hierarchy of lstmshape.

Library code raises a subclass of :class:`LstmshapeError` with a message that names the file and
the shape or value involved. The CLI turns every one of them into a single ``Error: ...`` line on
stderr and the exit code carried by the class, in one place (``lstmshape.cli``).

A message names an argument with :class:`Param`, so that each audience reads its own spelling:
``str(err)`` (what a Python caller sees) says ``maxlen=None``; :attr:`LstmshapeError.cli_message`
(what the command line prints) says ``--maxlen None``.

Example:
    >>> try:
    ...     raise InputError("data.npy: expected 2-D or 3-D array, found shape (5,)")
    ... except LstmshapeError as err:
    ...     (str(err), err.exit_code)
    ('data.npy: expected 2-D or 3-D array, found shape (5,)', 1)
    >>> err = ArgumentError(Param("padding", "middle"), ": expected 'pre' or 'post'")
    >>> str(err), err.cli_message, isinstance(err, ValueError)
    ("padding='middle': expected 'pre' or 'post'",
     "--padding 'middle': expected 'pre' or 'post'", True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: :attr:`Param.value` when a message names the parameter alone (``pass allow_lossy=True``
#: reads better as a value; ``use a smaller size`` as a name)
NAME_ONLY: Any = object()


@dataclass(frozen=True)
class Param:
    """An argument named in an error message: ``name=value`` for Python callers, ``--flag value``
    on the command line (``flag`` defaults to ``--`` + the name with dashes; ``shown`` is how
    the command line shows the value, default: ``repr`` of a string, ``:g`` of a float)."""

    name: str
    value: Any = NAME_ONLY
    flag: str | None = None
    shown: str | None = None

    def for_python(self) -> str:
        if self.value is NAME_ONLY:
            return self.name
        value = self.value.item() if type(self.value).__module__ == "numpy" else self.value
        return f"{self.name}={value!r}"

    def for_cli(self) -> str:
        flag = self.flag or "--" + self.name.replace("_", "-")
        if self.value is NAME_ONLY or (self.value is True and self.shown is None):
            return flag
        if self.shown is not None:
            return f"{flag} {self.shown}"
        if isinstance(self.value, str):
            return f"{flag} {self.value!r}"
        if isinstance(self.value, float):
            return f"{flag} {self.value:g}"
        return f"{flag} {self.value}"


class LstmshapeError(Exception):
    """Base of every error lstmshape raises on purpose; ``exit_code`` is what the CLI exits with.

    The message is given in parts: strings, and :class:`Param` for each argument it names.
    """

    exit_code = 1

    def __init__(self, *parts: str | Param) -> None:
        super().__init__("".join(p if isinstance(p, str) else p.for_python() for p in parts))
        self.parts = parts

    @property
    def cli_message(self) -> str:
        """The message as the command line says it: arguments named by their flags."""
        parts = getattr(self, "parts", None) or (str(self),)
        return "".join(p if isinstance(p, str) else p.for_cli() for p in parts)


class InputError(LstmshapeError):
    """An input is missing, unreadable, damaged, or holds data the command cannot use."""


class OutputError(LstmshapeError):
    """An output cannot be written (missing folder, read-only, disk full, same file as an input)."""


class CheckFailed(LstmshapeError):
    """A check the user asked for did not pass (``inspect --expect-shape``, ``verify``)."""


class OptionError(LstmshapeError):
    """A combination of options that cannot work for this input (e.g. ``--stateful --shuffle``)."""


class ArgumentError(OptionError, ValueError):
    """An argument no input could make valid: ``padding="middle"``, ``value="pad"``, ``maxlen=0``.

    A ``ValueError`` too, as Keras' ``pad_sequences`` raises for the same arguments, so code
    written for Keras catches it. Exit code 2, a usage error: on the command line click refuses
    these values itself (``--padding middle`` exits 2 before any library code runs), so an
    ArgumentError that reaches the CLI is the same kind of mistake and exits the same way.
    Combinations that depend on the data (a pad value the dtype cannot hold) stay
    :class:`OptionError`, exit 1.
    """

    exit_code = 2


class EngineError(LstmshapeError):
    """The execution engine cannot run the work (a Dask scheduler that cannot be reached, a
    missing ``dask`` extra)."""
