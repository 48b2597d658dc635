"""FLUX (Black Forest Labs; diffusers ``FluxTransformer2DModel``) as a GLASS model.

FLUX is a rectified flow in the opposite time direction: x_sigma = (1 - sigma) x0 + sigma eps with
sigma = 1 at noise, and the transformer predicts v = eps - x0 from sigma in [0, 1] (it scales by
1000 inside). In our time t = 1 - sigma the velocity is u = -v, so (eq. 14, linear schedule)

    D_t(x) = x + (1 - t) u_t(x) = x - (1 - t) v(x, sigma = 1 - t).

Latents (C, H, W) are packed into 2x2 patches (C*4 channels per token) with position ids, as
``FluxPipeline`` does. Guidance-distilled checkpoints (FLUX.1-dev, schnell: ``guidance_embeds``) get
the distilled guidance scale as an input; true classifier-free guidance (``cfg_scale`` > 1 with a
negative prompt) costs a second pass and is applied to v. Prompts are encoded once (T5 + CLIP) and
cached on disk; the text encoders are then dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.models.base import to_denoiser
from glass.models.latent import LatentModel, check_dtype, from_pretrained, load_vae, text_encoders
from glass.models.prompts import PromptCache

__all__ = ["Flux", "load_flux", "pack", "unpack", "image_ids", "time_shift"]


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


def time_shift(tokens: int, base: float = 0.5, top: float = 1.15, lo: int = 256, hi: int = 4096) -> float:
    """FLUX's resolution-dependent shift exp(mu), mu linear in the number of image tokens: the sampling
    grid sigma' = s sigma / (1 + (s - 1) sigma) that the pipeline uses."""
    import math

    mu = base + (top - base) * (tokens - lo) / (hi - lo)
    return math.exp(mu)


