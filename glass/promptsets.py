"""Prompt sets as benchmarks ship them: plain text, JSONL and CSV / TSV.

- ``.txt``: one prompt a line (blank lines skipped, and not counted in the prompts' indices; no
  comment syntax: a line starting with ``#`` is a prompt);
- ``.jsonl``: one JSON object a line with a ``prompt`` field, e.g. GenEval's
  ``evaluation_metadata.jsonl`` (``{"tag": ..., "include": [...], "prompt": ...}``); every other field
  is carried through as the prompt's metadata;
- ``.csv`` / ``.tsv``: a header with a prompt column (``prompt`` or ``prompts``, any case: PartiPrompts'
  ``Prompt``, DrawBench's ``Prompts``); the other columns are metadata. CSV fields may be quoted
  (a malformed quote is an error, not a merged prompt); TSV fields are taken as written, quotes
  included (PartiPrompts' ``"G I G G L E" painted ...``). A row with more or fewer fields than the
  header (an unquoted comma in a prompt) is an error, not a prompt cut short.

Files are UTF-8 (a byte-order mark is dropped); lines end at newlines only.

Each prompt keeps its index in the file, so a slice (``prompt_range="a:b"``) or a shard of a run
names the same prompts as the whole set.

A record's ``image`` field (any case; JSONL: a path or a list of paths, CSV / TSV: one path a row, an
empty cell for none) names that prompt's reference images, relative to the file's folder
(:func:`record_images`); :func:`images_sha256` digests their bytes, so an image edited in place is
another run (glass.config.config_hash).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PromptRecord",
    "load_prompts",
    "read_prompts",
    "parse_range",
    "shard_ranges",
    "record_images",
    "images_sha256",
    "IMAGE_FIELD",
]

FORMATS = (".txt", ".jsonl", ".csv", ".tsv")
IMAGE_FIELD = "image"  # a record's reference images
_DIGESTS: dict[tuple, str] = {}  # images_sha256's, by the files' (path, mtime, size)


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of a set: its index in the file, its text and the file's other fields for it."""

    index: int
    prompt: str
    meta: dict = field(default_factory=dict)


def parse_range(text: str | None, n: int) -> range:
    """``"a:b"`` (either end may be empty, as a Python slice) -> the indices it selects of ``n``."""
    if text is None:
        return range(n)
    parts = str(text).split(":")
    if len(parts) != 2 or not all(re.fullmatch(r"\s*(-?[0-9]+)?\s*", p) for p in parts):  # ASCII digits
        raise ValueError(f"prompt_range must look like a:b (e.g. 0:100, :50, 200:), got {text!r}")
    start, stop = (int(p) if p.strip() else None for p in parts)
    selected = range(n)[slice(start, stop)]
    if len(selected) == 0:
        raise ValueError(f"prompt_range {text!r} selects no prompt of the {n} in the set")
    return selected


def load_prompts(path: str | Path, prompt_range: str | None = None) -> list[PromptRecord]:
    """The prompts of ``path`` (see the module docstring), optionally the slice ``prompt_range``."""
    records, _ = read_prompts(path)
    return [records[i] for i in parse_range(prompt_range, len(records))]


def read_prompts(path: str | Path) -> tuple[list[PromptRecord], str]:
    """(every prompt of ``path``, the sha256 of the bytes they were parsed from): the file is read
    once, so a run's name and records follow the prompts it computes even if the file is edited."""
    import hashlib

    path = Path(path).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"prompts: {str(path)!r} must be one of {', '.join(FORMATS)} (by its ending)")
    if path.is_dir():
        raise ValueError(f"prompts: {str(path)!r} is a directory, not a prompt file")
    if not path.is_file():
        raise ValueError(f"prompts: no such file {str(path)!r}")
    reader = {".txt": _text, ".jsonl": _jsonl, ".csv": _table, ".tsv": _table}[path.suffix.lower()]
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark dropped (Excel writes one)
    except UnicodeDecodeError:
        kinds = ", ".join(FORMATS)
        raise ValueError(f"prompts: {str(path)!r} is not UTF-8 text ({kinds} files are)") from None
    records = reader(path.name, text)
    if not records:
        raise ValueError(f"prompts: {str(path)!r} holds no prompt")
    return records, hashlib.sha256(data).hexdigest()


