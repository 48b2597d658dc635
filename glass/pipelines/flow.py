"""Rectified-flow pipelines (FLUX, FLUX.2, SD3): the common time map and outer grid.

diffusers' flow pipelines run x_sigma = (1 - sigma) x0 + sigma eps from sigma = 1 (noise) to 0, and
the network predicts v = eps - x0. In our time t = 1 - sigma the velocity is u = -v, so on the
linear schedule (eq. 14)

    D_t(x) = x + (1 - t) u_t(x) = x - (1 - t) v(x, sigma = 1 - t).

The outer grid of K steps is the pipeline's: its sigmas (with the shift, or the resolution-dependent
``mu`` of dynamic shifting) from ``set_timesteps`` on a copy of its scheduler, t_k = 1 - sigma_k. One
Euler step of our ODE on that grid is the pipeline's ``FlowMatchEulerDiscreteScheduler.step``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from glass.models.base import to_denoiser
from glass.pipelines.base import PipelineModel

__all__ = ["FlowPipelineModel", "PatchedFlowModel", "calculate_shift"]


def calculate_shift(seq_len: int, config, max_shift_default: float = 1.15) -> float:
    """diffusers' ``calculate_shift``: mu linear in the number of image tokens."""
    lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    b_shift, m_shift = config.get("base_shift", 0.5), config.get("max_shift", max_shift_default)
    m = (m_shift - b_shift) / (hi - lo)
    return seq_len * m + b_shift - m * lo


class FlowPipelineModel(PipelineModel):
    """Base of the rectified-flow adapters (see the module docstring)."""

    def image_seq_len(self) -> int:
        """Image tokens, which set ``mu`` under dynamic shifting."""
        raise NotImplementedError

    def scheduler_kwargs(self, k: int) -> dict:
        """The arguments the pipeline hands to ``scheduler.set_timesteps`` for ``k`` steps."""
        raise NotImplementedError

    def grid(self, k: int) -> Tensor:
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(device="cpu", **self.scheduler_kwargs(k))
        sigmas = sched.sigmas.double().cpu()
        return 1 - sigmas

    def to_x0(self, v: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """The network's v = eps - x0 -> D_t(x) = x - (1 - t) v (eq. 14 with u = -v)."""
        return to_denoiser(self.schedule, "velocity", -v, x, t)  # our velocity is -v (time flip)

    @staticmethod
    def default_sigmas(k: int) -> np.ndarray:
        """FLUX-style pipelines: ``np.linspace(1.0, 1 / k, k)`` before the shift."""
        return np.linspace(1.0, 1 / k, k)

    def rows_with_negative(self, negatives: list) -> bool:
        """True CFG is on for a batch when every row has a negative prompt (mixed batches refused)."""
        given = [n is not None for n in negatives]
        if any(given) and not all(given):
            raise ValueError("negative_prompt is given for some samples and not others; give one for each")
        return all(given)


class PatchedFlowModel(FlowPipelineModel):
    """FLUX.1 and FLUX.2: the transformer sees 2x2 patches of the latents (4C channels a token), so
    latents have C = in_channels / 4 and even sides, and one image token per patch."""

    _text_ids: dict

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        s = self.vae_scale_factor
        return (int(self.net.config.in_channels) // 4, 2 * (height // (s * 2)), 2 * (width // (s * 2)))

    def size_multiple(self) -> int:
        return 2 * self.vae_scale_factor

    def image_seq_len(self) -> int:
        return self.shape[1] * self.shape[2] // 4

    def mu(self, k: int) -> float:
        """The pipeline's resolution-dependent shift for ``k`` steps."""
        raise NotImplementedError

    def scheduler_kwargs(self, k: int) -> dict:
        """As FluxPipeline and Flux2KleinPipeline call ``retrieve_timesteps``: their own sigmas
        ``linspace(1, 1/k, k)`` (unless the scheduler makes flow sigmas itself) and ``mu``."""
        if self.scheduler.config.get("use_flow_sigmas", False):
            return {"num_inference_steps": k, "mu": self.mu(k)}
        return {"sigmas": self.default_sigmas(k), "mu": self.mu(k)}

    def text_ids(self, length: int, columns: int, dtype: torch.dtype = torch.long) -> Tensor:
        """Position ids of ``length`` text tokens (all zero but, with 4 columns, the token index),
        built once per length and dtype."""
        key = (length, dtype)
        if key not in self._text_ids:
            ids = torch.zeros(length, columns, device=self.device, dtype=dtype)
            if columns == 4:
                ids[:, 3] = torch.arange(length, device=self.device)
            self._text_ids[key] = ids
        return self._text_ids[key]
