"""FLUX.1 (``FluxPipeline``): dev, schnell and their fine-tunes.

Latents (C, h, w) are packed into 2x2 patches (4C channels per token) with position ids inside the
adapter, as ``FluxPipeline`` does; ``x`` stays unpacked. Guidance-distilled checkpoints
(``guidance_embeds``: dev) take ``guidance_scale`` as a network input; true classifier-free guidance
(``true_cfg_scale > 1`` with a negative prompt) costs a second pass and is applied to v, exactly as
the pipeline does. The timestep is sigma (the pipeline's ``t / 1000``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.checks import check_number
from glass.pipelines.flow import PatchedFlowModel, calculate_shift

__all__ = ["FluxModel", "pack", "unpack", "image_ids"]


def pack(x: Tensor) -> Tensor:
    """(B, C, H, W) latents -> (B, H/2 * W/2, 4C) tokens of 2x2 patches (FluxPipeline's layout)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`pack` for latents of size (h, w)."""
    b, _, d = tokens.shape
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device=None) -> Tensor:
    """Position ids (h/2 * w/2, 3) of the packed tokens: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3, device=device)
    ids[..., 1] += torch.arange(h // 2, device=device)[:, None]
    ids[..., 2] += torch.arange(w // 2, device=device)[None, :]
    return ids.reshape(-1, 3)


class FluxModel(PatchedFlowModel):
    family = "flux"
    pipelines = ("FluxPipeline",)
    default_guidance = 3.5  # distilled guidance (an input of dev's network)
    max_length = 512
    max_length_cap = 512  # the pipeline refuses more
    options = {"true_cfg_scale": 1.0}

    def _check_options(self) -> None:
        self.true_cfg_scale = check_number("true_cfg_scale", self.option["true_cfg_scale"], minimum=0)
        _, h, w = self.shape
        self.ids = image_ids(h, w, self.device).to(self.dtype)
        self._text_ids = {}

    def uses_negative(self) -> bool:
        return self.true_cfg_scale > 1

    negative_needs = "true_cfg_scale > 1"

    def mu(self, k: int) -> float:
        return calculate_shift(self.image_seq_len(), self.scheduler.config)

    def _encode(self, texts: list) -> dict[str, Tensor]:
        embeds, pooled, _ = self._text.encode_prompt(
            prompt=["" if p is None else p for p in texts],
            prompt_2=None,
            device=self.device,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": embeds, "pooled": pooled}

    def network_velocity(self, x: Tensor, sigma: Tensor, text: dict, refs: tuple | None = None) -> Tensor:
        """The transformer's v = eps - x0 at noise level sigma, unpacked to (B, C, h, w); ``refs``:
        reference tokens (1, N, 4C) and their ids (N, 3) appended to the image's (FLUX.1 Kontext)."""
        b, _, h, w = x.shape
        embeds = text["embeds"]
        kw = {}
        if self.net.config.guidance_embeds:
            kw["guidance"] = torch.full((b,), self.guidance_scale, device=self.device, dtype=torch.float32)
        tokens, ids = pack(x.to(self.dtype)), self.ids
        inputs = tokens if refs is None else torch.cat([tokens, refs[0].expand(b, -1, -1)], dim=1)
        out = self.net(
            hidden_states=inputs,
            timestep=(1000 * sigma).float().to(self.dtype) / 1000,  # the pipeline's t / 1000, rounded alike
            pooled_projections=text["pooled"],
            encoder_hidden_states=embeds,
            txt_ids=self.text_ids(embeds.shape[1], 3, embeds.dtype),
            img_ids=ids if refs is None else torch.cat([ids, refs[1]]),
            return_dict=False,
            **kw,
        )[0][:, : tokens.shape[1]]
        return unpack(out, h, w).double()

    def guided_velocity(
        self, x: Tensor, sigma: Tensor, prompts: list, negatives: list, refs=None
    ) -> Tensor:
        """The velocity of one batch, with true CFG against the negatives where every row has one."""
        v = self.network_velocity(x, sigma, self.embeddings(prompts), refs)
        if self.true_cfg_scale > 1 and self.rows_with_negative(negatives):
            v_neg = self.network_velocity(x, sigma, self.embeddings(negatives), refs)
            v = v_neg + self.true_cfg_scale * (v - v_neg)
        return v

    def _x0(self, x: Tensor, t: Tensor, prompts: list, negatives: list) -> Tensor:
        return self.to_x0(self.guided_velocity(x, 1 - t, prompts, negatives), x, t)

    def pipeline_latents(self, x: Tensor) -> Tensor:
        """Our x -> the pipeline's ``latents=`` argument (packed tokens)."""
        return pack(x)

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        return unpack(latents, *self.shape[1:]).double()
