"""A diffusers pipeline you already hold, as a GLASS model: ``glass.from_pipe(pipe)``.

    import glass, torch
    from diffusers import FluxPipeline
    pipe = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", torch_dtype=torch.bfloat16).to("cuda")
    model = glass.from_pipe(pipe)
    x = glass.generate(model, glass.GLASS(steps=4), 8, n=2, prompt=["a cat", "a dog"])
    images = model.decode(x)                       # (2, 3, H, W) in [0, 1]

The pipeline is shared, never changed (see :mod:`glass.pipelines.base`).
"""

from __future__ import annotations

from glass.pipelines.base import PipelineModel
from glass.pipelines.flux import FluxModel
from glass.pipelines.flux2 import Flux2DevModel, Flux2KleinModel
from glass.pipelines.flux_kontext import FluxKontextModel
from glass.pipelines.sd import DDPMModel, SDXLModel, StableDiffusionModel
from glass.pipelines.sd3 import SD3Model

__all__ = ["from_pipe", "ADAPTERS", "PipelineModel"]

ADAPTERS: tuple[type[PipelineModel], ...] = (
    FluxModel,
    FluxKontextModel,
    Flux2KleinModel,
    Flux2DevModel,
    SD3Model,
    StableDiffusionModel,
    SDXLModel,
    DDPMModel,
)


def adapter_for(pipe) -> type[PipelineModel]:
    """The adapter class of ``pipe`` (by its class or a diffusers base class), or one ValueError."""
    names = [c.__name__ for c in type(pipe).__mro__]
    for name in names:
        for adapter in ADAPTERS:
            if name in adapter.pipelines:
                return adapter
    supported = [p for a in ADAPTERS for p in a.pipelines]
    raise ValueError(
        f"glass.from_pipe does not support {type(pipe).__name__}; supported pipelines: {', '.join(supported)}"
        + _conversion(type(pipe).__name__, supported)
    )


def _conversion(name: str, supported: list[str]) -> str:
    """How a pipeline of a supported model for another task (``StableDiffusionXLImg2ImgPipeline``,
    ``FluxControlNetPipeline``) converts to the supported one, sharing its components (diffusers'
    ``from_pipe``): the supported pipeline whose name without ``Pipeline`` is the longest start of
    ``name`` followed by a task's word (not a digit: ``Flux2...Pipeline`` is not FLUX.1). '' if none."""
    stems = [p.removesuffix("Pipeline") for p in supported]  # name is none of them (adapter_for)
    fits = [s for s in stems if name.startswith(s) and name[len(s):][:1].isupper()]
    if not fits or not name.endswith("Pipeline"):
        return ""
    target = max(fits, key=len) + "Pipeline"
    return (f" (a pipeline of a supported model for another task converts sharing its components: "
            f"{target}.from_pipe(pipe), if its network is a text-to-image one)")  # fmt: skip


def from_pipe(
    pipe,
    *,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    device=None,
    dtype=None,
    **options,
) -> PipelineModel:
    """The GLASS model of a loaded diffusers pipeline, sharing its components and never changing them.

    Args:
        pipe: a ``FluxPipeline``, ``FluxKontextPipeline``, ``Flux2KleinPipeline``, ``Flux2Pipeline``,
            ``StableDiffusion3Pipeline``, ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``,
            ``DDPMPipeline`` or ``DDIMPipeline``.
        height, width: image size in pixels (default: the pipeline's). Latents ``x`` are
            (B, C, height / vae_scale_factor, width / vae_scale_factor), what the VAE encodes to.
        guidance_scale: as the pipeline's argument of that name (default: the pipeline's default;
            FLUX.1 and FLUX.2 [dev]: distilled guidance, an input of the network; SD3, SD, SDXL:
            classifier-free guidance, batched unconditional + conditional passes, one NFE; FLUX.2
            klein: classifier-free guidance on undistilled checkpoints, in a second pass).
        negative_prompt: the default negative prompt (per call: ``negative_prompt=`` conditioning).
        device, dtype: must be the pipeline's own (``None``: take them). glass never moves or casts
            your modules; to sample elsewhere, move or convert the pipeline first (``pipe.to(...)``).
        **options: ``prompt`` (default prompt), ``chunk`` (rows per network batch),
            ``max_sequence_length``, ``cache_dir`` (prompt embeddings on disk),
            ``release_text_encoders`` (encode the default prompts now, then drop the encoders), and
            family options: ``true_cfg_scale`` (FLUX.1), ``guidance_rescale`` (SD, SDXL),
            ``image`` (FLUX.2: reference images to edit from, a PIL image, a path or a list; FLUX.1
            Kontext: one; per call, ``image=`` conditioning gives each row its own, None keeping this
            one), ``auto_resize`` (FLUX.1 Kontext: the reference to its preferred resolution).
    """
    cls = adapter_for(pipe)
    return cls(
        pipe,
        height=height,
        width=width,
        guidance_scale=guidance_scale,
        negative_prompt=negative_prompt,
        device=device,
        dtype=dtype,
        **options,
    )
