"""Per-image outputs of a run on a prompt set (``task.prompts=FILE``), for external evaluators.

Inside the run directory::

    geneval/<method>/<prompt index:05d>/metadata.jsonl    the prompt's line of the prompt file
    geneval/<method>/<prompt index:05d>/samples/<k:05d>.png
    images.jsonl                                          one line per image (see write_images)
    index.html                                            gallery: prompts x methods, offline

``geneval/<method>`` is the layout GenEval's ``generation/diffusers_generate.py`` writes (one folder
per prompt index with its metadata line and ``samples/*.png``), so its ``evaluate_images.py`` reads it
as is: ``python evaluation/evaluate_images.py RUN/geneval/<method> --outfile results.jsonl``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import torch

from glass.files import write_json_atomic

__all__ = ["write_images", "method_dir"]


def method_dir(label: str) -> str:
    """A kernel label as a folder name: ``glass(rho=0.4) M=8`` -> ``glass_rho-0.4_M8``."""
    name = re.sub(r"[^A-Za-z0-9.\-]+", "_", label.replace(" M=", "_M").replace("=", "-"))
    return re.sub(r"_+", "_", name).strip("_")


def write_images(run_dir: Path, model, result, seed: int) -> list[dict]:
    """Decode every output (one at a time: one image's activations in memory) and write the layout of
    the module docstring; returns the images.jsonl rows."""
    from torchvision.utils import save_image

    table = result.extra["prompts"]
    rewards = result.extra.get("output_rewards", {})
    traces = result.extra.get("trace", {})
    rows = []
    for row in result.rows:
        label = row["sampler"]
        x = result.samples[label]
        if result.extra.get("save_latents"):  # row j of latents/<method>.safetensors is output j
            _save_latents(run_dir / "latents" / f"{method_dir(label)}.safetensors", x)
        ess = _ess_at_resampling(traces.get(label) or {}, len(table))
        for j, entry in enumerate(table):
            folder = run_dir / "geneval" / method_dir(label) / f"{entry['prompt_index']:05d}"
            (folder / "samples").mkdir(parents=True, exist_ok=True)
            if entry["repeat"] == 0:  # GenEval's metadata line: the prompt file's own fields
                (folder / "metadata.jsonl").write_text(
                    json.dumps({**entry["meta"], "prompt": entry["prompt"]})
                )
            path = folder / "samples" / f"{entry['repeat']:05d}.png"
            with torch.no_grad():
                save_image(model.decode(x[j : j + 1].to(model.device)).float().cpu(), path)
            line = {"method": label, **{k: entry[k] for k in ("prompt_index", "prompt", "repeat")},
                    "meta": entry["meta"], "seed": seed, "nfe": row.get("nfe"),
                    "path": str(path.relative_to(run_dir))}  # fmt: skip
            if label in rewards:
                line["reward"] = float(rewards[label][j])
            if ess is not None:
                line["ess_at_resampling"] = ess[j]
            if result.extra.get("save_latents"):
                line["latent_row"] = j
            rows.append(line)
    tmp = run_dir / ".images.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(run_dir / "images.jsonl")
    _gallery(run_dir, rows, [r["sampler"] for r in result.rows])
    methods = {method_dir(r["sampler"]): r["sampler"] for r in result.rows}  # folder -> kernel label
    write_json_atomic(run_dir / "geneval" / "methods.json", methods)
    return rows


def _save_latents(path: Path, x) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": x.detach().cpu().contiguous()}, str(path))


def _ess_at_resampling(trace: dict, n: int) -> list[list[float]] | None:
    """FK steering: per output (group), its effective sample size at each step where it resampled."""
    if "ess" not in trace or "resampled" not in trace:
        return None
    steps = list(zip(trace["ess"], trace["resampled"]))
    return [[round(float(e[j]), 4) for e, did in steps if did[j]] for j in range(n)]


def _gallery(run_dir: Path, rows: list[dict], methods: list[str]) -> None:
    """index.html: one table row per prompt, one column per method, each image with its reward."""
    cells: dict[tuple[int, str], list[dict]] = {}
    prompts: dict[int, str] = {}
    for r in rows:
        cells.setdefault((r["prompt_index"], r["method"]), []).append(r)
        prompts[r["prompt_index"]] = r["prompt"]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = []
    for i, prompt in prompts.items():
        tds = []
        for m in methods:
            imgs = "".join(
                f'<figure><img src="{html.escape(c["path"])}" loading="lazy">'
                + (f"<figcaption>reward {c['reward']:.3f}</figcaption>" if "reward" in c else "")
                + "</figure>"
                for c in cells.get((i, m), [])
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
    tmp = run_dir / ".index.html.tmp"
    tmp.write_text(page)
    tmp.replace(run_dir / "index.html")
