"""Per-image outputs of a run on a prompt set (``task.prompts=FILE``), for external evaluators.

Inside the run directory::

    prompts/<prompt index:05d>.json                       one prompt's record, written last (see below;
                                                          with FK steering's per-step trace)
    geneval/<method>/<prompt index:05d>/metadata.jsonl    the prompt's line of the prompt file
    geneval/<method>/<prompt index:05d>/samples/<k:05d>.png
    latents/<method>/<prompt index:05d>.safetensors       task.save_latents=true: row k is output k
    images.jsonl                                          one line per image (see write_prompt)
    index.html                                            gallery: prompts x methods, offline
    geneval/methods.json                                  folder name -> the method's label

``geneval/<method>`` is the layout GenEval's ``generation/diffusers_generate.py`` writes (one folder
per prompt index with its metadata line and ``samples/*.png``), so its ``evaluate_images.py`` reads it
as is: ``python evaluation/evaluate_images.py RUN/geneval/<method> --outfile results.jsonl``.

A prompt's record (its images.jsonl lines and each method's row for that prompt) is written after its
images, atomically, so a prompt with a record is complete: a resumed run skips it, and
:func:`merge` builds images.jsonl, the gallery and the per-method rows from the records alone (of one
directory, or of the shards of a run computed in several processes or array jobs).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import torch

from glass.files import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = ["write_prompt", "read_records", "merge", "gallery", "method_dir"]


def method_dir(label: str) -> str:
    """A kernel label as a folder name: ``glass(rho=0.4) M=8`` -> ``glass_rho-0.4_M8``."""
    name = re.sub(r"[^A-Za-z0-9.\-]+", "_", label.replace(" M=", "_M").replace("=", "-"))
    return re.sub(r"_+", "_", name).strip("_")


def _record_path(run_dir: Path, index: int) -> Path:
    return run_dir / "prompts" / f"{index:05d}.json"


def write_prompt(run_dir: Path, model, record, result, *, info: dict, held_out=None, save_latents=False,
                 batch: int = 4) -> dict:  # fmt: skip
    """Decode one prompt's outputs of every method (``batch`` images at a time, each once: for its PNG
    and for the held-out rewards), write them in the layout of the module docstring, then the
    prompt's record; returns the record. ``info``: seed and prompt_seed (copied to every line), the
    run's key and the process's rank."""
    from glass.rewards.base import images_of

    rewards, traces = result.extra.get("output_rewards", {}), result.extra.get("trace", {})
    lines, methods = [], {}
    for row in result.rows:
        label = row["sampler"]
        x = result.samples[label]
        folder = run_dir / "geneval" / method_dir(label) / f"{record.index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        meta = json.dumps({**record.meta, "prompt": record.prompt})
        write_text_atomic(folder / "metadata.jsonl", meta + "\n")
        latents = None
        if save_latents:
            latents = run_dir / "latents" / method_dir(label) / f"{record.index:05d}.safetensors"
            _save_latents(latents, x)
        ess = _ess_at_resampling(traces.get(label) or {}, len(x))
        scores, features = {}, []
        for start in range(0, len(x), batch):
            with torch.no_grad():
                images = images_of(model, x[start : start + batch].to(model.device))  # [-1, 1]
            _save_pngs(images, folder / "samples", start)
            if held_out is not None:
                part, feats = held_out.score(images, [record.prompt] * len(images))
                for name, v in part.items():
                    scores.setdefault(name, []).extend(float(s) for s in v)
                if feats is not None:
                    features.append(feats)
        for k in range(len(x)):
            line = {"method": label, "prompt_index": record.index, "prompt": record.prompt, "repeat": k,
                    "group": record.index * len(x) + k,
                    "meta": record.meta, "seed": info["seed"], "prompt_seed": info["prompt_seed"],
                    "nfe": row.get("nfe"), "path": f"geneval/{method_dir(label)}/{record.index:05d}/samples/"
                    f"{k:05d}.png"}  # fmt: skip
            if label in rewards:
                line["reward"] = float(rewards[label][k])
            if scores:
                line["rewards"] = {name: v[k] for name, v in scores.items()}
            if "particle" in (traces.get(label) or {}):  # FK steering / best-of-N: the kept particle
                line["particle"] = int(traces[label]["particle"][k])
            if ess is not None:
                line["ess_at_resampling"] = ess[k]
            if latents is not None:
                line["latents"], line["latent_row"] = str(latents.relative_to(run_dir)), k
            lines.append(line)
        methods[label] = {"row": row, "diversity": _diversity(features), "trace": traces.get(label) or None}
    out = {"key": info["key"], "prompt_index": record.index, "rank": info.get("rank", 0),
           "file_prompts": info.get("file_prompts"), "methods": methods, "images": lines}  # fmt: skip
    path = _record_path(run_dir, record.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, out)
    return out


def _save_pngs(images, folder: Path, start: int) -> None:
    """Each image as a PNG, written whole and synced before the prompt's record names it."""
    from torchvision.utils import save_image

    for k, image in enumerate(images):
        png = io.BytesIO()
        save_image(((image.float() + 1) / 2).clamp(0, 1).cpu(), png, format="png")
        write_bytes_atomic(folder / f"{start + k:05d}.png", png.getvalue())


