"""Every file aerun writes is whole or absent.

Each write goes to a temporary file in the target's folder, is flushed to the disk, and then renamed
over the target: a rename within one file system replaces the old file at once, so a failed write (a
full disk, a crash, `kill -9`) leaves the previous file as it was, or none, never half of one. The
one helper for checkpoints, evaluations, figures, reports, bench results and job files.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def temporary(path: Path) -> Path:
    """The temporary name beside `path` (hidden, per process, so two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def replacing(path: Path | str, mode: str = "wb", keep: Path | str | None = None) -> Iterator[IO[Any]]:
    """A file to write `path`'s new content into; on success it replaces `path`, on any failure it is removed.

    With `keep`, the file that `path` named until now becomes `keep` first (a hard link, then a rename),
    so at every moment `path` names a whole file: the old one, then the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if keep is not None and path.exists():
            keep = Path(keep)
            kept = temporary(keep)
            kept.unlink(missing_ok=True)
            try:
                os.link(path, kept)
            except OSError:  # a file system without hard links: a copy does the same, slower
                shutil.copyfile(path, kept)
            os.replace(kept, keep)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> Path:
    with replacing(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: Path | str, data: bytes) -> Path:
    with replacing(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: Path | str, value: Any) -> Path:
    """`value` as indented JSON and a final newline."""
    return write_text(path, json.dumps(value, indent=2) + "\n")


def write_png(figure: Any, path: Path | str, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG: a failed write leaves the previous figure, or none."""
    with replacing(path) as f:
        figure.savefig(f, format="png", dpi=dpi)
    return Path(path)
