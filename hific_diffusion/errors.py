"""The one user-facing error type, and how every entry point reports it.

The rule (DESIGN.md, "Errors"): every failure a user can cause (bad input such
as a non-image or a corrupt bitstream, a bad argument or config, a missing or
damaged file: bundle, checkpoint, dataset, a bitstream of another model) is
raised as a subclass of :class:`HfdError` whose message is one line saying
what is wrong, naming the file or field. Errors of other libraries that a user
can trigger (PIL on a non-image, orbax on a damaged checkpoint, constriction on
invalid entropy-coded data) are turned into an HfdError where they enter the
package, never caught wholesale further up. Anything else is a bug: it is not
caught, so it keeps its traceback.

Entry points catch :data:`USER_ERRORS` alone and :func:`report` it: one
``error: ...`` line on stderr, exit status 2. Ctrl-C is :func:`interrupted`:
one ``error: interrupted`` line, exit status 130 (128 + SIGINT, what a shell
reports). ``USER_ERRORS`` adds ``OSError``
because a file the user named that cannot be read or written (permission,
disk full, a path that vanished) is a user's problem, its message names the
file, and wrapping every ``open`` and ``mkdir`` in the package would add
noise and no information.
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class HfdError(Exception):
    """Base of every error a user can cause; the message is one line.

    Subclasses keep the builtin base they had (most are ``ValueError``), so
    ``except ValueError`` in callers keeps working.
    """


class UsageError(HfdError):
    """A command-line argument or flag that cannot be used."""


class ModelConfigError(HfdError, ValueError):
    """A config section that cannot build its model: a missing field, a value
    of the wrong type or out of range, sizes that do not fit together.

    Each model constructor (``ELIC``, ``UNet``) raises its own subclass before
    it builds a layer, so code that builds a model from a file's config
    (``models.py``) catches exactly these; any other exception while building
    is a bug and keeps its traceback.
    """


USER_ERRORS = (HfdError, OSError)
MAX_SIZE = 1 << 16  # the largest channel count, block count or side a section may give


class SectionReader:
    """A model constructor's checks of its config section, field by field.

    Each method returns the field's value if it has the right type and range
    and otherwise raises ``error`` with one line naming ``prefix.field``
    (e.g. ``model.N is 0, expected an integer in [1, 65536]``). Integers are
    capped at :data:`MAX_SIZE`, so a forged size is an error, not an attempt
    to allocate it.
    """

    def __init__(self, section, prefix: str, error: type[ModelConfigError]):
        self.section, self.prefix, self.error = section, prefix, error

    def fail(self, name: str, value, want: str):
        text = "null" if value is None else repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        raise self.error(f"{self.prefix}.{name} is {text}, expected {want}")

    def get(self, name: str):
        try:
            return self.section[name]
        except (KeyError, TypeError):  # a ConfigDict without it; no section at all
            raise self.error(f"{self.prefix}.{name} is missing") from None

    def integer(self, name: str, minimum: int = 1) -> int:
        v = self.get(name)
        if not self._is_integer(v, minimum):
            self.fail(name, v, f"an integer in [{minimum}, {MAX_SIZE}]")
        return int(v)

    def integers(self, name: str, minimum: int = 1, nonempty: bool = True) -> tuple[int, ...]:
        v = self.get(name)
        if (
            not isinstance(v, tuple | list)
            or (nonempty and not v)
            or not all(self._is_integer(x, minimum) for x in v)
        ):
            empty = " non-empty" if nonempty else ""
            self.fail(name, v, f"a{empty} list of integers in [{minimum}, {MAX_SIZE}]")
        return tuple(int(x) for x in v)

    @staticmethod
    def _is_integer(v, minimum: int) -> bool:
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        return ok and minimum <= v <= MAX_SIZE

    def number(self, name: str, minimum=None, above=None, below=None) -> float:
        v = self.get(name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            self.fail(name, v, "a finite number")
        for ok, want in (
            (minimum is None or v >= minimum, f">= {minimum}"),
            (above is None or v > above, f"> {above}"),
            (below is None or v < below, f"< {below}"),
        ):
            if not ok:
                self.fail(name, v, f"a number {want}")
        return float(v)

    def choice(self, name: str, options) -> str:
        v = self.get(name)
        if v not in tuple(options):
            self.fail(name, v, f"one of {', '.join(map(str, options))}")
        return v

    def boolean(self, name: str) -> bool:
        v = self.get(name)
        if not isinstance(v, bool):
            self.fail(name, v, "true or false")
        return v


def one_line(e: BaseException) -> str:
    """The message of a user error on one line (an OSError names its file)."""
    if isinstance(e, OSError) and not isinstance(e, HfdError) and e.filename:
        msg = f"{e.strerror or e}: {e.filename}"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def report(e: BaseException, prefix: str = "") -> int:
    """Prints ``error: PREFIX MESSAGE`` on stderr; returns the exit status (2)."""
    print(f"error: {prefix}{one_line(e)}", file=sys.stderr)
    return EXIT_USER_ERROR


def interrupted(hint: str = "") -> int:
    """Prints ``error: interrupted[; HINT]`` on stderr; returns the exit status (130)."""
    print(f"error: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
    return EXIT_INTERRUPTED


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one ``error:`` line and exit status 2
    like every other user error (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")
