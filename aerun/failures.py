"""Every failure ends as one `aerun: error:` line; the traceback goes to a log file.

`end(exc)` is the one place a command ends on an exception: it names what was
wrong and what to do in one line on stderr, writes the traceback to the run's
log (the root logger's file, `train.log` for a training run) or, where no run
log is open yet, to a file of its own that the line names, and exits with 2
for bad input (`UserError`) or 1 for anything else. `AERUN_DEBUG=1` also prints
the traceback on the terminal, as Hydra's `HYDRA_FULL_ERROR=1` does.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NoReturn

from aerun.errors import EnvironmentFailure, UserError

EXIT_USER_ERROR = 2
EXIT_FAILED = 1  # the environment failed (a disk, a cluster job, another process), not the user's input
DEBUG_ENV = "AERUN_DEBUG"

# Errors of the machine, not of the path a user chose.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENOMEM)

# What to do about an operating-system error, by errno.
OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there, then run the same command again",
    errno.EDQUOT: "the disk quota is used up: free space there, then run the same command again",
    errno.EROFS: "that file system is read-only: choose a writable folder",
    errno.EACCES: "no permission: choose a folder you can write, or fix its permissions",
    errno.EPERM: "no permission: choose a folder you can write, or fix its permissions",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
    errno.EEXIST: "a file of that name is in the way: choose another path",
    errno.ENOENT: "a folder on that path does not exist or cannot be created there: choose another path",
    errno.EIO: "the storage reported an input/output error: check the disk, then run the same command again",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n), then run the same command again",
}


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def exit_status(exc: BaseException) -> int:
    return EXIT_USER_ERROR if isinstance(exc, UserError) else EXIT_FAILED


def first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def describe(exc: BaseException) -> str:
    """One line: what went wrong and what to do."""
    if isinstance(exc, (UserError, EnvironmentFailure)):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if exc.filename else ""
        advice = OS_ADVICE.get(exc.errno, "check that path and its disk, then run the same command again")
        return f"{exc.strerror or os.strerror(exc.errno)}{where}; {advice}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("out of memory; use a smaller batch_size, fewer jobs at once, or a device with more memory "
                f"({first_line(exc)[:160]})")
    return (f"unexpected {type(exc).__name__}: {first_line(exc)[:200]}; this is a bug in aerun, "
            "please report it with the traceback")


def run_log() -> Path | None:
    """The file the root logger writes to (a run's train.log), if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
            return Path(handler.baseFilename)
    return None


def save_traceback(exc: BaseException) -> Path | None:
    """Append the traceback to the run's log, or to a file of its own; None when neither can be written."""
    text = "".join(traceback.format_exception(exc))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    candidates = [run_log(), Path(tempfile.gettempdir()) / f"aerun-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"]
    for path in filter(None, candidates):
        try:
            with open(path, "a") as f:
                f.write(f"[{stamp}][aerun][ERROR] {describe(exc)}\n{text}")
            return path
        except OSError:
            continue
    return None


def end(exc: BaseException) -> NoReturn:
    """Print one line for `exc` (the traceback to a log file), exit 2 for bad input, 1 otherwise."""
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)
    line = describe(exc)
    if not isinstance(exc, UserError):  # bad input is the whole story; anything else keeps its traceback
        where = save_traceback(exc)
        if where is not None and not debugging():
            line += f" (traceback in {where}; {DEBUG_ENV}=1 shows it here)"
    print(f"aerun: error: {line}", file=sys.stderr)
    sys.exit(exit_status(exc))
