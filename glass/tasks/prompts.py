"""Prompt sets for the tasks that sample a text-conditioned model (``task.prompts=FILE``).

Every prompt of the set (or of ``prompt_range``) gets ``per_prompt`` outputs. The runner computes a
prompt set one prompt at a time (:mod:`glass.promptrun`: resumable, shardable over processes), each
prompt with its own seed, so a prompt's outputs do not depend on the slice, shard or resume they are
computed in. The tasks hand the prompt to the model as per-sample conditioning (``generate``) or per
group (FK steering, best-of-N, guidance), so the model, loaded once, serves every prompt.
"""

from __future__ import annotations

import copy

from glass.checks import check_int
from glass.models.base import capabilities_of
from glass.promptsets import PromptRecord, parse_range, read_prompts

__all__ = ["PromptOptions"]


class PromptOptions:
    """``prompts`` (a file, see :mod:`glass.promptsets`), ``per_prompt`` outputs each, ``prompt_range``."""

    def __init__(self, prompts: str | None = None, per_prompt: int = 1, prompt_range: str | None = None,
                 save_latents: bool = False):  # fmt: skip
        self.per_prompt = check_int("per_prompt", per_prompt, 1)
        if not isinstance(save_latents, bool):
            raise ValueError(f"save_latents must be true or false, got {save_latents!r}")
        self.save_latents = save_latents
        if prompts is None and prompt_range is not None:
            raise ValueError("prompt_range selects prompts of a prompt file: set task.prompts=FILE too")
        if prompts is None and (self.per_prompt != 1 or save_latents):
            what = "per_prompt" if self.per_prompt != 1 else "save_latents"
            raise ValueError(
                f"{what} applies to a prompt set: set task.prompts=FILE too (alone it does nothing)"
            )
        self.path = prompts
        self.records: list[PromptRecord] | None = None
        self.file_prompts = 0  # prompts in the whole file (a range selects some of them)
        self.sha256 = None  # of the file as read (glass.config.config_hash names the run by it)
        if prompts is not None:
            full, self.sha256 = read_prompts(prompts)
            self.records = [full[i] for i in parse_range(prompt_range, len(full))]
            self.file_prompts = len(full)

    def __bool__(self) -> bool:
        return self.records is not None

    def check(self, model) -> None:
        if self and not capabilities_of(model).prompts:
            raise ValueError(
                f"task.prompts={self.path} needs a text-conditioned model (model=flux, flux2, flux2_dev, "
                "sd3, sd or sdxl), "
                f"got {type(model).__name__}"
            )

    def texts(self) -> list[str]:
        return [] if not self else [r.prompt for r in self.records]

    def per_output(self, model, n: int) -> tuple[list[str], int]:
        """(the prompt of each of ``n`` outputs, outputs per prompt): the set's, or without a set the
        model's default prompt for all ``n`` (one group)."""
        if self:
            return self.cond()["prompt"], self.per_prompt
        return [model.prompt_text] * n, n

    def outputs(self) -> int:
        return len(self.records) * self.per_prompt

    def cond(self) -> dict:
        """``prompt=`` per output ({} without a prompt set)."""
        if not self:
            return {}
        return {"prompt": [r.prompt for r in self.records for _ in range(self.per_prompt)]}

    def only(self, records: list[PromptRecord]) -> PromptOptions:
        """The same options on some of the set's prompts (a prompt-set run computes one at a time)."""
        one = copy.copy(self)
        one.records = list(records)
        return one