class Flux(LatentModel):
    """FLUX behind the denoiser interface (see the module docstring)."""

    def __init__(
        self,
        net,
        vae,
        prompt: dict,
        negative: dict | None = None,
        latent_shape: tuple[int, int, int] = (16, 128, 128),
        guidance_scale: float = 3.5,
        cfg_scale: float = 1.0,
        dtype: str = "bfloat16",
        device: str = "cpu",
        chunk: int | None = None,
        shift: float | None = None,
        offload: bool = False,
    ):
        c, h, w = latent_shape
        if h % 2 or w % 2:
            raise ValueError(f"FLUX latents need even height and width, got {h}x{w}")
        if net.config.in_channels != 4 * c:
            raise ValueError(f"the transformer takes {net.config.in_channels // 4} latent channels, not {c}")
        if cfg_scale != 1.0 and negative is None:
            raise ValueError("model.cfg_scale != 1 (true CFG) needs a negative prompt embedding")
        super().__init__(net, vae, latent_shape, "linear", dtype, device, cfg_scale, chunk, offload=offload)
        self.prompt = {k: v.to(self.device, self.dtype) for k, v in prompt.items()}
        self.negative = {k: v.to(self.device, self.dtype) for k, v in negative.items()} if negative else None
        self.guidance_scale = float(guidance_scale)
        self.ids = image_ids(h, w, self.device).to(self.dtype)
        self.txt_ids = torch.zeros(self.prompt["embeds"].shape[1], 3, device=self.device, dtype=self.dtype)
        self.shift = time_shift(h * w // 4) if shift is None else float(shift)

    def velocity_net(self, x: Tensor, sigma: Tensor, text: dict) -> Tensor:
        """The transformer's v = eps - x0 at noise level sigma, unpacked to (B, C, H, W)."""
        b, _, h, w = x.shape
        kw = dict(
            hidden_states=pack(x.to(self.dtype)),
            encoder_hidden_states=text["embeds"].expand(b, -1, -1),
            pooled_projections=text["pooled"].expand(b, -1),
            timestep=sigma.to(self.dtype),
            img_ids=self.ids,
            txt_ids=self.txt_ids,
            return_dict=False,
        )
        if getattr(self.net.config, "guidance_embeds", False):
            kw["guidance"] = torch.full((b,), self.guidance_scale, device=self.device, dtype=torch.float32)
        return unpack(self.net(**kw)[0], h, w).double()

    def _x0(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        sigma = 1 - t
        v = self.velocity_net(x, sigma, self.prompt)
        if self.cfg_scale != 1.0:  # true CFG: a second pass with the negative prompt
            v_neg = self.velocity_net(x, sigma, self.negative)
            v = v_neg + self.cfg_scale * (v - v_neg)
        return to_denoiser(self.schedule, "velocity", -v, x, t)  # our velocity is -v (time flip)


def load_flux(
    model_id: str = "black-forest-labs/FLUX.1-dev",
    prompt: str = "a photo of a cat",
    negative_prompt: str | None = None,
    height: int = 1024,
    width: int = 1024,
    guidance_scale: float = 3.5,
    cfg_scale: float = 1.0,
    dtype: str = "bfloat16",
    device: str = "cuda",
    chunk: int | None = None,
    cpu_offload: bool = False,
    cache_dir: str = "outputs/cache",
    max_sequence_length: int = 512,
) -> Flux:
    """``model=flux``: transformer + VAE from a hub id or a local diffusers folder; the prompt (and
    negative prompt) encoded once with the pipeline's T5 and CLIP encoders and cached under
    ``cache_dir``, after which the encoders are freed."""
    from diffusers import FluxTransformer2DModel

    from glass.models.mnist import check_device

    check_device(device)
    torch_dtype = check_dtype(dtype)
    net = from_pretrained(FluxTransformer2DModel, model_id, "FLUX transformer", subfolder="transformer",
                          torch_dtype=torch_dtype)  # fmt: skip
    vae = load_vae(model_id, device, dtype, subfolder="vae")
    texts = PromptCache(cache_dir, model_id, "flux", max_sequence_length)
    prompt_emb = texts.get(
        prompt, lambda p: _encode_flux(model_id, p, device, torch_dtype, max_sequence_length, cpu_offload)
    )
    negative = None
    if negative_prompt is not None:
        negative = texts.get(
            negative_prompt,
            lambda p: _encode_flux(model_id, p, device, torch_dtype, max_sequence_length, cpu_offload),
        )
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (net.config.in_channels // 4, 2 * (height // (scale * 2)), 2 * (width // (scale * 2)))
    model = Flux(net, vae, prompt_emb, negative, shape, guidance_scale, cfg_scale, dtype, device, chunk,
                 shift=_scheduler_shift(model_id, shape), offload=cpu_offload)  # fmt: skip
    model.prompt_text = prompt
    if cpu_offload:
        _offload(model)
    return model


def _encode_flux(model_id, prompt, device, dtype, max_len, cpu_offload) -> dict:
    pipe = text_encoders("FluxPipeline", model_id, device, dtype, cpu_offload, transformer=None, vae=None)
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(
            prompt, prompt_2=None, device=device, max_sequence_length=max_len
        )
    return {"embeds": embeds.cpu(), "pooled": pooled.cpu()}


def _scheduler_shift(model_id: str, shape: tuple[int, int, int]) -> float:
    """The checkpoint's own grid shift: resolution-dependent (FLUX.1-dev: use_dynamic_shifting) or its
    static ``shift`` (FLUX.1-schnell: 1, no shift). No scheduler config: the dev defaults."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    tokens = shape[1] * shape[2] // 4
    try:
        c = from_pretrained(
            FlowMatchEulerDiscreteScheduler, model_id, "FLUX scheduler", subfolder="scheduler"
        ).config
    except ValueError:
        return time_shift(tokens)
    if c.get("use_dynamic_shifting", False):
        return time_shift(tokens, c.get("base_shift", 0.5), c.get("max_shift", 1.15),
                          c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096))  # fmt: skip
    return float(c.get("shift", 1.0))


def _offload(model: LatentModel) -> None:
    """Sequential CPU offload of the network (accelerate hooks): slow, but fits small GPUs."""
    from glass.models.latent import require

    accelerate = require("accelerate", "pipelines")
    accelerate.cpu_offload(model.net, execution_device=model.device)
