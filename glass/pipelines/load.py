"""The CLI's pretrained models (``model=flux|flux_kontext|flux2|flux2_dev|sd3|sd|sdxl|ddpm``): load the
diffusers pipeline from a hub id or a local folder, then go through :func:`glass.from_pipe` like any
user's pipe.

The pipeline is ours here, so it is moved to the device (or CPU-offloaded). It is loaded without its
text encoders: prompt embeddings are cached on disk under ``cache_dir``, and only prompts not there
yet load the encoders (alone, once per batch of prompts a run needs), which are then released.
"""

from __future__ import annotations

import weakref

from glass.checks import check_dtype
from glass.models.latent import from_pretrained, local_source, require
from glass.pipelines import ADAPTERS, from_pipe

__all__ = ["load_pipeline", "TEXT_COMPONENTS"]

FAMILIES = {a.family: a for a in ADAPTERS}

TEXT_COMPONENTS = {
    "flux": ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    "flux_kontext": ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    "flux2": ("text_encoder", "tokenizer"),
    "flux2_dev": ("text_encoder", "tokenizer"),
    "sd3": ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3"),
    "sd": ("text_encoder", "tokenizer"),
    "sdxl": ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    "ddpm": (),
}


def load_pipeline(
    family: str,
    model_id: str,
    prompt: str | None = "a photo of a cat",
    negative_prompt: str | None = None,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float | None = None,
    dtype: str = "bfloat16",
    device: str = "cuda",
    chunk: int | None = None,
    cpu_offload: bool = False,
    attention_slicing: bool = False,
    cache_dir: str = "outputs/cache",
    max_sequence_length: int | None = None,
    revision: str | None = None,
    **options,
):
    """Build the pipeline of ``family`` and adapt it with :func:`glass.from_pipe` (``options``:
    ``true_cfg_scale`` for FLUX.1, ``guidance_rescale`` for SD / SDXL, ``image`` for FLUX.2 and FLUX.1
    Kontext). ``revision``: the hub branch,
    tag or commit to load (None: the repository's main branch), as diffusers' ``from_pretrained``."""
    from glass.models.mnist import check_device

    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {', '.join(FAMILIES)}, got {family!r}")
    check_device(device)
    adapter = FAMILIES[family]
    adapter.check_options(options)  # a mistyped option or reference path: said before any weights load
    if family == "ddpm":
        prompt = negative_prompt = None
    else:
        require("transformers", "pipelines")
    torch_dtype = check_dtype("dtype", dtype)
    hub = _hub_revision(model_id, revision)
    name = adapter.pipelines[0]
    key = (name, str(model_id), revision or "main", str(torch_dtype), device, cpu_offload, attention_slicing)
    pipe = _LOADED.get(key)  # a sweep over model options (e.g. guidance_scale) shares one loaded network
    if pipe is None:
        pipe = _load_pipe(name, model_id, torch_dtype, TEXT_COMPONENTS[family], **hub)
        _LOADED[key] = _place(pipe, device, cpu_offload, attention_slicing)
    text = {"prompt": prompt, "cache_dir": cache_dir, "max_sequence_length": max_sequence_length}
    model = from_pipe(pipe, height=height, width=width, guidance_scale=guidance_scale,
                      negative_prompt=negative_prompt, chunk=chunk, **({} if family == "ddpm" else text),
                      **options)  # fmt: skip
    if family != "ddpm":  # text encoders only for prompts not on disk yet: loaded alone, then released

        # the text encoders of the network's own snapshot, even if the branch has moved on since
        pin = {"revision": model.snapshot} if model.snapshot and "+" not in model.snapshot else hub

        def load_text_encoders():
            pipe.maybe_free_model_hooks()  # an offloaded network leaves the GPU first (else: no-op)
            text_pipe = _load_pipe(name, model_id, torch_dtype, NETWORK_COMPONENTS[family], **pin)
            return _place(text_pipe, device, cpu_offload, False)

        model.release_text_encoders()  # the network's pipeline was loaded without them
        model.text_loader, model.release_when_prepared = load_text_encoders, True
        model.prepare_prompts([])
    model.network_pipeline = pipe  # kept alive (and shared through _LOADED) while a model uses it
    return model


# The network pipelines loaded in this process (without text encoders), by what was loaded: models
# built from configs that differ only in glass options (guidance scale, size, prompt, ...) share one,
# which glass.from_pipe never mutates; a pipeline is freed when no model holds it any more.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _hub_revision(model_id: str, revision) -> dict:
    """``from_pretrained``'s ``revision=`` ({} for the main branch), checked."""
    if isinstance(revision, (int, float)) and not isinstance(revision, bool):  # Hydra read 1.0 or 1234567
        raise ValueError(f"revision={revision!r} was read as a number: quote it, "
                         f"model.revision='\"{revision}\"'")  # fmt: skip
    if revision is not None and not (isinstance(revision, str) and revision):
        raise ValueError(f"revision must be a hub branch, tag or commit (or null: main), got {revision!r}")
    if revision is not None and local_source(str(model_id)):
        raise ValueError(f"revision={revision!r} applies to a hub id, not to the local folder {model_id!r}")
    return {"revision": revision} if revision is not None else {}


def _load_pipe(name: str, model_id: str, torch_dtype, skip: tuple[str, ...], **hub):
    """``diffusers.<name>.from_pretrained`` without the components in ``skip`` (text encoders whose
    prompts are cached) and without SD's safety checker."""
    import diffusers

    drop = {k: None for k in skip}
    if name == "StableDiffusionPipeline":
        drop.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cls = getattr(diffusers, name)
    pipe = from_pretrained(cls, model_id, cls.__name__, torch_dtype=torch_dtype, **hub, **drop)
    pipe.set_progress_bar_config(disable=True)
    return pipe


NETWORK_COMPONENTS = {
    "flux": ("transformer", "vae"), "flux_kontext": ("transformer", "vae"), "flux2": ("transformer", "vae"),
    "flux2_dev": ("transformer", "vae"),
    "sd3": ("transformer", "vae"), "sd": ("unet", "vae"), "sdxl": ("unet", "vae"),
}  # fmt: skip


def _place(pipe, device: str, cpu_offload: bool, attention_slicing: bool):
    """The pipeline is ours: move it to the device, or offload it model by model (accelerate)."""
    if cpu_offload:  # model-level offload: each component moves to the GPU while it runs
        require("accelerate", "pipelines")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if attention_slicing:  # attention in slices: less peak memory, a little slower
        pipe.enable_attention_slicing()
    return pipe
