"""Files the runner and the sweeps write: JSON and summaries, atomically (a temporary file renamed over
the target, never a partial file, no temporary file left behind when the write fails)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

__all__ = [
    "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "write_csv_atomic", "write_rows",
    "probe_writable", "remove_dead_tmps", "set_aside",
]  # fmt: skip


def probe_writable(directory: Path) -> None:
    """Raise OSError unless a file can be written in ``directory`` (made with its parents for the
    probe, then removed again with every directory the probe made): checking leaves nothing behind."""
    import uuid

    directory = Path(directory)
    made, d = [], directory
    while not d.exists() and d != d.parent:
        made.append(d)
        d = d.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    finally:
        for d in made:  # innermost first; a directory someone else filled meanwhile stays
            try:
                d.rmdir()
            except OSError:
                break


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file and rename it over ``path`` (never a partial file, and no
    temporary file left behind when the write fails, e.g. on a full disk)."""
    write_bytes_atomic(path, text.encode())  # the text as given (CSV's line ends kept)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """:func:`write_text_atomic` for bytes (an image, a tensor file): synced before the rename, so a
    record written after it never points at a file a crash left empty."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_dead_tmps(directory: Path, name: str = "*") -> None:
    """Remove the temporary files of :func:`write_bytes_atomic` writes of ``directory/<name>`` whose
    process is gone (a SIGKILL between the write and the rename; a checkpoint's is ~17 MB). A live
    process's file is its write in progress and stays."""
    for tmp in Path(directory).glob(f".{name}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def set_aside(directory: Path) -> None:
    """Rename a finished run's ``directory`` to ``<directory>.stale`` (replacing one set aside before):
    kept whole for a look, never read as a result again. A rename that fails leaves it in place."""
    import contextlib
    import shutil

    directory = Path(directory)
    aside = directory.with_name(directory.name + ".stale")
    shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):
        directory.rename(aside)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json_atomic(path: Path, data) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False))


def write_csv_atomic(path: Path, rows: list[dict]) -> None:
    """:func:`write_text_atomic` of ``rows`` as CSV, the columns in the order they first appear."""
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, text.getvalue())


def write_rows(directory: Path, rows: list[dict]) -> None:
    """summary.jsonl and summary.csv (one row per job and kernel), each written atomically."""
    write_text_atomic(directory / "summary.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    write_csv_atomic(directory / "summary.csv", rows)
