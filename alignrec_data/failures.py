"""One line for every failure: the CLI and the pipeline stages report errors the same way.

An :class:`~alignrec_data.errors.AlignrecError` keeps its message, hint and exit code (2 bad
usage, 1 failure); an OSError names the file and the fix; anything else is an internal error
whose traceback ``--debug`` (or ``ALIGNREC_DEBUG=1`` for the stages) shows.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable

from alignrec_data.errors import AlignrecError

DEBUG_ENV = "ALIGNREC_DEBUG"

_OS_FIXES = {
    errno.ENOSPC: "free disk space or choose another --data-dir / --out",
    errno.EACCES: "check the permissions or choose another --data-dir / --out",
    errno.EPERM: "check the permissions or choose another --data-dir / --out",
    errno.EROFS: "the file system is read-only: choose another --data-dir / --out",
    errno.ENOTDIR: "a file stands where a folder is expected: move it or choose another path",
    errno.EISDIR: "a folder stands where a file is expected: move it or choose another path",
    errno.ELOOP: "a symbolic link points to itself: remove or fix it",
    errno.ENAMETOOLONG: "choose a shorter name or path",
}


def os_message(err: OSError) -> str:
    """One line for an OSError: what failed, on which file, and the fix."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    what = err.strerror or str(err) or type(err).__name__
    fix = _OS_FIXES.get(err.errno or -1, "check the path and rerun")
    return f"{what}{': ' + where if where else ''}; {fix}"


def as_alignrec_error(err: Exception) -> AlignrecError:
    """The error a user is shown for ``err``: itself, an OSError's one line, or an internal one."""
    if isinstance(err, AlignrecError):
        return err
    if isinstance(err, OSError):
        return AlignrecError(os_message(err))
    msg = f"internal error: {type(err).__name__}: {err}"
    return AlignrecError(msg, hint="rerun with --debug for the traceback and report it")


def run_stage(main: Callable[[], int | None]) -> int:
    """Run a pipeline stage's ``main`` and turn any failure into one ``Error:`` line.

    Args:
        main: The stage's entry point.

    Returns:
        The process exit code: main's, or the error's (130 on Ctrl-C).
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return main() or 0
    except KeyboardInterrupt:
        print("Interrupted: nothing half-written is left; rerun to continue", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            traceback.print_exc()
        shown = as_alignrec_error(err)
        print(f"Error: {shown}" + (f"\nHint: {shown.hint}" if shown.hint else ""), file=sys.stderr)
        return shown.exit_code
