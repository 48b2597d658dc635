"""Discrete-time UNet pipelines: Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``), SDXL
(``StableDiffusionXLPipeline``) and unconditional ``DDPMPipeline`` / ``DDIMPipeline`` (paper App. B.4).

A model trained on grid steps k with x_k = sqrt(abar_k) z + sqrt(1 - abar_k) eps lives on the paper's
VP path (alpha_t = sqrt(t), sigma_t = sqrt(1 - t)) at exactly t = abar_k, so no rescaling of x is
needed. Between grid times (GLASS's inner times t*) the network is evaluated at the fractional step
k(t), linear in log abar between neighbouring steps (the sinusoidal time embedding takes non-integer
steps); at grid times it is exactly k. Predictions ``epsilon``, ``v_prediction`` and ``sample`` are
converted to the denoiser in float64 (eqs. 26-27); classifier-free guidance (and the pipeline's
``guidance_rescale``) is applied to the prediction, as the pipelines do, and the scheduler's
``clip_sample`` / ``thresholding`` to the denoiser, as its step does.

The outer grid of K steps is the scheduler's: its noise levels t_k = 1 / (1 + sigma_k^2) where it has
``sigmas`` (Euler, DPM-Solver, UniPC, ...: Karras, exponential or beta sigmas as its step uses them),
else abar at its ``timesteps`` (DDIM, PNDM, DDPM; distinct steps: PNDM repeats its warm-up step),
ending at the scheduler's ``final_alpha_cumprod`` where it has one (DDIM, PNDM: abar_0 < 1 unless
``set_alpha_to_one``), or 1; a sample starts where the scheduler starts (its ``init_noise_sigma``:
:meth:`_UNetModel.start_std`). With a first-order scheduler (DDIM, Euler, DPM-Solver of order 1) one
ODE(method="ddim") step per interval is the pipeline's own sampler (eta = 0). DDIM and PNDM step from
timestep t to t - T // K (T training steps), which is their next timestep with ``leading`` spacing or
``trailing`` with K dividing T; otherwise glass steps between their timesteps and warns.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import ClassVar

import torch
from torch import Tensor

from glass.checks import check_number
from glass.models.base import Capabilities, to_denoiser, unit_images
from glass.pipelines.base import PipelineModel

__all__ = ["StableDiffusionModel", "SDXLModel", "DDPMModel", "fractional_step", "abar_at"]

PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
DISTILLED = ("LCMScheduler", "TCDScheduler")  # consistency-distilled samplers: refused


def fractional_step(t: Tensor, alphas_cumprod: Tensor, log_abar: Tensor | None = None) -> Tensor:
    """The (fractional) grid step k with abar_k = t: linear interpolation of k in log abar; clamped
    to [0, N-1]. Exact at grid times. ``alphas_cumprod`` on the host; ``log_abar`` (its flipped log)
    may be given already on t's device, saving a copy per call."""
    if log_abar is None:
        log_abar = alphas_cumprod.double().log().flip(0)  # increasing, index j = N-1-k
    n = len(log_abar)
    lt = t.double().clamp(float(alphas_cumprod[-1]), float(alphas_cumprod[0])).log()
    log_abar = log_abar.to(lt.device)
    j = torch.searchsorted(log_abar, lt).clamp(1, n - 1)
    lo, hi = log_abar[j - 1], log_abar[j]
    frac = ((lt - lo) / (hi - lo)).clamp(0, 1)
    return (n - 1) - (j - 1 + frac)


