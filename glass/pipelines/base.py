"""A loaded diffusers pipeline behind the one denoiser interface (``glass.from_pipe``).

:class:`PipelineModel` borrows the pipeline's network, VAE, image processor, text encoders and a
*copy* of its scheduler, and never changes the pipeline: no cast, no move, no ``requires_grad``
change, no scheduler state (``set_timesteps`` runs on the copy). It runs on the pipeline's execution
device in the network's dtype; asking for another one is a ValueError, never a silent conversion.

Conditioning is per sample: ``denoise(x, t, prompt=..., negative_prompt=...)`` takes a string or one
string per row (and a family's ``row_options``, the references ``image=`` of FLUX.2 and FLUX.1 Kontext,
one value or one per row).
Prompts are encoded with the pipeline's own ``encode_prompt``, one at a time, once per
text (cached in memory, and on disk under ``cache_dir`` when given); :meth:`release_text_encoders`
drops this model's reference to the encoders afterwards.

The state ``x`` is the pipeline's *unpacked* latent (B, C, h, w), h = height / vae_scale_factor, the
shape its VAE encodes an image to; packing (FLUX) stays inside the adapter. Time is ours (t = 0
noise, t = 1 data); each family maps it to the network's timestep and converts the prediction to the
denoiser D_t(x) (eqs. 14, 26, 27). Classifier-free guidance is applied to the prediction, which is
affine in D, so the guided field is the field every kernel sees; one NFE is one guided call.
"""

from __future__ import annotations

import copy
import hashlib
from typing import ClassVar

import torch
from torch import Tensor

from glass.checks import check_dtype, check_int, check_number
from glass.models.base import Capabilities, Model, unit_images
from glass.models.latent import snapshot_digest

__all__ = ["PipelineModel", "disk_key"]


def disk_key(text: str | None) -> str:
    """The prompt cache's key of a text; None (the pipeline's own negative) has its own key."""
    return "\x00pipeline-negative" if text is None else text


def _pipeline_dtype_device(pipe, net, network: str, dtype, device) -> tuple[torch.dtype, torch.device]:
    """The network's dtype and the pipeline's execution device; a different ``dtype`` / ``device`` asked
    for is refused with one line (glass never converts or moves the user's modules)."""
    # as diffusers' ModelMixin.dtype: layerwise casting's compute dtype, else the first floating-point
    # parameter's (a float8-stored or 4-bit quantised network's first parameter is not what it computes in)
    own_dtype = net.dtype
    own_device = torch.device(pipe._execution_device)
    wanted = None if dtype is None else check_dtype("dtype", dtype)
    if wanted is not None and wanted != own_dtype:
        raise ValueError(
            f"dtype={dtype} differs from the pipeline's {network} ({own_dtype}); glass never converts "
            f"your modules: convert the pipeline yourself (pipe.to({wanted})) or leave dtype=None"
        )
    if device is not None and not _same_device(torch.device(device), own_device):
        raise ValueError(
            f"device={device!r} differs from the pipeline's execution device ({own_device}); glass never "
            f"moves your modules: move the pipeline yourself (pipe.to({str(device)!r})) or leave device=None"
        )
    return own_dtype, own_device


def model_folders(pipe) -> list:
    """The pipeline folders (``model_index.json`` beside the component folders) a pipeline's components
    were loaded from: a local folder, or the hub cache's ``.../snapshots/<commit>``; [] for a pipeline
    built in memory. diffusers and transformers record each component's folder as its config's
    ``_name_or_path``."""
    from pathlib import Path

    folders = set()
    for component in getattr(pipe, "components", {}).values():
        config = getattr(component, "config", None)
        path = getattr(config, "_name_or_path", None)
        if path is None and isinstance(config, dict):
            path = config.get("_name_or_path")
        folder = Path(str(path)).parent if path else None
        if folder is not None and (folder / "model_index.json").is_file():
            folders.add(folder)
    return sorted(folders)


