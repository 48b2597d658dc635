"""The CLI's pretrained models (``model=flux|flux2|sd3|sd|sdxl|ddpm``): load the diffusers pipeline
from a hub id or a local folder, then go through :func:`glass.from_pipe` like any user's pipe.

The pipeline is ours here, so it is moved to the device (or CPU-offloaded). Prompt embeddings are
cached on disk under ``cache_dir``: when the run's prompts are cached already the text encoders are
not loaded at all, and otherwise they are released right after encoding.
"""

from __future__ import annotations

from glass.models.latent import check_dtype, from_pretrained, require
from glass.pipelines import ADAPTERS, from_pipe
from glass.pipelines.base import disk_key

__all__ = ["load_pipeline", "TEXT_COMPONENTS"]

FAMILIES = {a.family: a for a in ADAPTERS}

TEXT_COMPONENTS = {
    "flux": ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    "flux2": ("text_encoder", "tokenizer"),
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
    **options,
):
    """Build the pipeline of ``family`` and adapt it with :func:`glass.from_pipe` (``options``:
    ``true_cfg_scale`` for FLUX.1, ``guidance_rescale`` for SD / SDXL)."""
    import diffusers

    from glass.models.mnist import check_device
    from glass.models.prompts import PromptCache

    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {', '.join(FAMILIES)}, got {family!r}")
    check_device(device)
    torch_dtype = check_dtype(dtype)
    adapter = FAMILIES[family]
    text = TEXT_COMPONENTS[family]
    if family == "ddpm":
        prompt = negative_prompt = None
    else:
        require("transformers", "pipelines")
    max_len = adapter.max_length if max_sequence_length is None else max_sequence_length
    cache = PromptCache(cache_dir, model_id, family, max_len)
    texts = [disk_key(p) for p in (prompt, negative_prompt) if p is not None or family != "flux"]
    drop = {k: None for k in text} if all(cache.has(p) for p in texts) else {}
    if family == "sd":
        drop.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cls = getattr(diffusers, adapter.pipelines[0])
    pipe = from_pretrained(cls, model_id, cls.__name__, torch_dtype=torch_dtype, **drop)
    pipe.set_progress_bar_config(disable=True)
    if cpu_offload:  # model-level offload: each component moves to the GPU while it runs
        require("accelerate", "pipelines")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if attention_slicing:  # attention in slices: less peak memory, a little slower
        pipe.enable_attention_slicing()
    kw = (
        {}
        if family == "ddpm"
        else {
            "prompt": prompt,
            "cache_dir": cache_dir,
            "release_text_encoders": True,
            "max_sequence_length": max_sequence_length,
        }
    )
    model = from_pipe(
        pipe,
        height=height,
        width=width,
        guidance_scale=guidance_scale,
        negative_prompt=negative_prompt,
        chunk=chunk,
        **kw,
        **options,
    )
    del pipe  # the model holds what it samples with; the text encoders go with the pipe
    return model
