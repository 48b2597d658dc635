"""What every task returns, and the pieces tasks share."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from torch import Tensor

from glass.checks import check_finite, check_int, check_time
from glass.models.base import capabilities_of
from glass.paths import noise_to

__all__ = [
    "Task", "Result", "check_int", "check_time", "check_finite", "is_oracle", "noise_to",
    "check_gaussian_path", "scoring",
]  # fmt: skip


@contextlib.contextmanager
def scoring(inputs: dict):
    """Around the metric a ``run_kernel`` computes: its time is left out of the kernel's
    ``kernel_time_s``, which is the sampling alone (the first kernel of a comparison would otherwise
    pay the metric's one-time costs: an import, the FID reference statistics)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        inputs["_scoring_s"] = inputs.get("_scoring_s", 0.0) + time.perf_counter() - start


def check_gaussian_path(model, task_name: str) -> None:
    """Tasks that noise data or run stochastic transitions need x_t = alpha_t z + sigma_t eps."""
    if not getattr(model, "gaussian_path", True):
        raise ValueError(
            f"task={task_name} needs a Gaussian probability path, and {model!r} has a designed prior "
            "(use task=generate with sampler=ode)"
        )


@dataclass
class Result:
    """``rows``: one dict of metrics per kernel (``sampler`` label, ``nfe`` and the metric values);
    ``samples``: kernel label -> its outputs; the arrays the plots need in ``extra``."""

    rows: list[dict]
    samples: dict[str, Tensor]
    reference: Tensor | None = None
    extra: dict = field(default_factory=dict)


class Task:
    """A task makes its inputs once, then runs every kernel of the sampler on them (the same inputs,
    the same random stream), one row per kernel. The loop (NFE reset, run, finite check, row, outputs
    by label, progress) is written here once; a task writes its hooks:

    - ``inputs(model, metric, generator, reward, progress)`` -> what every kernel gets (a dict);
    - ``run_kernel(model, kernel, inputs, advance)`` -> (outputs, row without the ``sampler`` label);
    - ``finish(model, inputs, outputs, generator)`` -> (reference, extra) for the plots;
    - ``units(model, inputs)``: progress steps per kernel (1: the loop advances once per kernel;
      more: ``run_kernel`` advances itself);
    - ``describe(label, inputs)``: where a NaN is reported.
    Called when a run is prepared: ``check(model, reward)`` (refuse mismatches) and ``sizes(model)``
    (sizes that depend on the model). ``needs_reward``: whether the task scores a reward.
    """

    name = "task"
    needs_reward = True
    prompts = None  # a prompt set (glass.tasks.prompts.PromptOptions) on the tasks that take one

    def check(self, model, reward) -> None:
        """Refuse a model or reward the task cannot use (ValueError), when the run is prepared."""

    def texts(self) -> list[str]:
        """The prompts the task will condition on (encoded before the run starts)."""
        return []

    def sizes(self, model):
        """Sizes that depend on the model, checked when the run is prepared."""
        return None

    def budget(self, model) -> tuple[int, int, str] | None:
        """(sample paths held in memory at once, transitions per path, the options that set them) for
        :func:`check_budget`; None: nothing to check."""
        return None

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        raise NotImplementedError

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        raise NotImplementedError

    def finish(self, model, inputs: dict, outputs: dict, generator) -> tuple[Tensor | None, dict]:
        return inputs.get("reference"), inputs.get("extra", {})

    def units(self, model, inputs: dict) -> int:
        return 1

    def describe(self, label: str, inputs: dict) -> str:
        return label

    def __call__(self, model, sampler, metric, generator, progress=None, reward=None, **_) -> Result:
        from glass.tasks.compare import kernels_of

        inputs = self.inputs(model, metric, generator, reward, progress)
        kernels = kernels_of(sampler)
        per = self.units(model, inputs)
        advance = progress(self.name, per * len(kernels)) if progress else None
        rows, outputs = [], {}
        for label, kernel in kernels:
            model.reset_nfe()
            inputs["_scoring_s"] = 0.0
            start = time.perf_counter()
            out, row = self.run_kernel(model, kernel, inputs, advance if per > 1 else None)
            spent = time.perf_counter() - start - inputs["_scoring_s"]  # the sampling (metric: see scoring)
            check_finite(out, self.describe(label, inputs))
            rows.append({"sampler": label, **row, "kernel_time_s": round(spent, 4)})
            outputs[label] = out.cpu()
            if advance and per == 1:
                advance()
        reference, extra = self.finish(model, inputs, outputs, generator)
        return Result(rows, outputs, reference, extra)


def is_oracle(model) -> bool:
    """Whether the model is an exact oracle (closed-form posterior samples)."""
    return capabilities_of(model).oracle


MAX_CALLS = 1_000_000  # network calls per sample path: far beyond any sampler in use (the paper: <= 1,000)
STATE_COPIES = 8  # float64 copies of the state a run holds at once (inputs, outputs per kernel, noise, ...)


def memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_budget(task, model, kernels, memory: int | None = None) -> None:
    """Refuse, before any work, a run that cannot fit in memory or cannot finish: ``task.budget``'s
    sample paths x the model's state size x :data:`STATE_COPIES` float64 copies against the machine's
    memory, and network calls per sample path (the largest kernel's NFE per transition x transitions)
    against :data:`MAX_CALLS`. One ValueError with the numbers and the options to lower."""
    import math

    budget = task.budget(model)
    if budget is None:
        return
    rows, transitions, what = budget
    calls = max(int(k.nfe) for _, k in kernels) * transitions
    if calls > MAX_CALLS:
        raise ValueError(
            f"{calls:,} network calls per sample path (sampler.steps x {what.split(';')[-1].strip()}) "
            f"would never finish; glass refuses more than {MAX_CALLS:,}: lower sampler.steps"
        )
    memory = memory if memory is not None else memory_bytes()
    size = math.prod(getattr(model, "shape", ()) or (1,))
    need = rows * size * 8 * STATE_COPIES
    if memory is not None and need > memory:
        raise ValueError(
            f"{what.split(';')[0].strip()} = {rows:,} sample paths of {size:,} numbers need about "
            f"{need / 2**30:,.0f} GiB, more than this machine's {memory / 2**30:,.0f} GiB: lower them"
        )