def record_images(path: str | Path, record: PromptRecord):
    """A record's ``image`` field -> None, a path or a list of paths (relative ones from the folder of
    the prompt file ``path``); anything else is one line naming the prompt."""
    value = next((v for k, v in record.meta.items() if str(k).strip().lower() == IMAGE_FIELD), None)
    if value is None or value == "":  # no field, JSON null, an empty CSV cell
        return None
    many = isinstance(value, list)
    items = value if many else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError(f"prompts: {path} prompt {record.index}: {IMAGE_FIELD} must be a path or a "
                         f"non-empty list of paths, got {value!r}")  # fmt: skip
    folder = Path(path).expanduser().parent
    paths = [str(folder / Path(v.strip()).expanduser()) for v in items]
    return paths if many else paths[0]


def images_sha256(path: str | Path, found=None) -> str | None:
    """The sha256 of every reference image the prompt file ``path`` names, in file order (None: it
    names none; ``found``: its records' :func:`record_images`, when already read); files unchanged since
    the last call (path, time, size) are not read again."""
    import hashlib

    if found is None:
        found = [record_images(path, r) for r in read_prompts(path)[0]]
    paths = [Path(p) for v in found if v for p in ([v] if isinstance(v, str) else v)]
    if not paths:
        return None
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise ValueError(f"prompts: {path}: image: no file at {missing}")
    stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    if stats not in _DIGESTS:
        whole = hashlib.sha256()
        for p in paths:
            whole.update(hashlib.sha256(p.read_bytes()).digest())
        _DIGESTS[stats] = whole.hexdigest()
    return _DIGESTS[stats]


def _lines(text: str) -> list[str]:
    """The file's lines: universal newlines only (``str.splitlines`` would also split at U+2028, \\x85
    and the like, which a prompt or a JSON string may hold)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _text(name: str, text: str) -> list[PromptRecord]:
    lines = [line.strip() for line in _lines(text)]
    return [PromptRecord(i, p) for i, p in enumerate(p for p in lines if p)]


def _jsonl(name: str, text: str) -> list[PromptRecord]:
    records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"prompts: {name} line {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ValueError(f'prompts: {name} line {number} has no "prompt" field with text')
        meta = {k: v for k, v in row.items() if k != "prompt"}
        records.append(PromptRecord(len(records), row["prompt"].strip(), meta))
    return records


def _table(name: str, text: str) -> list[PromptRecord]:
    # TSV has no quoting (PartiPrompts writes '"G I G G L E" painted ...' as is); CSV quotes strictly
    tsv = name.lower().endswith(".tsv")
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ",", "strict": True}
    rows = []  # (the line the record ends on, its fields)
    with io.StringIO(text, newline="") as f:  # the csv module's own line ends, as open(newline="")
        reader = csv.DictReader(f, **options)
        try:
            rows.extend((reader.line_num, row) for row in reader)
        except csv.Error as e:  # lenient parsing would merge lines into one prompt or drop quotes
            where = (
                f"record {len(rows) + 1} (after line {reader.line_num})" if reader.fieldnames else "header"
            )
            hint = "" if tsv else ' (a field that starts with " must end with " and write inner quotes as "")'
            raise ValueError(
                f"prompts: {name} is not valid {'TSV' if tsv else 'CSV'} at {where}: {e}{hint}"
            ) from None
        header = list(reader.fieldnames or [])
    column = next((c for c in header if c and c.strip().lower() in ("prompt", "prompts")), None)
    if column is None:
        raise ValueError(f"prompts: {name} has no prompt column (a header named prompt or prompts), "
                         f"got {header}")  # fmt: skip
    records = []
    for number, row in rows:
        extra, missing = row.get(None, []), sum(v is None for v in row.values())  # DictReader's rest
        if extra or missing:  # an unquoted comma (or tab) in a prompt, or a short row
            got = len(header) + len(extra) - missing
            if not extra:
                hint = "every row needs the header's fields"
            elif tsv:
                hint = "a prompt holding a tab?"
            else:
                hint = 'quote a prompt that holds a comma: "a cat, sitting"'
            fields = "field" if got == 1 else "fields"
            raise ValueError(f"prompts: {name} line {number} has {got} {fields}, the header has "
                             f"{len(header)} ({hint})")  # fmt: skip
        text = (row.get(column) or "").strip()
        if not text:
            raise ValueError(f"prompts: {name} line {number} has an empty {column!r}")
        meta = {k: v for k, v in row.items() if k != column and k is not None}
        records.append(PromptRecord(len(records), text, meta))
    return records


def shard_ranges(n: int, shards: int) -> list[str]:
    """``prompt_range`` values splitting ``n`` prompts into ``shards`` contiguous slices of (nearly)
    equal size, e.g. for one SLURM array job each."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= n:
        raise ValueError(f"shards must be an integer from 1 to the {n} prompts, got {shards!r}")
    bounds = [i * n // shards for i in range(shards + 1)]
    return [f"{a}:{b}" for a, b in zip(bounds, bounds[1:])]