def _cache_source(pipe, name: str, folders: list) -> str:
    """What the prompt cache names the text encoders by: the pipeline's name (a hub id or a folder's
    name names no weights by itself), the content of the folders it was loaded from
    (:func:`glass.models.latent.snapshot_digest`), and the text encoders the user dropped (SD3 without
    T5 puts zeros in its place: other embeddings; all of them dropped, as glass's loader does before
    loading them on demand, changes nothing), and the system message the text is wrapped in where the
    pipeline has one (FLUX.2 [dev]'s ``pipe.system_message``: an attribute, not config)."""
    source = name + "".join(f"@{snapshot_digest(f)}" for f in folders)
    encoders = {k: v for k, v in getattr(pipe, "components", {}).items() if k.startswith("text_encoder")}
    missing = sorted(k for k, v in encoders.items() if v is None)
    source += f" without {','.join(missing)}" if 0 < len(missing) < len(encoders) else ""
    if isinstance(message := getattr(pipe, "system_message", None), str):
        source += f" system {hashlib.sha256(message.encode()).hexdigest()[:12]}"
    return source


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


class PipelineModel(Model):
    """Base class of the pipeline adapters (see the module docstring). Subclasses set the class
    attributes and implement ``_encode`` (texts -> embeddings), ``_x0`` (one guided denoiser call)
    and ``grid`` (the pipeline's outer grid)."""

    family: ClassVar[str] = ""
    pipelines: ClassVar[tuple[str, ...]] = ()  # diffusers class names this adapter takes
    network: ClassVar[str] = "transformer"  # the pipeline's denoising network
    schedule_name: ClassVar[str] = "linear"  # the Gaussian path the network was trained on
    default_guidance: ClassVar[float] = 1.0
    max_length: ClassVar[int | None] = None  # default max_sequence_length (T5 / Qwen encoders)
    max_length_cap: ClassVar[int | None] = None  # the largest the pipeline takes (None: no limit)
    options: ClassVar[dict] = {}  # family-specific keyword options and their defaults
    conditioning = ("prompt", "negative_prompt")
    row_options: ClassVar[tuple[str, ...]] = ()  # family options also given per row (references' image)

    capabilities = Capabilities(latent=True, prompts=True, own_grid=True)

    def __init__(
        self,
        pipe,
        *,
        height: int | None = None,
        width: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        prompt: str | None = None,
        device=None,
        dtype=None,
        chunk: int | None = None,
        max_sequence_length: int | None = None,
        cache_dir: str | None = None,
        release_text_encoders: bool = False,
        **options,
    ):
        net = getattr(pipe, self.network, None)
        if net is None:
            raise ValueError(f"{type(pipe).__name__} has no {self.network}: nothing to sample with")
        own_dtype, own_device = _pipeline_dtype_device(pipe, net, self.network, dtype, device)
        self.check_options(options)
        self.option = {**self.options, **options}
        self.net, self.vae = net, getattr(pipe, "vae", None)
        self.image_processor = getattr(pipe, "image_processor", None)
        self.vae_scale_factor = int(getattr(pipe, "vae_scale_factor", 1))
        self._prepare_options(pipe)
        self.scheduler = copy.deepcopy(pipe.scheduler)  # set_timesteps runs here, never on the pipe's
        self.pipeline_class = type(pipe).__name__
        self.name = str(getattr(pipe.config, "_name_or_path", "") or self.pipeline_class)
        folders = model_folders(pipe)  # the hub snapshot's commit: glass's loader pins the encoders to it
        commits = [f.name for f in folders if f.parent.name == "snapshots" and len(f.name) == 40]
        self.snapshot = "+".join(commits) or None
        source = None if cache_dir is None else _cache_source(pipe, self.name, folders)
        self._text = pipe  # encode_prompt; None after release_text_encoders()
        height = self._size(pipe, height, "height")
        width = self._size(pipe, width, "width")
        super().__init__(self.schedule_name, self.latent_shape(height, width), own_dtype, own_device)
        self._check_channels()
        self.height, self.width = height, width
        self._set_text_options(guidance_scale, prompt, negative_prompt, chunk, max_sequence_length, cache_dir,
                               source)  # fmt: skip
        self._check_options()
        self._check_negative(negative_prompt)
        if release_text_encoders:
            self.encode_prompts(self.default_texts())
            self.release_text_encoders()

    def _set_text_options(
        self, guidance_scale, prompt, negative_prompt, chunk, max_sequence_length, cache_dir, source
    ):
        """Guidance, default prompts, chunking and the prompt caches (in memory; on disk if asked, keyed
        by ``source``: :func:`_cache_source`)."""
        gs = self.default_guidance if guidance_scale is None else guidance_scale
        self.guidance_scale = check_number("guidance_scale", gs, minimum=0)
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or None, got {value!r}")
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.chunk = None if chunk is None else check_int("chunk", chunk, 1)
        if max_sequence_length is not None and self.max_length is None:
            raise ValueError(
                f"max_sequence_length={max_sequence_length} applies to FLUX, FLUX.2 and SD3 (T5 / Qwen / "
                f"Mistral text encoders), not to {self.family}: leave it None"
            )
        self.max_sequence_length = (
            self.max_length
            if max_sequence_length is None
            else check_int("max_sequence_length", max_sequence_length, 1, self.max_length_cap)
        )
        self._embeddings: dict[str | None, dict[str, Tensor]] = {}  # one text's, batch dimension 1
        self._batched: dict[tuple, dict[str, Tensor]] = {}  # the last row lists' (see embeddings)
        self._disk = None
        if cache_dir is not None:
            from glass.models.prompts import PromptCache

            # keyed by the network's dtype too: a float16 run's embeddings never reach a bfloat16 network
            self._disk = PromptCache(cache_dir, source, self.family, self.max_sequence_length, self.dtype)

    def default_texts(self) -> list[str | None]:
        """The texts the defaults need: the prompt, and the negative (None: the pipeline's own) when
        guidance uses one."""
        texts = [] if self.prompt is None else [self.prompt]
        return texts + ([self.negative_prompt] if self.uses_negative() else [])

    def _check_channels(self) -> None:
        """The network's latent channels are the VAE's: an inpainting, depth or fill checkpoint (SD
        inpainting: 9 = 4 latent + 4 masked image + 1 mask) takes extra channels no sampler here fills."""
        latent = getattr(getattr(self.vae, "config", None), "latent_channels", None)
        if latent is not None and self.shape[0] != int(latent):
            raise ValueError(
                f"the {self.network} takes {int(self.net.config.in_channels)} input channels, "
                f"{self.shape[0]} latent channels where the VAE's latents have {int(latent)} (an "
                "inpainting, depth or fill checkpoint whose extra channels carry an image or a mask): not "
                "supported; use a text-to-image checkpoint"
            )

    # -- what the family supplies ---------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: dict) -> None:
        """The family options, checked without the pipe: the CLI's loader calls this before any weights
        load, so a mistyped option or path is said at once, not after a download."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            allowed = ", ".join(cls.options) or "none"
            raise ValueError(
                f"from_pipe got unknown options {', '.join(unknown)} for {cls.family} "
                f"(family options: {allowed})"
            )

    def _prepare_options(self, pipe) -> None:
        """Family options that need the pipe before the sizes are set (FLUX.2's reference images)."""

    def _check_options(self) -> None:
        pass

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        c = int(self.net.config.in_channels)
        return (c, height // self.vae_scale_factor, width // self.vae_scale_factor)

    def size_multiple(self) -> int:
        return self.vae_scale_factor

    def default_size(self, pipe) -> int:
        return int(pipe.default_sample_size) * self.vae_scale_factor

    def _encode(self, texts: list[str | None]) -> dict[str, Tensor]:
        """Embeddings of ``texts`` (batched along dim 0) with the pipeline's encode_prompt; None stands
        for the pipeline's own negative (the empty prompt, or zeros where the pipeline does so)."""
        raise NotImplementedError

    def _x0(self, x: Tensor, t: Tensor, prompts: list[str], negatives: list[str | None]) -> Tensor:
        raise NotImplementedError

    def uses_negative(self) -> bool:
        return self.guidance_scale > 1

    negative_needs: ClassVar[str] = "guidance_scale > 1"  # when uses_negative() holds, in words

    def _check_negative(self, negative_prompt) -> None:
        """A negative prompt where no classifier-free guidance runs is refused (the pipeline ignores it,
        silently)."""
        if negative_prompt is not None and not self.uses_negative():
            raise ValueError(
                f"negative_prompt is used only with classifier-free guidance ({self.negative_needs}); "
                f"{self.family} runs none with these settings, so it would be ignored"
            )

    # -- sizes ---------------------------------------------------------------------------------------
    def _size(self, pipe, value, name: str) -> int:
        if value is None:
            return self.default_size(pipe)
        value = check_int(name, value, 1)
        m = self.size_multiple()
        if value % m:
            raise ValueError(f"{name} must be a multiple of {m} for {self.pipeline_class}, got {value}")
        return value

    # -- prompts -------------------------------------------------------------------------------------
    @property
    def prompt_text(self) -> str | None:
        """The default prompt (rewards score against it when no prompt is passed)."""
        return self.prompt

    text_loader = None  # a callable returning a pipeline that can encode (CLI loaders: encoders only)
    release_when_prepared = False  # CLI loaders: drop the encoders once a run's prompts are encoded

    def prepare_prompts(self, texts) -> None:
        """Encode every prompt a run will use (and the default ones) before it starts;
        then release the encoders if the model's loader asked for it."""
        self.encode_prompts([*texts, *self.default_texts()])
        if self.release_when_prepared:
            self.release_text_encoders()

    def release_text_encoders(self) -> None:
        """Drop this model's reference to the pipeline's text encoders (prompts already encoded stay
        cached). Their memory is freed once nothing else holds them: your own ``pipe`` still does, so
        delete it or set ``pipe.text_encoder = None`` (etc.) yourself; glass never changes the pipe."""
        self._text = None

    def encode_prompts(self, texts, batch: int = 1) -> None:
        """Encode every text not yet cached, ``batch`` at a time, with the pipeline's encoders. One at a
        time by default: a prompt's embedding then never depends on which prompts it was batched with
        (on a GPU a batched matmul may round differently per batch size), so a shard, a resumed run
        and one process give each prompt the same embedding; encoding is a small part of a run."""
        missing = [p for p in dict.fromkeys(texts) if p not in self._embeddings]
        if self._disk is not None:
            for p in [p for p in missing if self._disk.has(disk_key(p))]:
                cached = self._disk.load(disk_key(p))  # None: a damaged file, encoded again below
                if cached is not None:
                    self._embeddings[p] = self._to_device(cached)
                    missing.remove(p)
        if not missing:
            return
        if self._text is None and self.text_loader is not None:  # the CLI's: encoders loaded on demand
            self._text = self.text_loader()
        if self._text is None:
            raise ValueError(
                f"prompt {missing[0]!r} was not encoded before the text encoders were released (or not "
                "loaded); encode every prompt first: model.encode_prompts([...])"
            )
        for i in range(0, len(missing), batch):
            part = missing[i : i + batch]
            with torch.no_grad():
                emb = self._encode(part)
            for j, p in enumerate(part):
                one = {k: v[j : j + 1].detach() for k, v in emb.items()}
                self._embeddings[p] = one
                if self._disk is not None:
                    self._disk.save(disk_key(p), one)

    def _to_device(self, emb: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(self.device) for k, v in emb.items()}

    def embeddings(self, texts: list) -> dict[str, Tensor]:
        """Per-row embeddings (batched along dim 0) of ``texts``, encoding what is missing. The batch of
        the last few distinct row lists is kept: a sampler asks for the same rows at every network
        call, and a (B, L, D) concatenation per call would cost a copy as large as the batch's text."""
        key = tuple(texts)
        if key in self._batched:
            return self._batched[key]
        self.encode_prompts(texts)
        first = self._embeddings[texts[0]]
        if all(p == texts[0] for p in texts):
            batch = {k: v.expand(len(texts), *v.shape[1:]) for k, v in first.items()}
        else:
            batch = {k: torch.cat([self._embeddings[p][k] for p in texts]) for k in first}
        if len(self._batched) >= 4:  # chunks and CFG halves of one run; older lists are dropped
            self._batched.pop(next(iter(self._batched)))
        self._batched[key] = batch
        return batch

    def guided_texts(self, prompts: list, negatives: list) -> list[dict]:
        """The embeddings of one batched classifier-free-guidance pass: [negative, positive], or
        [positive] without guidance."""
        pos = self.embeddings(prompts)
        return [self.embeddings(negatives), pos] if self.uses_negative() else [pos]

    def guide(self, out: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """A batched pass over ``guided_texts`` -> (guided prediction, conditional prediction):
        uncond + guidance_scale (cond - uncond), the pipelines' CFG."""
        if n == 1:
            return out, out
        uncond, cond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond), cond

    def _rows(self, value, b: int, name: str, required: bool) -> list:
        if value is None:
            if required:
                raise ValueError(
                    f"prompt is required: {type(self).__name__} is text-conditioned (pass "
                    "prompt=..., or glass.from_pipe(pipe, prompt=...))"
                )
            return [None] * b
        if isinstance(value, str):
            return [value] * b
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            if len(value) != b:
                raise ValueError(
                    f"{name} has {len(value)} entries for a batch of {b}; give one per sample "
                    "or a single string"
                )
            return list(value)
        raise ValueError(f"{name} must be a string or a list of strings, got {type(value).__name__}")

    # -- the denoiser --------------------------------------------------------------------------------
    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        b = len(x)
        if not self.conditioning:  # an unconditional pipeline
            prompts = negatives = [None] * b
        else:
            prompts = self._rows(cond.get("prompt", self.prompt), b, "prompt", True)
            self._check_negative(cond.get("negative_prompt"))
            negatives = self._rows(
                cond.get("negative_prompt", self.negative_prompt), b, "negative_prompt", False
            )
        rows = {k: self._option_rows(cond.get(k), b, k) for k in self.row_options if cond.get(k) is not None}
        size = self.chunk or b
        parts = [
            self._x0(x[i : i + size], t[i : i + size], prompts[i : i + size], negatives[i : i + size],
                     **{k: v[i : i + size] for k, v in rows.items()})
            for i in range(0, b, size)
        ]  # fmt: skip
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _option_rows(self, value, b: int, name: str) -> list:
        """A family option given per call (``row_options``): a list or tuple is one entry per row (None
        in a row: the model's own), anything else is every row's."""
        if not isinstance(value, (list, tuple)):
            return [value] * b
        if len(value) != b:
            raise ValueError(f"{name} has {len(value)} entries for a batch of {b}; give one per sample "
                             "or a single value")  # fmt: skip
        return list(value)

    # -- images --------------------------------------------------------------------------------------
    def _to_vae(self, x: Tensor) -> Tensor:
        """Our latents -> the VAE's latent space."""
        c = self.vae.config
        return x / c.scaling_factor + (getattr(c, "shift_factor", None) or 0.0)

    def _from_vae(self, z: Tensor) -> Tensor:
        c = self.vae.config
        return (z - (getattr(c, "shift_factor", None) or 0.0)) * c.scaling_factor

    def image_vae(self):
        """The VAE that decodes and encodes: the pipeline's own (SDXL: a float32 copy where the pipeline
        would upcast it)."""
        return self.vae

    def decode(self, x: Tensor) -> Tensor:
        """Latents (B, C, h, w) -> images (B, 3, H, W) in [0, 1] (float64) with the pipeline's VAE
        (:meth:`image_vae`: SDXL's float16 VAE through a float32 copy).
        Differentiable when ``x`` requires grad (guidance); without autograd otherwise."""
        vae = self.image_vae()
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            z = self._to_vae(x.to(self.device, torch.float64)).to(vae.dtype)
            images = vae.decode(z, return_dict=False)[0]
        return unit_images(images)

    def encode(self, images) -> Tensor:
        """Images -> latents x (B, C, h, w), float64: a float tensor (B, 3, H, W) in [0, 1] at the
        model's height and width, or what ``pipe.image_processor.preprocess`` takes (PIL images,
        arrays), resized to them. The VAE's mean (mode) is used: deterministic."""
        if torch.is_tensor(images):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
            if images.shape[-2:] != (self.height, self.width):
                raise ValueError(
                    f"images are {images.shape[-2]}x{images.shape[-1]}, the model samples "
                    f"{self.height}x{self.width}; resize them or set height/width"
                )
            lo, hi = float(images.min()), float(images.max())
            if lo < 0 or hi > 1:
                raise ValueError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
            pixels = images.to(self.device) * 2 - 1
        else:
            pixels = self.image_processor.preprocess(images, height=self.height, width=self.width)
        vae = self.image_vae()
        with torch.no_grad():
            z = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mode()
        return self._from_vae(z.double())

    # -- the pipeline's own layout (to compare with, or hand over to, ``pipe(latents=...)``) ----------
    def pipeline_latents(self, x: Tensor) -> Tensor:
        """Our x -> the pipeline's ``latents=`` argument."""
        return x

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        """The pipeline's ``output_type="latent"`` output -> our x (float64)."""
        return latents.double()

    # -- grid ----------------------------------------------------------------------------------------
    def grid(self, k: int) -> Tensor:
        """The pipeline's outer grid of ``k`` steps in our time t (from its scheduler)."""
        raise NotImplementedError

    def n_params(self) -> float:
        return sum(p.numel() for p in self.net.parameters()) / 1e6

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}, {self.n_params():.1f}M params, {self.height}x{self.width}, "
            f"latents {self.shape}, {self.dtype}, {self.device})"
        )
