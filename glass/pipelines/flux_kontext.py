"""FLUX.1 Kontext (``FluxKontextPipeline``): FLUX.1's flow, edited from a reference image.

The reference (``image=``, a PIL image or a path, or a list of one) is prepared as the pipeline
prepares it: its size floored to a multiple of the image processor's factor, then (``auto_resize``, the
pipeline's ``_auto_resize``, on by default) replaced by the preferred Kontext resolution nearest its
aspect ratio, floored to a multiple of 2 x the VAE's scale factor, and the image resized (stretched,
not cropped) to it and preprocessed; VAE-encoded by the mode,
shifted and scaled as the pipeline's latents are, packed into 2x2 patch tokens whose position ids are
the image's with the first coordinate 1. The tokens are appended to the generated image's in every
network call and the velocity is read from the generated image's tokens only; mu, guidance and true
CFG are FLUX.1's (:mod:`glass.pipelines.flux`).

The generated size is ``height`` x ``width`` as given (default 1024 x 1024, the pipeline's default):
the pipeline itself rescales its size to ``max_area`` pixels (default 1024 x 1024) at the same aspect
ratio, so compare with ``pipe(..., max_area=height * width)`` at other sizes.
"""

from __future__ import annotations

from torch import Tensor

from glass.pipelines.flux import FluxModel, image_ids, pack
from glass.pipelines.references import ReferenceImages, reference_images, vae_device

__all__ = ["FluxKontextModel", "prepare_kontext_reference"]


def prepare_kontext_reference(processor, vae_scale_factor: int, image, auto_resize: bool = True) -> Tensor:
    """One reference as ``FluxKontextPipeline.__call__`` prepares it: (1, 3, h, w) in [-1, 1]."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

    m = vae_scale_factor * 2
    if min(image.size) < max(m, processor.config.vae_scale_factor):
        raise ValueError(f"image: {image.width}×{image.height} is smaller than {m} pixels a side")
    height, width = processor.get_default_height_width(image)
    if auto_resize:
        aspect = width / height
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
    height, width = height // m * m, width // m * m
    return processor.preprocess(processor.resize(image, height, width), height, width)


class FluxKontextModel(ReferenceImages, FluxModel):
    family = "flux_kontext"
    pipelines = ("FluxKontextPipeline",)
    options = {"true_cfg_scale": 1.0, "image": None, "auto_resize": True}

    @classmethod
    def check_options(cls, options: dict) -> None:
        super().check_options(options)
        auto = options.get("auto_resize", True)
        if not isinstance(auto, bool):
            raise ValueError(f"auto_resize must be true or false, got {auto!r}")
        cls.one_reference(options.get("image"), decode=False)

    @staticmethod
    def one_reference(value, decode: bool = True) -> list:
        """One reference (a PIL image or a path, or a list of one), as the pipeline takes."""
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if isinstance(value, (list, tuple)):
            raise ValueError(
                f"image: FLUX.1 Kontext edits from one reference image, got a list of {len(value)} "
                "(FLUX.2 takes several)"
            )
        return reference_images(value, decode)

    def encode_reference(self, value) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """As the pipeline's ``prepare_latents``: encoded by the mode, (z - shift) x scale, packed;
        position ids (1, row, column), float (cast to the network's dtype with the tokens)."""
        from diffusers.pipelines.flux.pipeline_flux_kontext import retrieve_latents

        ((_, image),) = self.one_reference(value)
        pixels = prepare_kontext_reference(self.image_processor, self.vae_scale_factor, image,
                                           self.option["auto_resize"])  # fmt: skip
        vae = self.vae
        z = retrieve_latents(vae.encode(pixels.to(vae_device(vae), vae.dtype)), sample_mode="argmax")
        z = (z - vae.config.shift_factor) * vae.config.scaling_factor
        ids = image_ids(*z.shape[-2:], z.device)
        ids[:, 0] = 1
        return pack(z), ids, tuple(pixels.shape[-2:])
