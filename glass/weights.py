"""The weights a job's results depend on that its config names by path or hub id alone: a shipped
checkpoint retrained in place, a hub branch that moved on. The config hash cannot see them; the sweeps
(glass.sweep) and the prompt-set runs (glass.runner, glass.promptrun) record their digests with each
job, and run a finished job again when they have changed."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["weights_digest", "stale_weights"]


def weights_digest(cfg) -> dict[str, str]:
    """Checkpoint path -> sha256 (its manifest's) of the checkpoints a job's results depend on that its
    config names by path alone: every ``.safetensors`` file the config names, and the shipped ones a
    null path stands for (``glass.models.mnist.DEFAULT_CHECKPOINTS``: model=mnist's flow, the
    classifier of the MNIST models and the classifier reward). The config hash cannot see a checkpoint
    retrained in place (``glass train flow`` re-exports glass/assets/mnist_flow): a finished job whose
    job.json records other digests is run again (:func:`stale_weights`). A file without a readable
    manifest has no digest. A pipeline from the hub (``model_id`` an id, ``revision`` a branch or
    none) is keyed ``hub:<id>@<revision>``, its digest that of the snapshot the hub cache resolves it
    to (:func:`glass.models.latent.snapshot_digest`: its model files' content, so a branch that moved
    on to new weights reruns the job, one that changed only its README does not; not downloaded
    yet: no digest). A local pipeline folder counts by its files' sizes and times."""
    from omegaconf import OmegaConf

    from glass.models import mnist
    from glass.models.latent import hub_snapshot, snapshot_digest

    files, out = [], {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("_target_") == "glass.pipelines.load.load_pipeline" and node.get("model_id"):
                local = Path(str(node["model_id"])).expanduser()
                folder = hub_snapshot(str(node["model_id"]), node.get("revision"))
                if folder is not None:
                    out[f"hub:{node['model_id']}@{node.get('revision') or 'main'}"] = snapshot_digest(folder)
                elif (local / "model_index.json").is_file():  # a local pipeline folder, saved anew?
                    out[str(local.resolve())] = snapshot_digest(local)
            defaults = mnist.DEFAULT_CHECKPOINTS.get(str(node.get("_target_")), {})
            files.extend(mnist.ASSETS / f for key, f in defaults.items() if not node.get(key))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and node.endswith(".safetensors"):
            files.append(mnist.repo_path(node))

    walk(cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True))
    for f in dict.fromkeys(f.resolve() for f in files):  # one key per file, from any directory
        try:
            manifest = json.loads(f.with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("sha256"), str):
            out[str(f)] = manifest["sha256"]
    return out


def stale_weights(job_dir: Path, digest: dict[str, str]) -> list[str]:
    """The checkpoints whose digest in ``job_dir``'s job.json differs from ``digest`` (a record from
    before job.json kept them has none to compare: it counts as current)."""
    try:
        recorded = json.loads((job_dir / "job.json").read_text()).get("weights") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(k for k in recorded.keys() & digest.keys() if recorded[k] != digest[k])
