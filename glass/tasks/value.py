"""Value estimation (paper eq. 8): V_t(x) = log E_{z ~ p_{1|t}(.|x)} exp(r(z)).

``points`` data points are noised to time t. Each kernel estimates V_t at every x_t by Monte Carlo
with ``n`` posterior samples, V_hat = log mean_i exp r(z_i), and the estimates are scored against the
ground truth with Pearson / Spearman correlation, RMSE and bias. ``nfe`` is per posterior sample (the kernel's
steps); ``network_calls`` counts the batched calls (one per chunk and step):
- oracle with the linear reward: the exact V_t (closed form, :meth:`GaussianMixture.value`);
- otherwise a Monte-Carlo ground truth from ``truth_n`` posterior samples drawn with
  ``truth_sampler`` at ``truth_steps`` steps (the paper: 200 samples, M = 200) on noise streams of its
  own (independent of the estimates' noise, so an estimate never shares draws with the truth it is
  scored against), cached on disk under ``cache_dir`` keyed by the model's weights, the reward, t,
  the points themselves and the truth's noise seed.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import Tensor

from glass.models.base import capabilities_of
from glass.noise import Streams, rows_of
from glass.samplers.base import derive_seed
from glass.tasks.base import (
    Task,
    check_finite,
    check_gaussian_path,
    check_int,
    check_time,
    is_oracle,
    noise_to,
    scoring,
)

__all__ = ["Value", "mc_value"]


def mc_value(
    model, kernel, reward, x_t: Tensor, t: float, n: int, generator, chunk: int = 2048, advance=None
):
    """Monte-Carlo V_t at each row of ``x_t`` with ``n`` posterior samples of ``kernel``
    (batched in chunks of about ``chunk`` samples; each chunk is one batch of network calls).
    With per-sample :class:`~glass.noise.Streams` (len(x_t) * n of them) the estimate does not
    depend on ``chunk``."""
    per = max(1, chunk // n)
    out = []
    for i in range(0, len(x_t), per):
        x = x_t[i : i + per].repeat_interleave(n, 0)
        g = rows_of(generator, slice(i * n, i * n + len(x)))
        z = kernel.transition(model, x, t, 1.0, generator=g)
        check_finite(z, f"{kernel!r} (posterior samples at t = {t:g})")
        r = reward(z).double().reshape(-1, n)
        out.append(torch.logsumexp(r, 1).cpu() - math.log(n))
        if advance:
            advance()
    return torch.cat(out)


class Value(Task):
    """``points`` defaults to 256 on the oracle and 64 on images (null)."""

    name = "value"

    def check(self, model, reward) -> None:
        check_gaussian_path(model, "value")
        if not capabilities_of(model).data:
            raise ValueError(
                f"task=value noises data samples, and {model!r} has no data set "
                "(use model=mnist, gmm or gmm64)"
            )

    def __init__(
        self,
        t: float = 0.2,
        points: int | None = None,
        n: int = 16,
        truth_n: int = 200,
        truth_steps: int = 200,
        truth_sampler: str = "glass",
        chunk: int = 2048,
        cache_dir: str = "outputs/cache",
    ):
        self.t = check_time("t", t)
        self.points = None if points is None else check_int("points", points, 3)
        self.n = check_int("n", n, 1)
        self.truth_n = check_int("truth_n", truth_n, 1)
        self.truth_steps = check_int("truth_steps", truth_steps, 1)
        if truth_sampler not in ("glass", "sde"):
            raise ValueError(f"truth_sampler must be glass or sde, got {truth_sampler!r}")
        self.truth_sampler = truth_sampler
        self.chunk = check_int("chunk", chunk, 1)
        self.cache_dir = Path(cache_dir)

    def truth_kernel(self):
        from glass.samplers import GLASS, SDE

        return GLASS(self.truth_steps) if self.truth_sampler == "glass" else SDE(self.truth_steps)

    def budget(self, model) -> tuple[int, int, str]:
        points = self.points or (256 if is_oracle(model) else 64)
        per = self.n if is_oracle(model) else max(self.n, self.truth_n)
        return points * per, 1, "task.points x task.n (and task.truth_n); one transition"

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        oracle = is_oracle(model)
        points = self.points or (256 if oracle else 64)
        z, _ = model.data_samples(points, generator)
        x_t = noise_to(model, z, self.t, generator)
        seed = derive_seed(generator)  # per-sample streams: the same numbers for every task.chunk
        if oracle:  # the oracle's rewards (linear, measurement) have exact value functions
            truth, truth_info = reward.exact_value(model, x_t, self.t).cpu(), {"truth": "exact"}
        else:  # the Monte-Carlo truth on streams of its own: its noise is independent of the estimates'
            streams = Streams(derive_seed(generator), points * self.truth_n, model.device)
            truth, truth_info = self._cached_truth(model, reward, x_t, streams, progress)
        return {"points": points, "x_t": x_t, "seed": seed, "truth": truth, "truth_info": truth_info,
                "metric": metric, "reward": reward, "reference": truth,
                "extra": {"x_t": x_t.cpu(), "truth_std": float(truth.std())}}  # fmt: skip

    def units(self, model, inputs: dict) -> int:
        return math.ceil(inputs["points"] / max(1, self.chunk // self.n))

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        streams = Streams(inputs["seed"], inputs["points"] * self.n, model.device)
        v = mc_value(model, kernel, inputs["reward"], inputs["x_t"], self.t, self.n, streams, self.chunk,
                     advance)  # fmt: skip
        calls = model.reset_nfe()
        with scoring(inputs):
            m = inputs["metric"](v, inputs["truth"])
        row = {**m, "nfe": calls // self.units(model, inputs), "network_calls": calls}
        return v, {**row, "n_samples": self.n, **inputs["truth_info"]}

    def _cached_truth(self, model, reward, x_t, streams, progress) -> tuple[Tensor, dict]:
        key = hashlib.sha256()
        parts = (
            _fingerprint(model),
            _reward_state(reward),
            self.t,
            self.truth_n,
            self.truth_steps,
            self.truth_sampler,
            repr(self.truth_kernel()),  # its settings too (a default rho or solver that changed)
            streams.seed,  # the truth's noise
        )
        for part in parts:
            key.update(repr(part).encode())
        key.update(x_t.detach().cpu().double().numpy().tobytes())
        path = self.cache_dir / f"value-truth-{key.hexdigest()[:16]}.pt"
        info = {"truth": f"{self.truth_sampler} M={self.truth_steps} n={self.truth_n}"}
        if path.is_file():
            try:
                return torch.load(path, weights_only=True), {**info, "truth_cached": True}
            except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
                pass
        per = max(1, self.chunk // self.truth_n)
        advance = progress("value ground truth", math.ceil(len(x_t) / per)) if progress else None
        model.reset_nfe()
        kernel = self.truth_kernel()
        truth = mc_value(model, kernel, reward, x_t, self.t, self.truth_n, streams, self.chunk, advance)
        info["truth_network_calls"] = model.reset_nfe()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(truth, tmp)
        tmp.replace(path)
        return truth, {**info, "truth_cached": False}


def _reward_state(reward) -> str:
    """Hash of the reward's identity: its repr, its public attributes' plain settings and tensors (a
    bound measurement's y and image: two seeds of one measurement share a repr) and the weights of
    every network it holds, loaded first by the reward's ``load()`` where it has one (the contract
    ``resolve_reward`` follows): a checkpoint replaced at the same path is another reward, and the key
    is the same before and after the reward first ran. Other private attributes (caches) are not
    identity. Not :func:`_fingerprint`'s rule: a model's plain attributes include counters (nfe)
    that change from call to call."""
    if hasattr(reward, "load"):
        reward.load()
    h = hashlib.sha256(repr(reward).encode())
    for name, v in sorted(getattr(reward, "__dict__", {}).items()):
        if isinstance(v, torch.nn.Module):
            for key, w in v.state_dict().items():
                raw = w.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # bfloat16 too
                h.update(f"{name}.{key}".encode() + raw.numpy().tobytes())
        elif name.startswith("_"):
            continue
        elif isinstance(v, Tensor):
            h.update(name.encode() + v.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(v, (bool, int, float, str, type(None))):
            h.update(f"{name}={v!r}".encode())
    return h.hexdigest()


def _fingerprint(model) -> str:
    """Hash of the model's identity: its repr and every tensor it holds (network weights too)."""
    h = hashlib.sha256(repr(model).encode())
    net = getattr(model, "net", None)
    tensors = list(net.state_dict().values()) if net is not None else []
    tensors += [v for v in vars(model).values() if isinstance(v, Tensor)]
    for v in tensors:
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
