"""Shared machinery of latent models built here rather than handed over as a diffusers pipeline (SiT;
the pipeline adapters, FLUX, SD3, SD, are in :mod:`glass.pipelines`).

A :class:`LatentModel` holds a network that works on VAE latents, its conditioning (prompt
embeddings encoded once, or a class label) and the VAE decoder. Subclasses implement ``_x0(x, t,
**cond)``: the denoiser D_t(x) in float64 from one (or, with classifier-free guidance, two batched)
network passes. CFG is applied to the network's prediction, which is affine in D, so it is the same
as CFG on the denoiser: the guided field is treated as the true field everywhere (GLASS, SDE, FK
steering and guidance all see one denoiser). One NFE = one call of the guided denoiser.

Memory switches: ``chunk`` splits a batch of particles into network batches; ``dtype`` is the
network's dtype (``bfloat16`` on GPUs) while all scalar algebra stays float64.
"""

from __future__ import annotations

import contextlib
import re

import torch
from torch import Tensor

from glass.checks import check_dtype
from glass.models.base import Capabilities, Model, unit_images

__all__ = ["LatentModel", "load_vae", "require"]


def require(module: str, extra: str):
    """Import an optional dependency or fail with one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"this model needs {module}: pip install 'glass-flows[{extra}]'") from None


@contextlib.contextmanager
def quiet_hub():
    """Silence the hub clients' retry warnings and warnings while loading (the caller's error says
    what failed, once)."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def from_pretrained(cls, source: str, what: str, **kw):
    """``cls.from_pretrained`` with one clear line for a missing local folder or an unreachable hub
    (the hub client's own retry warnings are silenced: the error says it once)."""
    from pathlib import Path

    local = Path(source).expanduser()
    if source.startswith((".", "/", "~")) and not local.exists():
        raise ValueError(f"{what}: no such folder {source!r}")
    try:
        with quiet_hub():
            return cls.from_pretrained(str(local) if local.exists() else source, **kw)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        revision = f", that revision {kw['revision']!r} exists" if kw.get("revision") else ""
        raise ValueError(
            f"{what}: cannot load {source!r} ({first[:160]}); check the network{revision}, log in and accept "
            "the model's licence on the Hugging Face hub, or give a local folder"
        ) from None


def local_source(source: str) -> bool:
    """Whether ``source`` (a ``model_id``) names a local folder, spelled as a path or existing, rather
    than a hub id."""
    from pathlib import Path

    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def hub_snapshot(source: str, revision: str | None = None, anchor: str = "model_index.json"):
    """The local hub-cache folder (``.../snapshots/<commit>``) that ``from_pretrained(source,
    revision=revision)`` loads a pipeline (or, with ``anchor="config.json"``, a single model) from,
    found without the network; None for a local folder or one not downloaded yet."""
    from pathlib import Path

    if local_source(source):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(source, anchor, revision=revision)
    except Exception:  # noqa: BLE001 - not a hub id (the loader says so), or no hub client
        return None
    folder = Path(path).parent if isinstance(path, str) else None
    return folder if folder is not None and folder.parent.name == "snapshots" else None


# the files the loaders read: configs and tokenizers (the CLIP image processor's settings aside: glass
# preprocesses in torch), and the weights of the names diffusers / transformers load
UNREAD = ("preprocessor_config.json",)
# a weight file or its shard index, with its variant either way: model.fp16.safetensors,
# diffusion_pytorch_model.fp16-00001-of-00002.safetensors, model.safetensors.index.fp16.json
WEIGHT = re.compile(r"(?:diffusion_pytorch_model|pytorch_model|model)(?:\.(?P<variant>\w+))?(?:-\d+-of-\d+)?"
                    r"\.(?P<ext>safetensors|bin)(?:\.index(?:\.(?P<index_variant>\w+))?\.json)?")  # fmt: skip
TOKENIZER = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "spiece")


def file_digest(f) -> str:
    """One file's content as the hub cache names it (the blob its link points to: the content's hash),
    a file that is no link by its size and time."""
    import os
    from pathlib import Path

    f = Path(f)
    if f.is_symlink():
        return Path(os.readlink(f)).name
    stat = f.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _read(files: list, tokenizer: bool = False) -> list:
    """Of one folder's files, those ``from_pretrained`` reads: its configs and tokenizer files (with
    ``tokenizer``: only those) and, of the weights it names (``model`` / ``pytorch_model`` /
    ``diffusion_pytorch_model``, sharded or not), one format: safetensors where there are any, else
    PyTorch pickles, and a variant's (``model.fp16.safetensors``) only where no plain file is there.
    Other frameworks' files, other checkpoints beside them (``open_clip_model.safetensors``,
    ``sdxl_vae.safetensors``) and documents never count, so a later download of the rest of a
    repository changes nothing."""
    if tokenizer:
        return [f for f in files if f.name.startswith(TOKENIZER)]
    weights, rest = {}, []
    for f in files:
        if m := WEIGHT.fullmatch(f.name):
            weights[f] = (m["ext"], m["variant"] or m["index_variant"])
        elif f.name.endswith((".json", ".txt", ".model")) and f.name not in UNREAD:
            rest.append(f)
    chosen = []
    for group in ([f for f, (_, v) in weights.items() if v is None], list(weights)):  # glass names no variant
        chosen = [f for f in group if weights[f][0] == "safetensors"] or [
            f for f in group if weights[f][0] == "bin"]
        if chosen:
            break
    return rest + chosen


