"""The outputs of a sweep whose jobs ran prompt sets (``glass report``): the shards of one run
(``task.prompt_range`` array jobs, e.g. on SLURM) merged into the outputs one process would have
written, and one gallery of every job's images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from glass.files import write_json_atomic
from glass.outputs import gallery, merge, read_records
from glass.sweep import finished_jobs

__all__ = ["merge_shards", "sweep_gallery"]


def merge_shards(sweep_dir: Path) -> list[Path]:
    """Merge the finished jobs of a sweep that computed parts of one prompt-set run (the same config
    but ``task.prompt_range``, e.g. SLURM array jobs) into ``<sweep_dir>/merged/<run key>/``: the
    outputs a single process would have written (images, images.jsonl, gallery, metrics.json, which
    says how many of the file's prompts the shards hold: a missing shard is visible, not silent).
    A lone shard whose siblings have not finished is merged too, so the report says how many prompts
    are missing. Returns the merged directories; runs computed whole in one job are left as they are."""

    runs: dict[str, list[Path]] = {}
    for job_dir in sorted(finished_jobs(Path(sweep_dir)).values()):
        records = read_records(job_dir)
        if records:
            runs.setdefault(next(iter(records.values()))["key"], []).append(job_dir)
    merged = []
    for key, dirs in runs.items():
        found: dict[int, tuple[Path, dict]] = {}
        for d in dirs:
            for index, rec in read_records(d, key).items():
                found.setdefault(index, (d, rec))
        total = next(iter(found.values()))[1].get("file_prompts")
        if len(dirs) < 2 and len(found) >= (total or 0):
            continue  # the whole file in one job
        first = json.loads((dirs[0] / "metrics.json").read_text())
        labels = [row["sampler"] for row in first["rows"]]
        target = Path(sweep_dir) / "merged" / key
        building = target.with_name(f".{key}.{os.getpid()}.tmp")  # whole, then in place of the old one:
        shutil.rmtree(building, ignore_errors=True)  # a prompt an earlier merge held and this one does not
        building.mkdir(parents=True)  # leaves no geneval/ folder behind for an evaluator to score
        rows = merge(building, [found[i] for i in sorted(found)], labels)
        meta = {"seed": first["seed"], "rows": rows, "prompts": len(found), "file_prompts": total}
        write_json_atomic(building / "metrics.json", {**meta, "shards": [d.name for d in dirs]})
        shutil.rmtree(target, ignore_errors=True)  # the previous merge (derived from the shards alone)
        building.rename(target)
        merged.append(target)
    return merged


def sweep_gallery(sweep_dir: Path) -> Path | None:
    """``<sweep_dir>/gallery.html``: the images of every finished prompt-set job of a sweep side by
    side (one column per job and method, named by the job's label, e.g. reproduce's variant), or None
    when the sweep has no prompt-set job."""

    sweep_dir = Path(sweep_dir)
    try:
        jobs = json.loads((sweep_dir / "sweep.json").read_text())["jobs"]
        labels = {j["name"]: j.get("labels", {}) for j in jobs}
    except (OSError, ValueError, KeyError, TypeError):
        labels = {}
    lines, methods = [], []
    for job_dir in sorted(finished_jobs(sweep_dir).values()):
        if not (job_dir / "images.jsonl").is_file() or (labels and job_dir.name not in labels):
            continue
        name = " ".join(str(v) for v in labels.get(job_dir.name, {}).values()) or job_dir.name
        for line in map(json.loads, (job_dir / "images.jsonl").read_text().splitlines()):
            method = f"{name}: {line['method']}"
            methods += [method] if method not in methods else []
            lines.append({**line, "method": method, "path": f"{job_dir.name}/{line['path']}"})
    if not lines:
        return None
    gallery(sweep_dir, lines, methods, "gallery.html")
    return sweep_dir / "gallery.html"