def abar_at(k: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """abar at (fractional) steps k: the inverse of :func:`fractional_step`."""
    log_abar = alphas_cumprod.double().log()
    k = k.double().clamp(0, len(log_abar) - 1)
    lo = k.floor().long().clamp(max=len(log_abar) - 2)
    frac = k - lo
    return ((1 - frac) * log_abar[lo] + frac * log_abar[lo + 1]).exp()


def _start_std(scheduler, t0: float) -> float:
    """The standard deviation in x (on the VP path) of the noise the scheduler starts from at its first
    noise level t0 = abar, sigma = sqrt((1 - t0) / t0) (see :meth:`_UNetModel.start_std`): its
    ``init_noise_sigma`` for those sigmas, times sqrt(t0) where the scheduler's variable is x / sqrt(abar)
    (it scales its model input)."""
    import math

    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(2, device="cpu")
    probe = torch.ones(1)
    scaled = not torch.equal(sched.scale_model_input(probe, sched.timesteps[0]), probe)
    if getattr(sched, "sigmas", None) is not None:  # init_noise_sigma reads its largest sigma
        sched.sigmas = torch.tensor([math.sqrt((1 - t0) / t0), 0.0])
    init = float(sched.init_noise_sigma)
    return init * math.sqrt(t0) if scaled else init


def _check_steps(sched, steps: Tensor, last: float, final: float) -> None:
    """Where the scheduler steps (DDIM, PNDM: from timestep t to t - T // K, T training steps, K steps,
    not to its next timestep; DDPM steps to the next). With ``leading`` spacing, or ``trailing`` with K
    dividing T, that is the next timestep and glass's grid (its timesteps, then its final abar) is the
    pipeline's own; otherwise glass steps between consecutive timesteps (a chain on one grid, which the
    pipeline's own sampler is not) and says so once. A spacing that ends at timestep 0 (``linspace``;
    ``leading`` with ``steps_offset=0`` where K divides T; ``trailing`` at K = T), which a final abar of
    abar_0 (``set_alpha_to_one=False``) repeats: no grid, refused."""
    name, spacing = type(sched).__name__, sched.config.get("timestep_spacing", "leading")
    if last >= final:
        fixes = ["set_alpha_to_one=True"] + (["steps_offset=1"] if spacing == "leading" else []) + (
            ["timestep_spacing='leading' or 'trailing'"] if spacing == "linspace" else [])  # fmt: skip
        raise ValueError(
            f"the scheduler {name} with timestep_spacing={spacing!r} ends at timestep {int(steps[-1])} at "
            f"{len(steps)} steps, the noise level its final step repeats (set_alpha_to_one=False): use "
            + ", or ".join(fixes)
        )
    if hasattr(sched, "previous_timestep"):  # DDPM: the next of its timesteps
        return
    k, ratio = len(steps), sched.config.num_train_timesteps // len(steps)
    targets = (steps - ratio).clamp(min=-1)
    nexts = torch.cat([steps[1:], torch.tensor([-1.0], dtype=steps.dtype)])
    off = int((targets - nexts).abs().max())
    if off > 0:
        warnings.warn(
            f"the scheduler {name} with timestep_spacing={spacing!r} steps from timestep t to t - {ratio} "
            f"at {k} steps, up to {off} training steps from its next timestep: glass steps between its "
            "timesteps, not the pipeline's own steps (its DDIM ODE is not the pipeline's own "
            "sampler); 'leading' spacing, or 'trailing' with a step count dividing "
            "num_train_timesteps, gives its own steps",
            stacklevel=2,
        )


class _UNetModel(PipelineModel):
    network = "unet"
    schedule_name = "vp"

    def _check_options(self) -> None:
        sched = self.scheduler
        continuous = sched.config.get("timestep_type", "discrete") != "discrete"
        if getattr(sched, "alphas_cumprod", None) is None or continuous:
            raise ValueError(
                f"the scheduler {type(sched).__name__} does not feed the {self.network} training-step "
                "indices (EDM sigmas or continuous timesteps, e.g. Playground v2.5, CosXL): not supported"
            )
        if any(c.__name__ in DISTILLED for c in type(sched).__mro__):  # LCM- / TCD-LoRA on a plain UNet
            raise ValueError(
                f"the scheduler {type(sched).__name__} samples a consistency-distilled UNet (LCM / TCD, "
                "e.g. a fused LCM-LoRA), whose prediction is the end of its ODE, not the denoiser "
                "E[x_1 | x_t] that GLASS transitions need: not supported; use its base model and scheduler"
            )
        prediction = self.scheduler.config.prediction_type
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"the scheduler's prediction_type must be one of {', '.join(PREDICTIONS)}, got {prediction!r}"
            )
        self.prediction = PREDICTIONS[prediction]
        if getattr(self.net.config, "time_cond_proj_dim", None) is not None:
            raise ValueError(
                f"the {self.network} has time_cond_proj_dim={self.net.config.time_cond_proj_dim} (a guidance-"
                "distilled UNet, e.g. LCM, conditioned on the guidance scale instead of classifier-free "
                "guidance): not supported; use its base model"
            )
        # a zero-terminal-SNR schedule (rescale_betas_zero_snr) ends at abar = 0 exactly, log abar = -inf:
        # 2^-24 there, as diffusers' EulerDiscreteScheduler does ("close to 0 without being 0")
        abar = self.scheduler.alphas_cumprod.double().cpu()
        self.alphas_cumprod = abar.masked_fill(abar == 0, 2.0**-24)
        self.guidance_rescale = check_number(
            "guidance_rescale", self.option.get("guidance_rescale", 0.0), minimum=0
        )
        # its step's treatment of the x_0 prediction (DDPM, DDIM), where its class has the option: a
        # scheduler made with from_config(another's config) carries keys its step never reads
        config, takes = self.scheduler.config, inspect.signature(type(self.scheduler).__init__).parameters
        threshold = "thresholding" in takes and bool(config.get("thresholding", False))
        clip = "clip_sample" in takes and bool(config.get("clip_sample", False))
        self.threshold = (float(config.get("dynamic_thresholding_ratio", 0.995)),
                          float(config.get("sample_max_value", 1.0))) if threshold else None  # fmt: skip
        self.clip_range = float(config.get("clip_sample_range", 1.0)) if clip else None

    def _clip(self, x0: Tensor) -> Tensor:
        """The x_0 prediction as the scheduler's own step uses it: dynamic thresholding (``thresholding``:
        each image's ``dynamic_thresholding_ratio`` quantile of |x_0|, at least 1, at most
        ``sample_max_value``, clamps and rescales it) or ``clip_sample`` (to ±``clip_sample_range``),
        else as it is. DDPMPipeline's default DDPMScheduler clips (google/ddpm-cifar10-32 among them),
        SD's schedulers do not. Every kernel then reads the clipped prediction as the denoiser: the DDPM
        kernel is DDPMScheduler's ancestral step, a DDIM step DDIMScheduler's with
        ``use_clipped_model_output``. Only options the scheduler's class takes count (a scheduler made
        by ``from_config`` of another's config carries keys its step never reads)."""
        if self.threshold is not None:
            ratio, largest = self.threshold
            flat = x0.reshape(len(x0), -1)
            s = torch.quantile(flat.abs(), ratio, dim=1).clamp(1, largest)[:, None]
            return (flat.clamp(-s, s) / s).reshape(x0.shape)
        return x0 if self.clip_range is None else x0.clamp(-self.clip_range, self.clip_range)

    def default_size(self, pipe) -> int:
        size = self.net.config.sample_size
        return int(size if isinstance(size, int) else size[0]) * self.vae_scale_factor

    def step_of(self, t: Tensor) -> Tensor:
        cache = self.__dict__.setdefault("_log_abar", {})  # per device: one copy, not one per call
        if t.device not in cache:
            cache[t.device] = self.alphas_cumprod.double().log().flip(0).to(t.device)
        return fractional_step(t, self.alphas_cumprod, cache[t.device])

    def grid(self, k: int) -> Tensor:
        """The scheduler's grid for k steps: its noise levels (``sigmas``, as its step uses them:
        Karras, exponential or beta sigmas included, whose rounded timesteps may repeat) as
        abar = 1 / (1 + sigma^2), or the abar of its distinct timesteps for a scheduler without sigmas
        (DDIM, PNDM, DDPM); then its final abar."""
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(k, device="cpu")
        sigmas = getattr(sched, "sigmas", None)
        sigmas = None if sigmas is None else torch.as_tensor(sigmas).double().cpu().unique_consecutive()[:k]
        final = float(getattr(sched, "final_alpha_cumprod", 1.0))
        if sigmas is not None and len(sigmas) == k and bool((sigmas > 0).all()):
            times = 1 / (1 + sigmas**2)
        else:  # distinct steps: PNDM (SD 1.5's scheduler, skip_prk_steps) repeats one for its warm-up
            steps = sched.timesteps.double().cpu().unique_consecutive()
            if len(steps) != k:  # PNDM without skip_prk_steps adds Runge-Kutta half steps
                raise ValueError(
                    f"the scheduler {type(sched).__name__} gives {len(steps)} distinct timesteps for {k} "
                    "steps (PNDM with skip_prk_steps=False takes Runge-Kutta half steps); set "
                    "skip_prk_steps=True or use a DDIMScheduler"
                )
            times = abar_at(steps, self.alphas_cumprod)
            _check_steps(sched, steps, float(times[-1]), final)
        return torch.cat([times, torch.tensor([final], dtype=torch.float64)])

    def start_std(self, t0: float) -> float:
        """Where the pipeline's scheduler starts at t0: N(0, init_noise_sigma^2) in its own variable,
        which is x / sqrt(abar) for a scheduler that scales its model input (Euler, Heun, LMS: std
        sqrt(sigma^2 + 1) sqrt(abar) = 1 with ``leading`` spacing, SD's default; sigma sqrt(abar) =
        sigma_{t0} with ``trailing``) and x itself for one that does not (DDIM, PNDM, DPM-Solver: 1).
        At t0 = 0 (a grid of the user's): sigma_0."""
        cache = self.__dict__.setdefault("_starts", {})
        if t0 not in cache:
            cache[t0] = _start_std(self.scheduler, t0) if t0 > 0 else super().start_std(t0)
        return cache[t0]

    def added(self, texts: list[dict], b: int) -> dict:
        return {}

    def _x0(self, x: Tensor, t: Tensor, prompts: list, negatives: list) -> Tensor:
        k = self.step_of(t).to(torch.float32)
        texts = self.guided_texts(prompts, negatives)
        n = len(texts)
        out = self.net(
            x.to(self.dtype).repeat(n, 1, 1, 1),
            k.repeat(n),
            encoder_hidden_states=torch.cat([e["embeds"] for e in texts]),
            return_dict=False,
            **self.added(texts, len(x)),
        )[0].double()
        out, text = self.guide(out, n)
        if n == 2 and self.guidance_rescale > 0:
            from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

            out = rescale_noise_cfg(out, text, guidance_rescale=self.guidance_rescale)
        return self._clip(to_denoiser(self.schedule, self.prediction, out, x, t))


