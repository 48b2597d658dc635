"""FLUX.2: klein (``Flux2KleinPipeline``) and [dev] (``Flux2Pipeline``).

The flow runs on patchified, batch-normalised VAE latents: the VAE's (B, 32, h, w) latents are cut
into 2x2 patches (B, 128, h/2, w/2) and normalised per channel by the VAE's ``bn`` running
statistics, which makes the prior N(0, I). ``x`` here is that normalised latent laid out *unpatchified*
(B, 32, h, w), the shape the VAE encodes to (a pure reshape of the flow's state, so the path and its
noise are unchanged). The transformer sees tokens (one per patch) with 4-D position ids, the timestep
sigma, no distilled guidance; classifier-free guidance (``guidance_scale > 1`` on undistilled
checkpoints, default 4.0) uses the empty prompt as the negative, as the pipeline does, or
``negative_prompt`` where one is given (the pipeline takes none), in a second pass. The grid's
``mu`` is the pipeline's empirical function of image tokens and steps.

Reference images (``image=``, a PIL image, a path, or a list of them; FLUX.2's editing and multi-reference
conditioning) are prepared as the pipeline prepares them (scaled down to 1024 x 1024 pixels at most,
cropped to a multiple of 16, VAE-encoded by the mode, patchified and normalised) and appended to the
image tokens of every network call with their own position ids (time coordinate 10, 20, ...); the
velocity is read from the generated image's tokens only. They also give the default size (the first
image's), as in the pipeline.

FLUX.2 [dev] is the same flow with a Mistral-3 text encoder (hidden states of layers 10, 20, 30) and
guidance distilled into the network: ``guidance_scale`` (default 4.0) is an input of the transformer
(``guidance_embeds``), one pass per step, and there is no negative prompt.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.pipelines.flow import PatchedFlowModel
from glass.pipelines.references import ReferenceImages, reference_images, vae_device

__all__ = ["Flux2KleinModel", "Flux2DevModel", "patchify", "unpatchify", "from_tokens", "empirical_mu"]


def patchify(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), the pipeline's ``_patchify_latents``."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unpatchify(x: Tensor) -> Tensor:
    """Inverse of :func:`patchify` (the pipeline's ``_unpatchify_latents``)."""
    b, c, h, w = x.shape
    return x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)