def _diversity(features: list) -> float | None:
    if not features:
        return None
    from glass.metrics.rewards import diversity

    f = torch.cat(features)
    return float(diversity(f[None])[0]) if len(f) > 1 else None


def _save_latents(path: Path, x) -> None:
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, save({"latents": x.detach().cpu().contiguous()}))


def _ess_at_resampling(trace: dict, n: int) -> list[list[float]] | None:
    """FK steering: per output (group), its effective sample size at each step where it resampled."""
    if "ess" not in trace or "resampled" not in trace:
        return None
    steps = list(zip(trace["ess"], trace["resampled"]))
    return [[round(float(e[j]), 4) for e, did in steps if did[j]] for j in range(n)]


def read_records(run_dir: Path, key: str | None = None) -> dict[int, dict]:
    """Prompt index -> record of every complete prompt in ``run_dir`` (a readable record of the run
    ``key``, if given, whose images all exist); anything else is computed again."""
    found = {}
    for path in sorted((Path(run_dir) / "prompts").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            ok = isinstance(rec, dict) and (key is None or rec.get("key") == key)
            ok = ok and all((run_dir / line["path"]).is_file() for line in rec["images"])
            ok = ok and all((run_dir / p).parent.with_name("metadata.jsonl").is_file() for p in
                            {line["path"] for line in rec["images"]})  # GenEval reads it beside samples/
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if ok:
            found[int(rec["prompt_index"])] = rec
    return found


def merge(target: Path, records: list[tuple[Path, dict]], labels: list[str]) -> list[dict]:
    """Write images.jsonl, index.html, geneval/methods.json and samples.png into ``target`` from the
    prompts' records (each with the directory holding its files, copied into ``target`` when it is
    another one), in the given order; returns one row per method (see :func:`aggregate`)."""
    for source, rec in records:
        if Path(source).resolve() != Path(target).resolve():
            _copy_prompt(Path(source), Path(target), rec)
    lines = [line for label in labels for _, rec in records for line in rec["images"]
             if line["method"] == label]  # fmt: skip
    write_text_atomic(target / "images.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    gallery(target, lines, labels)
    write_json_atomic(target / "geneval" / "methods.json", {method_dir(label): label for label in labels})
    _grid(target, lines, labels)
    return aggregate([rec for _, rec in records], labels)


def _copy_prompt(source: Path, target: Path, rec: dict) -> None:
    """A prompt's files (images, metadata, latents, record) from a shard's directory into ``target``."""
    index = rec["prompt_index"]
    files = [line["path"] for line in rec["images"]]
    files += [line["latents"] for line in rec["images"] if "latents" in line]
    files += [str(Path(p).parent.parent / "metadata.jsonl") for p in files if p.startswith("geneval/")]
    files.append(str(_record_path(Path(""), index)))
    for rel in dict.fromkeys(files):
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        try:
            os.link(source / rel, dst)  # same file system: no copy
        except OSError:
            shutil.copy2(source / rel, dst)


def aggregate(records: list[dict], labels: list[str]) -> list[dict]:
    """One row per method over the prompts: the steered reward and every held-out reward as mean,
    standard error and count over the images, with ``<name>_prompt_se``, the standard error over the
    prompts' means (the honest one when per_prompt > 1, see :func:`_prompt_se`); diversity as mean and
    standard error over the prompts; the task's other per-prompt numbers (NFE, ESS, unique fraction,
    ...) as their mean over the prompts (exact when they are the same for every prompt, as NFE is);
    every method after the first, each reward's paired difference from the first (:func:`_vs_first`)."""
    from glass.metrics.rewards import mean_se

    rows = []
    by_label = {label: [line for rec in records for line in rec["images"] if line["method"] == label]
                for label in labels}  # fmt: skip
    for label in labels:
        per_prompt = [rec["methods"][label] for rec in records]
        images = by_label[label]
        row, task = {"sampler": label}, {}
        for k in per_prompt[0]["row"]:
            values = [p["row"].get(k) for p in per_prompt]
            numbers = all(isinstance(x, (int, float)) for x in values)
            if k in ("sampler", "reward", "reward_se") or not numbers:
                continue
            task[k] = values[0] if len(set(values)) == 1 else float(sum(values) / len(values))
        if "groups" in task:
            task["groups"] = len(images)
        for name in _reward_names(images):
            row[name], row[f"{name}_se"] = mean_se([_reward(name)(line) for line in images])
            row[f"{name}_prompt_se"] = _prompt_se(images, _reward(name))
            row[f"{name}_n"] = len(images)
        d = [p["diversity"] for p in per_prompt if p.get("diversity") is not None]
        if d:
            row["diversity"], row["diversity_se"] = mean_se(d)
            row["diversity_n_prompts"] = len(d)
        row.update({**task, "prompts": len(records), "outputs": len(images)})
        rows.append(row)
    _vs_first(rows, [by_label[label] for label in labels])
    return rows


def _vs_first(rows: list[dict], images: list[list[dict]]) -> None:
    """Add ``<name>_vs_first`` (and ``_se``, ``_n``) to every method's row but the first (``images``:
    each method's image lines, in the rows' order): its reward minus the first method's, prompt by
    prompt (each prompt's mean over its outputs, :func:`_prompt_means`), mean and standard error over
    the prompts both have. Prompts differ far more in difficulty than methods do in reward, and the
    difference within a prompt cancels that, so a gap the unpaired standard errors cannot resolve
    often shows here."""
    from glass.metrics.rewards import mean_se

    for name in _reward_names(images[0]):
        base = _prompt_means(images[0], _reward(name))
        for row, lines in zip(rows[1:], images[1:]):
            other = _prompt_means(lines, _reward(name))
            d = [other[i] - base[i] for i in base if i in other]
            if d:
                row[f"{name}_vs_first"], row[f"{name}_vs_first_se"] = mean_se(d)
                row[f"{name}_vs_first_n"] = len(d)


def _reward_names(images: list[dict]) -> list[str]:
    """The rewards an image line carries: the steered ``reward`` (where there is one), then the held-out
    rewards of ``metric=rewards``."""
    if not images:
        return []
    return (["reward"] if "reward" in images[0] else []) + list(images[0].get("rewards", {}))


def _reward(name: str):
    """An image line's value of reward ``name``: the steered ``reward``, or a held-out one."""
    return (lambda line: line["reward"]) if name == "reward" else (lambda line: line["rewards"][name])


def _prompt_means(images: list[dict], value) -> dict[int, float]:
    """Prompt index -> the mean of ``value`` over that prompt's images."""
    per: dict[int, list[float]] = {}
    for line in images:
        per.setdefault(line["prompt_index"], []).append(float(value(line)))
    return {i: sum(v) / len(v) for i, v in per.items()}


def _prompt_se(images: list[dict], value) -> float:
    """Standard error of the mean over the prompts' own means (NaN for one prompt): the error of the
    score as an estimate over the prompt distribution. The images of one prompt are not independent
    (they share its difficulty), so the error over images is smaller than this whenever per_prompt > 1."""
    from glass.metrics.rewards import mean_se

    return mean_se(list(_prompt_means(images, value).values()))[1]


def _caption(line: dict) -> str:
    parts = [f"reward {line['reward']:.3f}"] if "reward" in line else []
    parts += [f"{name} {v:.3f}" for name, v in line.get("rewards", {}).items()]
    return f"<figcaption>{html.escape(' · '.join(parts))}</figcaption>" if parts else ""


def gallery(run_dir: Path, rows: list[dict], methods: list[str], name: str = "index.html") -> None:
    """``name`` (index.html): one table row per prompt, one column per method, each image with its
    rewards. A row is a prompt's index and text: a sweep over two prompt files shows prompt 0 of each
    in its own row (one row with one file's caption mixed them)."""
    cells: dict[tuple[int, str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["prompt_index"], r["prompt"], r["method"]), []).append(r)
    prompts = sorted({(i, prompt) for i, prompt, _ in cells})
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = []
    for i, prompt in prompts:
        tds = []
        for m in methods:
            imgs = "".join(
                f'<figure><img src="{html.escape(c["path"])}" alt="{html.escape(prompt)}" loading="lazy">'
                f"{_caption(c)}</figure>"
                for c in cells.get((i, prompt, m), [])
            )
            tds.append(f"<td>{imgs}</td>")
        body.append(f"<tr><th>{i}: {html.escape(prompt)}</th>{''.join(tds)}</tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>glass run gallery</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top}img{width:192px;display:block}figure{display:inline-block;margin:2px}"
        "figcaption{font-size:12px}</style></head><body>"
        f"<table><tr><th>prompt</th>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
    write_text_atomic(run_dir / name, page)


def _grid(run_dir: Path, lines: list[dict], labels: list[str], per_method: int = 8) -> None:
    """samples.png: the first ``per_method`` images of each method, one row per method."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor
    from torchvision.utils import make_grid, save_image

    def read(path: Path):
        with Image.open(path) as image:
            return pil_to_tensor(image.convert("RGB")).float() / 255

    images = []
    for label in labels:
        mine = [line for line in lines if line["method"] == label][:per_method]
        row = [read(run_dir / line["path"]) for line in mine]
        images += row + [torch.ones_like(row[0])] * (per_method - len(row))
    if images:
        save_image(make_grid(images, nrow=per_method, padding=2, pad_value=1.0), run_dir / "samples.png")
