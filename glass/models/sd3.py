"""Stable Diffusion 3 / 3.5 (diffusers ``SD3Transformer2DModel``) as a GLASS model.

Same rectified-flow convention as FLUX (x_sigma = (1 - sigma) x0 + sigma eps, v = eps - x0, our
t = 1 - sigma, D_t(x) = x - (1 - t) v), but no latent packing and the transformer takes the
scheduler's timestep sigma x 1000. Classifier-free guidance (the SD3 default, cfg_scale = 7 with
an empty negative prompt) batches the conditional and unconditional passes. The scheduler's static
shift s gives the default grid sigma' = s sigma / (1 + (s - 1) sigma).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.models.base import to_denoiser
from glass.models.latent import LatentModel, check_dtype, from_pretrained, load_vae, text_encoders
from glass.models.prompts import PromptCache

__all__ = ["SD3", "load_sd3"]


class SD3(LatentModel):
    def __init__(
        self,
        net,
        vae,
        prompt: dict,
        negative: dict | None = None,
        latent_shape: tuple[int, int, int] = (16, 128, 128),
        cfg_scale: float = 7.0,
        dtype: str = "bfloat16",
        device: str = "cpu",
        chunk: int | None = None,
        shift: float = 3.0,
    ):
        if cfg_scale != 1.0 and negative is None:
            raise ValueError(
                "model.cfg_scale != 1 needs a negative prompt embedding (an empty prompt is fine)"
            )
        super().__init__(net, vae, latent_shape, "linear", dtype, device, cfg_scale, chunk)
        self.prompt = {k: v.to(self.device, self.dtype) for k, v in prompt.items()}
        self.negative = {k: v.to(self.device, self.dtype) for k, v in negative.items()} if negative else None
        self.shift = float(shift)

    def velocity_net(self, x: Tensor, sigma: Tensor, texts: list[dict]) -> Tensor:
        """v = eps - x0 for each text in ``texts``, batched in one pass; returns (len(texts) * B, ...)."""
        b = len(x)
        embeds = torch.cat([d["embeds"].expand(b, -1, -1) for d in texts])
        pooled = torch.cat([d["pooled"].expand(b, -1) for d in texts])
        n = len(texts)
        out = self.net(
            hidden_states=x.to(self.dtype).repeat(n, 1, 1, 1),
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            timestep=(1000 * sigma).to(torch.float32).repeat(n),  # as the pipeline: float32 steps
            return_dict=False,
        )[0]
        return out.double()

    def _x0(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        sigma = 1 - t
        if self.cfg_scale == 1.0:
            v = self.velocity_net(x, sigma, [self.prompt])
        else:
            v_neg, v_pos = self.velocity_net(x, sigma, [self.negative, self.prompt]).chunk(2)
            v = v_neg + self.cfg_scale * (v_pos - v_neg)
        return to_denoiser(self.schedule, "velocity", -v, x, t)  # our velocity is -v (time flip)


def load_sd3(
    model_id: str = "stabilityai/stable-diffusion-3.5-medium",
    prompt: str = "a photo of a cat",
    negative_prompt: str | None = "",
    height: int = 1024,
    width: int = 1024,
    cfg_scale: float = 7.0,
    dtype: str = "bfloat16",
    device: str = "cuda",
    chunk: int | None = None,
    cache_dir: str = "outputs/cache",
    max_sequence_length: int = 256,
) -> SD3:
    """``model=sd3``: transformer + VAE from a hub id or local folder; prompts encoded once (CLIP-L,
    CLIP-G, T5) and cached; the scheduler's shift read from its config."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    from glass.models.mnist import check_device

    check_device(device)
    torch_dtype = check_dtype(dtype)
    net = from_pretrained(SD3Transformer2DModel, model_id, "SD3 transformer", subfolder="transformer",
                          torch_dtype=torch_dtype)  # fmt: skip
    vae = load_vae(model_id, device, dtype, subfolder="vae")
    scheduler = from_pretrained(
        FlowMatchEulerDiscreteScheduler, model_id, "SD3 scheduler", subfolder="scheduler"
    )
    texts = PromptCache(cache_dir, model_id, "sd3", max_sequence_length)

    def encode(p: str) -> dict:
        pipe = text_encoders(
            "StableDiffusion3Pipeline", model_id, device, torch_dtype, transformer=None, vae=None
        )
        with torch.no_grad():
            e, _, pooled, _ = pipe.encode_prompt(p, p, p, device=device, do_classifier_free_guidance=False,
                                                 max_sequence_length=max_sequence_length)  # fmt: skip
        return {"embeds": e.cpu(), "pooled": pooled.cpu()}

    prompt_emb = texts.get(prompt, encode)
    negative = texts.get(negative_prompt, encode) if negative_prompt is not None else None
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (net.config.in_channels, height // scale, width // scale)
    model = SD3(net, vae, prompt_emb, negative, shape, cfg_scale, dtype, device, chunk,
                shift=float(scheduler.config.get("shift", 3.0)))  # fmt: skip
    model.prompt_text = prompt
    return model