class StableDiffusionModel(_UNetModel):
    family = "sd"
    pipelines = ("StableDiffusionPipeline",)
    default_guidance = 7.5
    options = {"guidance_rescale": 0.0}

    def _encode(self, texts: list) -> dict[str, Tensor]:
        texts = ["" if p is None else p for p in texts]  # the pipeline's negative: ""
        embeds, _ = self._text.encode_prompt(texts, self.device, 1, False)
        return {"embeds": embeds}


class SDXLModel(_UNetModel):
    family = "sdxl"
    pipelines = ("StableDiffusionXLPipeline",)
    default_guidance = 5.0
    options = {"guidance_rescale": 0.0}

    def _encode(self, texts: list) -> dict[str, Tensor]:
        given = ["" if p is None else p for p in texts]
        embeds, _, pooled, _ = self._text.encode_prompt(given, None, self.device, 1, False)
        if self._text.config.force_zeros_for_empty_prompt:  # the pipeline's negative: zeros
            none = torch.tensor([p is None for p in texts], device=embeds.device)
            embeds = torch.where(none[:, None, None], torch.zeros_like(embeds), embeds)
            pooled = torch.where(none[:, None], torch.zeros_like(pooled), pooled)
        return {"embeds": embeds, "pooled": pooled}

    def image_vae(self):
        """The stock SDXL VAE overflows in float16: where the pipeline upcasts it (a float16 VAE with
        ``force_upcast``), decode and encode with a float32 copy, made once; the pipe's VAE is left as
        it is (the pipeline casts its own to float32 and back)."""
        if self.vae.dtype != torch.float16 or not getattr(self.vae.config, "force_upcast", False):
            return self.vae
        if "_vae32" not in self.__dict__:
            self._vae32 = copy.deepcopy(self.vae).to(torch.float32)
        return self._vae32

    def _latent_stats(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        c = self.vae.config
        mean, std = getattr(c, "latents_mean", None), getattr(c, "latents_std", None)
        if mean is None or std is None:
            return None
        return tuple(torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
                     for v in (mean, std))  # fmt: skip

    def _to_vae(self, x: Tensor) -> Tensor:
        """As the SDXL pipelines: x std / scaling_factor + mean for a VAE with latents_mean / latents_std,
        x / scaling_factor otherwise."""
        stats = self._latent_stats(x)
        if stats is None:
            return super()._to_vae(x)
        return x * stats[1] / self.vae.config.scaling_factor + stats[0]

    def _from_vae(self, z: Tensor) -> Tensor:
        stats = self._latent_stats(z)
        if stats is None:
            return super()._from_vae(z)
        return (z - stats[0]) * self.vae.config.scaling_factor / stats[1]

    def added(self, texts: list[dict], b: int) -> dict:
        """SDXL's micro-conditioning: pooled text embeddings and (original size, crop, target size)."""
        size = (self.height, self.width)
        ids = torch.tensor([[*size, 0, 0, *size]], dtype=texts[0]["embeds"].dtype, device=self.device)
        return {
            "added_cond_kwargs": {
                "text_embeds": torch.cat([e["pooled"] for e in texts]),
                "time_ids": ids.repeat(b * len(texts), 1),
            }
        }


class DDPMModel(_UNetModel):
    """An unconditional UNet2DModel (``DDPMPipeline``, e.g. google/ddpm-cifar10-32, or ``DDIMPipeline``,
    which makes its scheduler a DDIMScheduler): pixels, no VAE. DDIMPipeline's own sampler (eta = 0) is
    glass's DDIM ODE with ``use_clipped_model_output=True``; by default (None) a clipping scheduler steps with
    the clipped x_0 but the network's unclipped noise, which no denoiser gives."""

    capabilities = Capabilities(latent=True, own_grid=True)

    family = "ddpm"
    pipelines = ("DDPMPipeline", "DDIMPipeline")
    conditioning = ()
    options: ClassVar[dict] = {}

    def uses_negative(self) -> bool:
        return False

    def _x0(self, x: Tensor, t: Tensor, prompts: list, negatives: list) -> Tensor:
        k = self.step_of(t).to(torch.float32)
        out = self.net(x.to(self.dtype), k, return_dict=False)[0].double()
        return self._clip(to_denoiser(self.schedule, self.prediction, out, x, t))

    def decode(self, x: Tensor) -> Tensor:
        return unit_images(x)

    def encode(self, images) -> Tensor:
        return images.double().to(self.device) * 2 - 1
