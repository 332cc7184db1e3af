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


USER_ERRORS = (HfdError, OSError)


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