def from_tokens(tokens: Tensor, h: int, w: int) -> Tensor:
    """Tokens (B, h/2 * w/2, 4C), one per 2x2 patch in row-major order (the pipeline's
    ``_pack_latents``) -> latents (B, C, h, w), unpatchified."""
    return unpatchify(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h // 2, w // 2))


def empirical_mu(image_seq_len: int, num_steps: int) -> float:
    """The pipeline's ``compute_empirical_mu``: the grid's shift from tokens and steps."""
    a1, b1, a2, b2 = 8.73809524e-05, 1.89833333, 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return float(a2 * image_seq_len + b2)
    m_200, m_10 = a2 * image_seq_len + b2, a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    return float(a * num_steps + m_200 - 200.0 * a)


def check_reference(name: str, image) -> None:
    """The pipeline's own check of a reference (``Flux2ImageProcessor.check_image_input``), one line."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    try:
        Flux2ImageProcessor.check_image_input(image)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def prepare_reference(processor, vae_scale_factor: int, name: str, image) -> Tensor:
    """One reference image as the pipeline prepares it: checked (at least 64 pixels a side, aspect ratio
    at most 8), scaled down to 1024 x 1024 pixels at most, cropped to a multiple of 2 x the VAE's scale
    factor, preprocessed to (1, 3, h, w) in [-1, 1]."""
    check_reference(name, image)
    w, h = image.size
    if w * h > 1024 * 1024:
        image = processor._resize_to_target_area(image, 1024 * 1024)
        w, h = image.size
    m = vae_scale_factor * 2
    return processor.preprocess(image, height=h // m * m, width=w // m * m, resize_mode="crop")


def encode_references(vae, pixels: list) -> tuple[Tensor, Tensor]:
    """Prepared references -> (tokens (1, N, 4C), position ids (1, N, 4)), the pipeline's
    ``prepare_image_latents``: each VAE-encoded by the mode on the VAE's device in its dtype, patchified,
    normalised by ``bn`` in that dtype, one token a patch; the i-th image's time coordinate is 10 (i + 1)."""
    from diffusers.pipelines.flux2.pipeline_flux2 import retrieve_latents

    device, dtype = vae_device(vae), vae.dtype
    tokens, ids = [], []
    for i, image in enumerate(pixels):
        z = patchify(retrieve_latents(vae.encode(image.to(device, dtype)), sample_mode="argmax"))
        bn, eps = vae.bn, vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(z.device, z.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps).to(z.device, z.dtype)
        z = (z - mean) / std
        _, c, h, w = z.shape
        tokens.append(z.reshape(c, h * w).T)
        ids.append(torch.cartesian_prod(torch.tensor([10 * (i + 1)]), torch.arange(h), torch.arange(w),
                                        torch.arange(1)))  # fmt: skip
    return torch.cat(tokens)[None], torch.cat(ids)[None]


class Flux2KleinModel(ReferenceImages, PatchedFlowModel):
    family = "flux2"
    pipelines = ("Flux2KleinPipeline",)
    default_guidance = 4.0
    max_length = 512
    options = {"image": None}
    sets_default_size = True

    @classmethod
    def check_options(cls, options: dict) -> None:
        super().check_options(options)
        for name, image in reference_images(options.get("image"), decode=False):  # headers only
            check_reference(name, image)

    def encode_reference(self, value) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """As the pipeline: each image prepared (:func:`prepare_reference`), then encoded together
        (:func:`encode_references`); the size is the first one's."""
        pixels = [prepare_reference(self.image_processor, self.vae_scale_factor, *im)
                  for im in reference_images(value)]  # fmt: skip
        tokens, ids = encode_references(self.vae, pixels)
        return tokens, ids, tuple(pixels[0].shape[-2:])

    def _check_options(self) -> None:
        super()._check_options()  # the references on the network's device, in its dtype
        _, h, w = self.shape
        t, hh, ww, layer = torch.arange(1), torch.arange(h // 2), torch.arange(w // 2), torch.arange(1)
        self.ids = torch.cartesian_prod(t, hh, ww, layer).to(self.device)[None]  # (1, tokens, 4)
        bn = self.vae.bn
        self.bn_mean = bn.running_mean.detach().double().view(1, -1, 1, 1).to(self.device)
        self.bn_std = torch.sqrt(
            bn.running_var.detach().double().view(1, -1, 1, 1) + self.vae.config.batch_norm_eps
        ).to(self.device)
        self._text_ids = {}
        self.distilled = bool(getattr(self._text.config, "is_distilled", False))

    def uses_negative(self) -> bool:
        return self.guidance_scale > 1 and not self.distilled

    negative_needs = "guidance_scale > 1 on an undistilled checkpoint"

    def mu(self, k: int) -> float:
        return empirical_mu(self.image_seq_len(), k)

    def _encode(self, texts: list) -> dict[str, Tensor]:
        embeds, _ = self._text.encode_prompt(
            prompt=["" if p is None else p for p in texts],
            device=self.device,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": embeds}

    def network_velocity(self, x: Tensor, sigma: Tensor, text: dict, refs: tuple | None = None) -> Tensor:
        """The network's velocity at ``x``; ``refs``: the reference images' (tokens, ids), or None."""
        b, _, h, w = x.shape
        tokens = patchify(x.to(self.dtype)).flatten(2).transpose(1, 2)  # (B, h/2 * w/2, 4C)
        embeds = text["embeds"]
        txt_ids = self.text_ids(embeds.shape[1], 4)[None].expand(b, -1, -1)
        inputs, img_ids = tokens, self.ids.expand(b, -1, -1)
        if refs is not None:  # reference images: extra tokens, read nothing back from them
            inputs = torch.cat([tokens, refs[0].expand(b, -1, -1)], dim=1)
            img_ids = torch.cat([img_ids, refs[1].expand(b, -1, -1)], dim=1)
        out = self.net(
            hidden_states=inputs,
            timestep=(1000 * sigma).float().to(self.dtype) / 1000,  # the pipeline's t / 1000, rounded alike
            guidance=self.guidance_input(b),
            encoder_hidden_states=embeds,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0][:, : tokens.shape[1]]
        return from_tokens(out, h, w).double()

    def guidance_input(self, b: int) -> Tensor | None:
        """The transformer's ``guidance``: none (klein's pipeline passes None whatever the checkpoint's
        config says)."""
        return None

    def guided_velocity(self, x: Tensor, sigma: Tensor, prompts: list, negatives: list, refs) -> Tensor:
        v = self.network_velocity(x, sigma, self.embeddings(prompts), refs)
        if self.uses_negative():
            v_neg = self.network_velocity(x, sigma, self.embeddings(negatives), refs)
            v = v_neg + self.guidance_scale * (v - v_neg)
        return v

    # the flow's latents <-> the VAE's
    def _to_vae(self, x: Tensor) -> Tensor:
        return unpatchify(patchify(x) * self.bn_std + self.bn_mean)

    def _from_vae(self, z: Tensor) -> Tensor:
        return unpatchify((patchify(z) - self.bn_mean) / self.bn_std)

    def pipeline_latents(self, x: Tensor) -> Tensor:
        """Our x -> the pipeline's ``latents=`` argument (patchified, normalised)."""
        return patchify(x)

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        """The pipeline's ``output_type="latent"`` output (VAE units, unpatchified) -> our x."""
        return self._from_vae(latents.double())


class Flux2DevModel(Flux2KleinModel):
    """FLUX.2 [dev] (``Flux2Pipeline``): klein's flow and latents, the guidance scale an input of the
    network (one pass per step, no classifier-free guidance, no negative prompt)."""

    family = "flux2_dev"
    pipelines = ("Flux2Pipeline",)
    default_guidance = 4.0

    def uses_negative(self) -> bool:
        return False

    negative_needs = "none on FLUX.2 [dev], whose guidance is distilled into the network"

    def guidance_input(self, b: int) -> Tensor:
        """The scale per row, float32, as the pipeline passes it (a network without a guidance
        embedder ignores it)."""
        return torch.full((b,), self.guidance_scale, device=self.device, dtype=torch.float32)

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        """The pipeline's ``output_type="latent"`` output, the flow's state as it left the loop (packed
        tokens, normalised; klein's pipeline unpacks and denormalises first)."""
        return from_tokens(latents, *self.shape[1:]).double()
