"""Files the runner and the sweeps write: JSON and summaries, atomically (a temporary file renamed over
the target, never a partial file, no temporary file left behind when the write fails)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

__all__ = ["write_text_atomic", "write_json_atomic", "write_rows", "probe_writable"]


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False))


def write_rows(directory: Path, rows: list[dict]) -> None:
    """summary.jsonl and summary.csv (one row per job and kernel), each written atomically."""
    tmp = directory / f".summary.jsonl.{os.getpid()}.tmp"  # a process of its own: copies of a sweep
    try:
        with open(tmp, "w") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))
        os.replace(tmp, directory / "summary.jsonl")
        fields = list(dict.fromkeys(k for r in rows for k in r))
        tmp = directory / f".summary.csv.{os.getpid()}.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, directory / "summary.csv")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
