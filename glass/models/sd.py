"""Stable Diffusion 1.x / 2.x style UNets with DDPM-family schedulers as GLASS models (paper App. B.4).

A discrete-time model is trained on grid steps k = 0..N-1 with x_k = sqrt(abar_k) z + sqrt(1 - abar_k)
eps. On the paper's VP path (alpha_t = sqrt(t), sigma_t = sqrt(1 - t); ``schedule="vp"``) this is
exactly time t = abar_k, so no rescaling of x is needed: grid step k lives at t_k = abar_k, i.e.
t_k = g^{-1}(sigma_k^2 / alpha_k^2) with g(t) = (1 - t) / t.

GLASS evaluates the denoiser at the times t* of its inner steps, which generally fall between grid
times. The network is evaluated there at the fractional step k(t) obtained by interpolating k linearly
in log abar between neighbouring grid steps (the UNet's sinusoidal time embedding accepts
non-integer steps); at grid times it is exactly k. Times above abar_0 (less noise than the model was
trained on) use k = 0. Sampling grids start at t_min = abar_{N-1}: ``model.grid(K)``.

Prediction types: ``epsilon``, ``v_prediction`` (v = alpha eps - sigma z) and ``sample`` (x0),
converted to the denoiser on the schedule in float64 (eqs. 26-27).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.models.base import to_denoiser
from glass.models.latent import LatentModel, check_dtype, from_pretrained, load_vae, text_encoders
from glass.models.prompts import PromptCache

__all__ = ["StableDiffusion", "load_sd", "fractional_step"]

PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}


def fractional_step(t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """The (fractional) grid step k with abar_k = t: linear interpolation of k in log abar; clamped
    to [0, N-1]. Exact at grid times."""
    log_abar = alphas_cumprod.double().log().flip(0)  # increasing, index j = N-1-k
    n = len(log_abar)
    lt = t.double().clamp(float(alphas_cumprod[-1]), float(alphas_cumprod[0])).log()
    j = torch.searchsorted(log_abar.to(lt.device), lt).clamp(1, n - 1)
    lo, hi = log_abar.to(lt.device)[j - 1], log_abar.to(lt.device)[j]
    frac = ((lt - lo) / (hi - lo)).clamp(0, 1)
    return (n - 1) - (j - 1 + frac)


class StableDiffusion(LatentModel):
    def __init__(
        self,
        net,
        vae,
        alphas_cumprod: Tensor,
        prediction: str = "epsilon",
        prompt: dict | None = None,
        negative: dict | None = None,
        latent_shape: tuple[int, int, int] = (4, 64, 64),
        cfg_scale: float = 7.5,
        dtype: str = "float16",
        device: str = "cpu",
        chunk: int | None = None,
        scaling_factor: float | None = None,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction type must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        if cfg_scale != 1.0 and (prompt is None or negative is None):
            raise ValueError("model.cfg_scale != 1 needs a prompt and a negative prompt embedding")
        super().__init__(net, vae, latent_shape, "vp", dtype, device, cfg_scale, chunk, scaling_factor)
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.prediction = PREDICTIONS[prediction]
        self.prompt = {k: v.to(self.device, self.dtype) for k, v in (prompt or {}).items()} or None
        self.negative = {k: v.to(self.device, self.dtype) for k, v in (negative or {}).items()} or None
        self.t_min, self.t_max = float(self.alphas_cumprod[-1]), float(self.alphas_cumprod[0])

    def step_of(self, t: Tensor) -> Tensor:
        return fractional_step(t, self.alphas_cumprod)

    def _net(self, x: Tensor, k: Tensor, texts: list[dict] | None) -> Tensor:
        if texts is None:
            return self.net(x.to(self.dtype), k.to(torch.float32)).sample.double()
        b, n = len(x), len(texts)
        embeds = torch.cat([d["embeds"].expand(b, -1, -1) for d in texts])
        out = self.net(
            x.to(self.dtype).repeat(n, 1, 1, 1), k.to(torch.float32).repeat(n), encoder_hidden_states=embeds
        )
        return out.sample.double()

    def _x0(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        k = self.step_of(t)
        if self.prompt is None:
            out = self._net(x, k, None)
        elif self.cfg_scale == 1.0:
            out = self._net(x, k, [self.prompt])
        else:  # CFG on the prediction: affine in the denoiser for every prediction type
            neg, pos = self._net(x, k, [self.negative, self.prompt]).chunk(2)
            out = neg + self.cfg_scale * (pos - neg)
        return to_denoiser(self.schedule, self.prediction, out, x, t)

    def grid(self, k: int) -> Tensor:
        """K uniform transitions on [t_min, 1] (t_min = abar_{N-1}, the noisiest trained step)."""
        return torch.linspace(self.t_min, 1.0, k + 1, dtype=torch.float64)


def load_sd(
    model_id: str = "stable-diffusion-v1-5/stable-diffusion-v1-5",
    prompt: str | None = "a photo of a cat",
    negative_prompt: str | None = "",
    height: int = 512,
    width: int = 512,
    cfg_scale: float = 7.5,
    dtype: str = "float16",
    device: str = "cuda",
    chunk: int | None = None,
    cache_dir: str = "outputs/cache",
    unconditional: bool = False,
    attention_slicing: bool = False,
) -> StableDiffusion:
    """``model=sd``: UNet + scheduler (its alphas_cumprod and prediction type) + VAE from a hub id or
    local diffusers folder; the prompt encoded once with the CLIP text encoder and cached.
    ``unconditional=True`` loads a UNet2DModel pipeline (DDPM on CIFAR-10 style, no VAE, no text)."""
    import diffusers

    from glass.models.mnist import check_device

    check_device(device)
    torch_dtype = check_dtype(dtype)
    scheduler = from_pretrained(diffusers.DDPMScheduler, model_id, "scheduler", subfolder="scheduler")
    prediction = scheduler.config.prediction_type
    if unconditional:
        net = from_pretrained(
            diffusers.UNet2DModel, model_id, "UNet", subfolder="unet", torch_dtype=torch_dtype
        )
        c, size = net.config.in_channels, net.config.sample_size
        return StableDiffusion(net, None, scheduler.alphas_cumprod, prediction, None, None, (c, size, size),
                               1.0, dtype, device, chunk, scaling_factor=1.0)  # fmt: skip
    net = from_pretrained(
        diffusers.UNet2DConditionModel, model_id, "UNet", subfolder="unet", torch_dtype=torch_dtype
    )
    if attention_slicing:  # attention in slices: less peak memory, a little slower
        net.set_attention_slice("auto")
    vae = load_vae(model_id, device, dtype, subfolder="vae")
    texts = PromptCache(cache_dir, model_id, "sd")

    def encode(p: str) -> dict:
        drop = {"unet": None, "vae": None, "safety_checker": None}
        pipe = text_encoders("StableDiffusionPipeline", model_id, device, torch_dtype, **drop)
        with torch.no_grad():
            e, _ = pipe.encode_prompt(p, device, 1, False)
        return {"embeds": e.cpu()}

    if prompt is None:  # unconditional generation = the empty prompt, without guidance
        prompt, negative_prompt, cfg_scale = "", None, 1.0
    prompt_emb = texts.get(prompt, encode)
    negative = texts.get(negative_prompt, encode) if negative_prompt is not None else None
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (net.config.in_channels, height // scale, width // scale)
    model = StableDiffusion(net, vae, scheduler.alphas_cumprod, prediction, prompt_emb, negative, shape,
                            cfg_scale, dtype, device, chunk)  # fmt: skip
    model.prompt_text = prompt
    return model
