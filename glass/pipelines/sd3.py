"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``).

No packing; the transformer takes the scheduler's timestep sigma x num_train_timesteps (1000; float32,
as the pipeline).
Classifier-free guidance (``guidance_scale > 1``, the pipeline's default 7.0; the negative prompt
defaults to the empty prompt, as in the pipeline) batches the unconditional and conditional passes.
The outer grid is the scheduler's (static shift, or ``mu`` under dynamic shifting).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.pipelines.flow import FlowPipelineModel, calculate_shift

__all__ = ["SD3Model"]


class SD3Model(FlowPipelineModel):
    family = "sd3"
    pipelines = ("StableDiffusion3Pipeline",)
    default_guidance = 7.0
    max_length = 256
    max_length_cap = 512  # the pipeline refuses more

    def size_multiple(self) -> int:
        return self.vae_scale_factor * int(self.net.config.patch_size)

    def image_seq_len(self) -> int:
        p = int(self.net.config.patch_size)
        return (self.shape[1] // p) * (self.shape[2] // p)

    def scheduler_kwargs(self, k: int) -> dict:
        c = self.scheduler.config
        kw = {"num_inference_steps": k}
        if c.get("use_dynamic_shifting", None):
            kw["mu"] = calculate_shift(self.image_seq_len(), c, max_shift_default=1.16)
        return kw

    def _encode(self, texts: list) -> dict[str, Tensor]:
        texts = ["" if p is None else p for p in texts]  # the pipeline's negative: negative_prompt or ""
        embeds, _, pooled, _ = self._text.encode_prompt(
            prompt=texts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": embeds, "pooled": pooled}

    def _x0(self, x: Tensor, t: Tensor, prompts: list, negatives: list) -> Tensor:
        sigma = 1 - t
        texts = self.guided_texts(prompts, negatives)
        n = len(texts)
        out = self.net(
            hidden_states=x.to(self.dtype).repeat(n, 1, 1, 1),
            timestep=(self.scheduler.config.num_train_timesteps * sigma).to(torch.float32).repeat(n),
            encoder_hidden_states=torch.cat([e["embeds"] for e in texts]),
            pooled_projections=torch.cat([e["pooled"] for e in texts]),
            return_dict=False,
        )[0].double()
        return self.to_x0(self.guide(out, n)[0], x, t)
