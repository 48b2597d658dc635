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
    yet: no digest). A local pipeline folder counts by its files' sizes and times. The other hub
    weights a config names count the same way (:func:`hub_sources`): the CLIP score's and PickScore's
    CLIP, HPSv2's and ImageReward's checkpoints, SiT's VAE; a single hub file (HPSv2's) is keyed
    ``hub:<id>/<file>@main``, a local file (ImageReward's too) by its size and time. FLUX.2's reference
    images (``model.image``) count by their bytes' sha256, keyed ``image:<path>``."""
    from omegaconf import OmegaConf

    from glass.models import mnist

    files, out = [], {}

    def walk(node):
        if isinstance(node, dict):
            for source, revision, anchor in hub_sources(node):
                out.update(_hub_digest(source, revision, anchor))
            if str(node.get("_target_")) == PRETRAINED[0]:  # FLUX.2's, Kontext's references, by content
                out.update(_image_digests(node.get("image")))
            defaults = mnist.DEFAULT_CHECKPOINTS.get(str(node.get("_target_")), {})
            files.extend(mnist.ASSETS / f for key, f in defaults.items() if not node.get(key))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and node.endswith(".safetensors"):
            files.append(mnist.repo_path(node))

    data = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    walk(data)
    walk(_default_reward(data))
    for f in dict.fromkeys(f.resolve() for f in files):  # one key per file, from any directory
        if sha := _manifest_sha(f):
            out[str(f)] = sha
    return out


PRETRAINED = ("glass.pipelines.load.load_pipeline", "glass.models.sit.load_sit")  # ImageReward by default


def _default_reward(cfg: dict) -> dict:
    """The reward ``reward=default`` stands for where it names hub weights: ImageReward on the
    pretrained image models (``glass.rewards.base.resolve_reward``, which decides it from the built
    model; here only the config is known); else nothing."""
    reward, model = cfg.get("reward") or {}, cfg.get("model") or {}
    pretrained = str(model.get("_target_")) in PRETRAINED
    if pretrained and str(reward.get("_target_")) == "glass.rewards.DefaultReward":
        return {"_target_": "glass.rewards.ImageReward"}
    return {}


def _image_digests(value) -> dict[str, str]:
    """``image:<path>`` -> the sha256 of its bytes, for each reference image a pipeline config names (an
    image edited in place reruns the job; a missing file has no digest: loading it says so)."""
    import hashlib

    paths = value if isinstance(value, list) else [value]
    found = [Path(p).expanduser().resolve() for p in paths if isinstance(p, str)]
    found = [p for p in found if p.is_file()]
    return {f"image:{p}": hashlib.sha256(p.read_bytes()).hexdigest() for p in found}


def _manifest_sha(f: Path) -> str | None:
    """The sha256 a checkpoint's manifest (``<name>.json`` beside it) records, or None."""
    try:
        manifest = json.loads(f.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    sha = manifest.get("sha256") if isinstance(manifest, dict) else None
    return sha if isinstance(sha, str) else None


def hub_sources(node: dict) -> list[tuple[str, str | None, str]]:
    """(hub id or local path, revision, the file that anchors it in the hub cache) of each hub-loaded
    weight a config node names: a pipeline's ``model_id``; the CLIP of ``reward=clip`` /
    ``reward=pickscore`` (and PickScore's tokenizer's repository); HPSv2's checkpoint (``path``,
    null: its hub file); SiT's ``path`` (a local checkpoint) and ``vae``; ImageReward's checkpoint
    (in its package's own cache, ``~/.cache/ImageReward``, or a path), where it is."""
    target = str(node.get("_target_"))
    if target == "glass.pipelines.load.load_pipeline" and node.get("model_id"):
        return [(str(node["model_id"]), node.get("revision"), "model_index.json")]
    if target in ("glass.rewards.CLIPScore", "glass.rewards.PickScore"):
        from glass.rewards import hub

        cls = getattr(hub, target.rsplit(".", 1)[1])
        model = [(str(node.get("model") or cls.default_model), None, "config.json")]
        return model + ([(cls.processor_model, None, "tokenizer_config.json")] if cls.processor_model else [])
    if target == "glass.rewards.HPSv2":
        from glass.rewards.hub import HPSv2

        repo, name = HPSv2.hub_file
        return [(str(node["path"]), None, "") if node.get("path") else (repo, None, name)]
    if target == "glass.rewards.ImageReward":  # its package's cache, not the hub's: the file, if there
        from glass.rewards.hub import ImageReward

        path = ImageReward.checkpoint(node.get("model"))
        return [(str(path), None, "")] if path.is_file() else []
    if target == "glass.models.sit.load_sit":  # path null: a fixed release file, downloaded once
        return [(str(node[k]), None, "config.json") for k in ("path", "vae") if node.get(k)]
    return []


def _hub_digest(source: str, revision: str | None, anchor: str) -> dict[str, str]:
    """{key: digest} of one hub source (``hub:<id>@<revision>``, or ``hub:<id>/<file>@<revision>`` for a
    single hub file), a local folder or a local file; {} for one not downloaded yet or missing."""
    from glass.models.latent import file_digest, hub_snapshot, snapshot_digest

    local = Path(source).expanduser()
    if local.suffix == ".safetensors" and _manifest_sha(local):
        return {}  # a checkpoint with a manifest: its sha256, keyed by weights_digest's walk
    if local.is_file():  # keyed as named (a link retargeted to another file is a change), its target's stat
        return {str(local.absolute()): file_digest(local.resolve())}
    folder = hub_snapshot(source, revision, anchor or "model_index.json")
    if folder is not None:
        single = anchor not in ("model_index.json", "config.json", "tokenizer_config.json")
        key = f"hub:{source}{f'/{anchor}' if single else ''}@{revision or 'main'}"
        digest = file_digest(folder / anchor) if single else snapshot_digest(
            folder, tokenizer=anchor == "tokenizer_config.json")
        return {key: digest}
    if local.is_dir() and ((local / "model_index.json").is_file() or (local / "config.json").is_file()):
        return {str(local.resolve()): snapshot_digest(local)}  # a local folder, saved anew?
    return {}


def stale_weights(job_dir: Path, digest: dict[str, str]) -> list[str]:
    """The checkpoints whose digest in ``job_dir``'s job.json differs from ``digest`` (a record from
    before job.json kept them has none to compare: it counts as current)."""
    try:
        recorded = json.loads((job_dir / "job.json").read_text()).get("weights") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(k for k in recorded.keys() & digest.keys() if recorded[k] != digest[k])
