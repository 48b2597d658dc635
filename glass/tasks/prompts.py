"""Prompt sets for the tasks that sample a text-conditioned model (``task.prompts=FILE``).

Every prompt of the set (or of ``prompt_range``) gets ``per_prompt`` outputs. The runner computes a
prompt set one prompt at a time (:mod:`glass.promptrun`: resumable, shardable over processes), each
prompt with its own seed, so a prompt's outputs do not depend on the slice, shard or resume they are
computed in. The tasks hand the prompt to the model as per-sample conditioning (``generate``) or per
group (FK steering, best-of-N, guidance), so the model, loaded once, serves every prompt.

A record's ``image`` field (JSONL: a path or a list of paths; CSV / TSV: an ``image`` column, one path
a row, empty for none) gives that prompt its own reference images, an editing benchmark's source
image: paths are relative to the prompt file's folder, and the model must take references (FLUX.2,
FLUX.1 Kontext: ``image=`` conditioning; they replace ``model.image`` for that prompt, and a prompt
without one keeps ``model.image``). The output size stays the run's (``model.height`` / ``width``, or
``model.image``'s).
"""

from __future__ import annotations

import copy

from glass.checks import check_int
from glass.models.base import capabilities_of
from glass.promptsets import (
    IMAGE_FIELD,
    PromptRecord,
    images_sha256,
    parse_range,
    read_prompts,
    record_images,
)

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
        self.images: dict[int, str | list | None] = {}  # each prompt's reference images (by its index)
        if prompts is not None:
            full, self.sha256 = read_prompts(prompts)
            self.records = [full[i] for i in parse_range(prompt_range, len(full))]
            self.file_prompts = len(full)
            self.images = {r.index: record_images(prompts, r) for r in full}  # the whole file's
            self._check_files()

    def __bool__(self) -> bool:
        return self.records is not None

    def check(self, model) -> None:
        if self and not capabilities_of(model).prompts:
            raise ValueError(
                f"task.prompts={self.path} needs a text-conditioned model (model=flux, flux_kontext, flux2, "
                "flux2_dev, sd3, sd or sdxl), "
                f"got {type(model).__name__}"
            )
        self._check_images(model)

    def _check_files(self) -> None:
        """Every reference image the file names is a file PIL can read (headers only: before the model
        loads; what FLUX.2 needs of an image, :meth:`check` says once it has)."""
        from glass.pipelines.references import reference_images

        for index, images in self.images.items():
            try:
                reference_images(images, decode=False)
            except ValueError as e:
                raise ValueError(
                    f"prompts: {self.path} prompt {index}: {e} (the {IMAGE_FIELD} field names "
                    "reference images; rename it to keep it as metadata)"
                ) from None

    def _check_images(self, model) -> None:
        """The selected prompts' reference images: a model that takes them, and images it can use
        (headers only, before any prompt runs)."""
        given = {r.index: self.images[r.index] for r in self.records or () if self.images[r.index]}
        if not given:
            return
        if IMAGE_FIELD not in (getattr(model, "conditioning", None) or ()):
            raise ValueError(
                f"task.prompts={self.path} gives reference images ({IMAGE_FIELD} field) for "
                f"{len(given)} prompt{'s' if len(given) > 1 else ''}; {type(model).__name__} takes none "
                "(model=flux2, flux2_dev or flux_kontext does): rename the field to keep it as metadata"
            )
        for index, images in given.items():
            try:
                type(model).check_options({IMAGE_FIELD: images})
            except ValueError as e:
                raise ValueError(f"prompts: {self.path} prompt {index}: {e}") from None

    def images_digest(self) -> str | None:
        """The sha256 of every reference image the file names (None: it names none): recorded in the
        job's config (``task.prompt_images_sha256``), so an image edited in place is another run."""
        return images_sha256(self.path, list(self.images.values()))

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
        """``prompt=`` per output, and ``image=`` where a prompt names references ({} without a set)."""
        if not self:
            return {}
        cond = {"prompt": [r.prompt for r in self.records for _ in range(self.per_prompt)]}
        if any(self.images[r.index] for r in self.records):
            cond[IMAGE_FIELD] = [self.images[r.index] for r in self.records for _ in range(self.per_prompt)]
        return cond

    def only(self, records: list[PromptRecord]) -> PromptOptions:
        """The same options on some of the set's prompts (a prompt-set run computes one at a time)."""
        one = copy.copy(self)
        one.records = list(records)
        return one
