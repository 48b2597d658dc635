"""Running a prompt set (``task.prompts=FILE``): one prompt at a time, resumable, shardable.

Each prompt is computed alone with its own seed, :func:`glass.noise.indexed_seed` (the run's seed, the
prompt's index in the file): every method of the sampler on its ``per_prompt`` outputs, then its images, the
held-out rewards (``metric=rewards``) and its record (:func:`glass.outputs.write_prompt`). So

- a killed run, started again, skips every prompt with a complete record and computes the rest (the
  finished prompts' files are not touched);
- the prompts can be split over processes (``torchrun``: rank r computes prompts r, r + G, ...) or over
  array jobs (``task.prompt_range`` shards, merged by ``glass report``) and the merged outputs equal a
  single process's;
- the model and its text encoders are loaded once per process and serve every prompt.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from glass.noise import indexed_seed
from glass.outputs import merge, read_records, write_prompt

__all__ = ["run_key", "compute", "finish"]


def run_key(cfg) -> str:
    """The run's config hash without ``task.prompt_range`` (the shards of one run share it), with the
    content digests of hub weights its config names by id alone (glass.weights): a run resumed after
    its hub branch moved on to new weights computes every prompt again, never pooling the two; so do
    FLUX.2's reference images (``model.image``) edited in place, keyed by their place in the list, not
    their path (the prompt file's own reference images count in the config itself:
    ``task.prompt_images_sha256``, glass.config.config_hash). A local folder's digest (file times) is
    left out: shards on nodes with their own copies stay one run."""
    from omegaconf import OmegaConf

    from glass.config import config_hash
    from glass.weights import weights_digest

    data = OmegaConf.to_container(cfg, resolve=True)
    data.get("task", {}).pop("prompt_range", None)
    every = weights_digest(data)
    digest = {k: v for k, v in every.items() if k.startswith("hub:")}
    images = [v for k, v in every.items() if k.startswith("image:")]
    digest.update({f"image:{i}": v for i, v in enumerate(images)})
    if digest:
        data["weights"] = digest
    return config_hash(data)


def compute(job, run_dir: Path, progress=None, rank: int = 0, world: int = 1) -> None:
    """Compute this process's share of the prompts (every ``world``-th from ``rank``) that ``run_dir``
    holds no complete record of."""
    from glass.metrics.none import NoMetric

    task, seed, key = job.task, int(job.cfg.seed), run_key(job.cfg)
    done = read_records(run_dir, key)
    todo = [r for r in task.prompts.records[rank::world] if r.index not in done]
    held_out = job.metric if getattr(job.metric, "text_to_image", False) else None
    advance = progress(f"{task.name}: prompts", len(todo)) if progress and todo else None
    for record in todo:
        one = copy.copy(task)
        one.prompts = task.prompts.only([record])
        s = indexed_seed(seed, record.index)
        with torch.inference_mode():
            generator = torch.Generator().manual_seed(s)
            result = one(job.model, job.sampler, NoMetric(), generator, reward=job.reward)
            info = {"seed": seed, "prompt_seed": s, "key": key, "rank": rank,
                    "file_prompts": task.prompts.file_prompts}  # fmt: skip
            write_prompt(run_dir, job.model, record, result, info=info,
                         held_out=held_out, save_latents=task.prompts.save_latents,
                         batch=getattr(held_out, "batch", 4))  # fmt: skip
        if advance:
            advance()


def finish(job, run_dir: Path) -> list[dict]:
    """Merge the records of every prompt into the run's outputs; returns one row per method."""
    from glass.tasks.compare import kernels_of

    done = read_records(run_dir, run_key(job.cfg))
    records = job.task.prompts.records
    missing = [r.index for r in records if r.index not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(records)} prompts have no record (e.g. prompt {missing[0]})"
        )
    labels = [label for label, _ in kernels_of(job.sampler)]
    return merge(run_dir, [(run_dir, done[r.index]) for r in records], labels)

