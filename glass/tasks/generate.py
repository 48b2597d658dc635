"""Sampling from noise with K transitions of the sampler (paper Table 4 setting: K x M NFE).

Every kernel of a comparison starts from the same noise with the same random stream. Scored on the
oracle against exact samples, on images by FID against the test set.
"""

from __future__ import annotations

from torch import Tensor

from glass.noise import Streams, indexed_seed
from glass.samplers import generate
from glass.samplers.base import derive_seed, row_slices
from glass.tasks.base import Task, check_int, is_oracle, scoring
from glass.tasks.prompts import PromptOptions

__all__ = ["Generate"]


class Generate(Task):
    """``n`` defaults to 2000 on the oracle and 1000 on images (null). ``chunk``: samples per network
    batch of the transitions (null: all at once); each chunk draws the noise its samples get in one
    batch. A generated prior (``model=mnist_lowfreq``) draws all n starting points at once."""

    name = "generate"
    needs_reward = False

    def __init__(
        self,
        transitions: int = 5,
        n: int | None = None,
        prompts: str | None = None,  # fmt: skip
        per_prompt: int = 1,
        prompt_range: str | None = None,
        save_latents: bool = False,
        chunk: int | None = None,
    ):
        self.transitions = check_int("transitions", transitions, 1)
        self.n = None if n is None else check_int("n", n, 2)
        self.chunk = None if chunk is None else check_int("chunk", chunk, 1)
        self.prompts = PromptOptions(prompts, per_prompt, prompt_range, save_latents)
        if self.prompts and n is not None:
            raise ValueError(
                "n and prompts both set the number of samples: give one (per_prompt with prompts)"
            )

    def check(self, model, reward) -> None:
        self.prompts.check(model)

    def texts(self) -> list[str]:
        return self.prompts.texts()

    def budget(self, model) -> tuple[int, int, str] | None:
        if self.prompts:  # one prompt at a time
            return None
        n = self.n or (2000 if is_oracle(model) else 1000)
        return n, self.transitions, "task.n; task.transitions"

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        oracle = is_oracle(model)
        n = self.prompts.outputs() if self.prompts else self.n or (2000 if oracle else 1000)
        seed = derive_seed(generator)  # per-sample streams: sample i is the same for every task.n
        path = {}
        if getattr(metric, "path_metric", False):
            path = metric.measure(model, Streams(indexed_seed(seed, 1), metric.n, model.device))
        return {"oracle": oracle, "n": n, "seed": seed, "path": path, "metric": metric}

    def units(self, model, inputs: dict) -> int:
        return self.transitions

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        n, metric = inputs["n"], inputs["metric"]
        streams = Streams(inputs["seed"], n, model.device)
        s = generate(
            model, kernel, self.transitions, n, generator=streams, progress=advance, chunk=self.chunk,
            **self.prompts.cond(),
        )  # fmt: skip
        calls = model.reset_nfe()  # one count per network batch: per sample path, a chunked run's share
        nfe = calls // len(row_slices(n, self.chunk))
        with scoring(inputs):
            if getattr(metric, "text_to_image", False):  # a plain callable scores samples alone
                scores = metric(model, s, *self.prompts.per_output(model, n))
            else:
                scores = metric(s, lambda g: model.sample(n, g)) if inputs["oracle"] else metric(s)
        # a generated prior's calls count in main-network units (Gaussian prior: nfe itself)
        cost = model.prior_cost()
        # six significant figures, not three decimals: a tiny generator's cost (a measured time ratio, ~1e-4
        # of the main network) must not round away to "free"
        row = {**scores, **inputs["path"], "nfe": nfe, "nfe_effective": float(f"{nfe + cost:.6g}")}
        return s, {**row, "network_calls": calls} if calls != nfe else row

    def finish(self, model, inputs: dict, outputs: dict, generator):
        return (model.sample(inputs["n"], generator) if inputs["oracle"] else None), {}