def snapshot_digest(folder, tokenizer: bool = False) -> str:
    """What a hub snapshot's (or a local folder's) weights are: a digest of the files in it the loaders
    read (:func:`_read`), each by :func:`file_digest`. A pipeline's are ``model_index.json`` and the
    component folders it names; a single model's (no ``model_index.json``: a CLIP, a VAE) its top
    folder's (``tokenizer``: its tokenizer files only). A commit that changes only the documents, and
    a later download of other formats, variants or folders into the snapshot, keep the digest."""
    import hashlib
    import json
    from pathlib import Path

    folder = Path(folder)
    index = folder / "model_index.json"
    if index.exists():
        try:
            names = [k for k, v in json.loads(index.read_text()).items() if isinstance(v, list) and v[0]]
        except (OSError, ValueError, AttributeError):
            names = []
        kept = [index, *(f for n in names if (folder / n).is_dir()
                         for f in _read([p for p in (folder / n).iterdir() if p.is_file()]))]  # fmt: skip
    else:
        kept = _read([p for p in folder.iterdir() if p.is_file()], tokenizer)
    lines = sorted(f"{f.relative_to(folder).as_posix()} {file_digest(f)}" for f in kept)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def load_vae(source: str, device: str, dtype: str, subfolder: str | None = None):
    from diffusers import AutoencoderKL

    kw = {"subfolder": subfolder} if subfolder else {}
    vae = from_pretrained(AutoencoderKL, source, "VAE", **kw)
    return vae.eval().requires_grad_(False).to(device=device, dtype=check_dtype("dtype", dtype))


class LatentModel(Model):
    """Base class of the latent pretrained models (see the module docstring)."""

    prompt_text: str | None = None  # text-to-image models: the prompt, for prompt-aware rewards

    capabilities = Capabilities(latent=True, own_grid=True)

    def __init__(
        self,
        net,
        vae,
        shape: tuple[int, ...],
        schedule,
        dtype: str,
        device: str,
        cfg_scale: float = 1.0,
        chunk: int | None = None,
        scaling_factor: float | None = None,
        shift_factor: float = 0.0,
        offload: bool = False,
    ):
        super().__init__(schedule, shape, check_dtype("dtype", dtype), device)
        if not isinstance(cfg_scale, (int, float)) or cfg_scale < 0:
            raise ValueError(f"model.cfg_scale must be a number >= 0, got {cfg_scale!r}")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"model.chunk must be an integer >= 1 or null, got {chunk!r}")
        if not offload:  # with CPU offload the weights stay on the CPU; hooks move them per call
            net = net.to(self.device)
        if next(net.parameters()).dtype != self.dtype:  # loaders pass torch_dtype already
            net = net.to(self.dtype)
        self.net = net
        self.vae, self.cfg_scale, self.chunk = vae, float(cfg_scale), chunk
        if scaling_factor is None and vae is not None:
            scaling_factor = float(getattr(vae.config, "scaling_factor", 1.0))
            shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.scaling_factor, self.shift_factor = scaling_factor or 1.0, shift_factor

    shift: float = 1.0  # rectified-flow models sample on a shifted grid (FLUX, SD3)

    def _x0(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        raise NotImplementedError

    def grid(self, k: int) -> Tensor:
        """K transitions on the model's own grid in our time: sigma uniform, shifted to
        s sigma / (1 + (s - 1) sigma) as the diffusers flow-matching scheduler does, t = 1 - sigma."""
        sigma = torch.linspace(1, 0, k + 1, dtype=torch.float64)
        return 1 - self.shift * sigma / (1 + (self.shift - 1) * sigma)

    def n_params(self) -> float:
        """Network parameters, in millions."""
        return sum(p.numel() for p in self.net.parameters()) / 1e6

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_params():.1f}M params, {self.shape})"

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        if self.chunk is None or len(x) <= self.chunk:
            return self._x0(x, t, **cond)
        parts = []
        for i in range(0, len(x), self.chunk):
            sl = slice(i, i + self.chunk)
            parts.append(
                self._x0(x[sl], t[sl], **{k: v[sl] if torch.is_tensor(v) else v for k, v in cond.items()})
            )
        return torch.cat(parts)


    def decode(self, x: Tensor) -> Tensor:
        """Latents -> images in [0, 1] with the VAE (differentiable when x requires grad)."""
        if self.vae is None:
            raise ValueError(f"{self!r} has no VAE (model.vae=null): rewards on images need one")
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            latents = x.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
            images = self.vae.decode(latents).sample.double()
        return unit_images(images)

    def encode(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> latents (the VAE's mean), float64."""
        if self.vae is None:
            raise ValueError(f"{self!r} has no VAE (model.vae=null)")
        with torch.no_grad():
            z = self.vae.encode(images.to(self.device, self.vae.dtype) * 2 - 1).latent_dist.mode()
        return (z.double() - self.shift_factor) * self.scaling_factor
