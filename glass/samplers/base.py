"""The one transition interface and full generation (paper eq. 5).

A transition kernel is any object with

    kernel.transition(model, x, t, t_next, generator=None, denoised=None, **cond) -> x_{t_next}

Every kernel's first network evaluation is D_t(x) at the transition's start (GLASS at s = 0, SDE and
ODE at their first step); a caller that already has it passes ``denoised`` and saves that NFE
(FK steering scores x_t with exactly this call).

(:class:`~glass.samplers.ODE`, :class:`~glass.samplers.SDE`, :class:`~glass.samplers.GLASS`).
Full generation chains K of them on an outer grid 0 = t_0 < ... < t_K = 1; with M inner steps each
it costs K * M network calls, counted by the model wrapper.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from glass.checks import check_int, check_kernel, check_time
from glass.conditioning import per_row, take
from glass.models.base import capabilities_of
from glass.noise import Generators, Injected, Streams, noise_source, randn, rows_of
from glass.paths import noise_to

__all__ = ["Transition", "time_grid", "generate", "posterior", "derive_seed", "peek_seed", "progress_bar",
           "kernel_label", "denoise_rows", "transition_rows", "replacement"]


class Transition(Protocol):
    steps: int
    label: str  # short name in tables and plots (``kernel_label``)
    nfe: int  # network calls per transition
    stochastic: bool  # draws noise: needs the Gaussian path x_t = alpha_t z + sigma_t eps

    def transition(self, model, x: Tensor, t, t_next, generator=None, denoised=None, **cond) -> Tensor: ...


def kernel_label(name: str, steps: int, *extras: str) -> str:
    """A kernel's short name in tables and plots: ``glass M=8``, ``glass(rho=0.4, midpoint) M=8``."""
    inner = f"({', '.join(extras)})" if extras else ""
    return f"{name}{inner} M={steps}"


def derive_seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator`` (on its own device), to start a stream on another device."""
    if generator is None:
        return None
    if isinstance(generator, (Streams, Generators, Injected)):
        return generator.derive_seed()
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def peek_seed(generator) -> int | None:
    """A seed fixed by ``generator``'s current state *without drawing from it*: the caller's noise goes
    on exactly as it would have without this call (FK steering's resampling seed, so its particles
    start from, and move with, the noise ``generate`` draws from the same generator). Streams and
    injected noise: their own :func:`derive_seed` (it draws nothing); a ``torch.Generator`` (or the
    first of a list): a hash of its state."""
    if generator is None or isinstance(generator, (Streams, Injected)):
        return derive_seed(generator)
    import hashlib

    g = generator.generators[0] if isinstance(generator, Generators) else generator
    digest = hashlib.blake2b(g.get_state().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 62) - 1)


def time_grid(grid: int | Sequence[float] | Tensor, model=None) -> Tensor:
    """Outer grid: K transitions for an int K (uniform on [0, 1], or the model's own grid when it has
    one: ``model.grid(K)``, e.g. a pipeline's scheduler grid), else the given increasing times, which
    must start in [0, 1) and end at 1. Only a model's own grid may end short of 1, where its pipeline's
    sampler does (DDIM with ``set_alpha_to_one=False`` stops at abar_0)."""
    if isinstance(grid, bool):
        raise ValueError(f"the time grid must be an int K >= 1 or a list of times, got {grid!r}")
    if isinstance(grid, numbers.Integral):  # numpy integers too
        grid = int(grid)
        if grid < 1:
            raise ValueError(f"the number of transitions K must be >= 1, got {grid}")
        if model is not None and capabilities_of(model).own_grid:
            return _checked(model.grid(grid), end_below_one=True)
        return torch.linspace(0, 1, grid + 1, dtype=torch.float64)
    try:
        grid = torch.as_tensor(grid, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):  # not numbers: torch's message would not name the grid
        raise ValueError(f"the time grid must be an int K >= 1 or a list of times, got {grid!r}") from None
    return _checked(grid)


def _checked(grid, end_below_one: bool = False) -> Tensor:
    g = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    end_ok = g.numel() >= 2 and (0.0 < float(g[-1]) <= 1.0 if end_below_one else float(g[-1]) == 1.0)
    if g.numel() < 2 or not 0.0 <= float(g[0]) < 1.0 or not end_ok or bool(torch.any(g[1:] <= g[:-1])):
        raise ValueError(f"a time grid must increase strictly from t0 in [0, 1) to 1, got {g.tolist()}")
    return g


def prior_sample(model, n: int, generator: torch.Generator | None = None, t0: float = 0.0) -> Tensor:
    """n draws of the model's x_{t0}: N(0, sigma_{t0}^2 I) on ``model.device`` (a model with its own
    grid: N(0, s^2 I) with s = ``model.start_std(t0)``, where its pipeline's sampler starts), or the
    model's own designed prior (``model.prior_sample``, e.g. the low-frequency prior) when it has one."""
    if capabilities_of(model).own_prior:
        return model.prior_sample(n, generator)
    device = getattr(model, "device", torch.device("cpu"))
    x = randn((n, *model.shape), generator, device=device)
    own = capabilities_of(model).own_grid  # where its own sampler starts on its grid (Model.start_std)
    return x * (model.start_std(t0) if own else model.schedule.sigma(t0).item())


def progress_bar(progress, total: int, description: str = "transitions", unit: str = "step"):
    """``progress=`` of the Python entry points -> (advance, close): None or False (nothing), True (a
    tqdm bar with an ETA), or a callable called once per transition. ``advance`` returns None,
    whatever the callable returns (tqdm's update returns True on a refresh)."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=description, unit=unit)
        tick, close = (lambda: bar.update(1)), bar.close
    elif callable(progress):
        tick, close = progress, (lambda: None)
    else:
        raise ValueError(f"progress must be True, False, None or a callable, got {type(progress).__name__}")

    def advance(*_) -> None:  # also a per-step hook of generate: it replaces nothing
        tick()

    return advance, close


def generate(
    model,
    kernel: Transition,
    grid: int | Sequence[float] | Tensor = 5,
    n: int | None = None,
    *,
    x: Tensor | None = None,
    generator=None,
    progress=None,
    callback=None,
    chunk: int | None = None,
    **cond,
) -> Tensor:
    """Sample from the model: start at x ~ N(0, sigma_{t0}^2 I) on ``model.device`` (exactly p_0 when
    the grid starts at t0 = 0; for t0 > 0, as for DDPM-grid or epsilon models, the usual approximation
    that drops alpha_{t0} z; on a pipeline's own grid, where its scheduler starts: ``start_std``), or
    at the given ``x``; apply one transition per interval of the outer
    grid; return the last state (x_1).

    ``generator``: a ``torch.Generator`` (it draws on its own device, then the noise moves to the
    model's, as in diffusers), a list of them (one per sample, as diffusers takes) or
    :class:`glass.noise.Streams`. ``**cond``: the model's conditioning (``prompt=``: a string or one per
    sample). ``progress``: True for a bar, or a callable called after each transition. ``chunk``: rows
    per network batch (each chunk draws the noise its rows would get in one batch with ``Streams``).

    ``callback(i, t, x, denoised)``: the one per-step hook (progress bars, FK steering and the curvature
    metric use it too). It runs after transition i, with the time t reached, the new state and
    D_{t_i}(x_{t_i}) at the transition's start (the call the kernel reuses: no extra NFE). It may return
    a replacement x (as diffusers' ``callback_on_step_end``), or ``(x, d)`` with d = D_t(x) already
    computed, which the next transition then reuses. The network runs without autograd (guidance takes
    its gradients itself); the output carries no graph.
    """
    check_kernel(kernel)
    times = time_grid(grid, model)
    generator = noise_source(generator)
    if x is None:
        if n is None:
            raise ValueError("give n >= 1 samples or a starting x")
        check_int("n", n, 1)
        x = prior_sample(model, n, generator, float(times[0]))
    elif n is not None and isinstance(x, Tensor) and check_int("n", n, 1) != len(x):
        raise ValueError(f"n = {n} but the starting x has {len(x)} rows; give one of them (or both alike)")
    cond = per_row(cond, len(x))
    slices = row_slices(len(x), chunk)
    advance, close = progress_bar(progress, len(times) - 1, f"{type(kernel).__name__} x {len(times) - 1}")
    hooks = [h for h in (callback, advance) if h is not None]
    d = None
    try:
        with torch.no_grad():
            for i, (t0, t1) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
                if d is None and callback is not None:
                    d = denoise_rows(model, x, t0, cond, slices)
                x = transition_rows(model, kernel, x, t0, t1, generator, d, cond, slices)
                x, d = _after_step(hooks, i, t1, x, d)
    finally:
        close()
    return x


def _after_step(hooks, i: int, t: float, x: Tensor, d_start) -> tuple[Tensor, Tensor | None]:
    """Run the per-step hooks; returns the state and, when a hook handed it over, its denoiser."""
    d_next = None
    for hook in hooks:
        out = replacement(hook(i, t, x, d_start), x)
        if out is not None:
            x, d_next = out
    return x, d_next


def replacement(out, x: Tensor) -> tuple[Tensor, Tensor | None] | None:
    """What a per-step callback returned, checked: None (nothing replaced), a replacement state of x's
    shape, or ``(x, d)`` with its denoiser d = D_t(x) (None: the next transition computes it)."""
    if out is None:
        return None
    new, d = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
    for name, value in (("x", new), ("d", d)) if d is not None else (("x", new),):
        if not isinstance(value, Tensor) or value.shape != x.shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"callback must return None, a replacement x of shape {tuple(x.shape)} or (x, d) with d = "
                f"D_t(x) of that shape; got {name} = {got}"
            )
    return new, d


def row_slices(n: int, chunk: int | None) -> list[slice]:
    """Rows 0..n-1 in network batches of ``chunk`` rows (None: one batch of all); ``chunk`` checked."""
    size = max(n, 1) if chunk is None else check_int("chunk", chunk, 1)  # n = 0: no batch
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def denoise_rows(model, x: Tensor, t: float, cond: dict, slices: list[slice]) -> Tensor:
    """D_t(x) chunk by chunk of rows (one chunk: one call on the whole batch)."""
    if len(slices) == 1:
        return model.denoise(x, t, **cond)
    return torch.cat([model.denoise(x[s], t, **take(cond, s)) for s in slices])


def transition_rows(model, kernel, x, t0, t1, generator, d, cond, slices) -> Tensor:
    """One transition chunk by chunk; each chunk draws its rows' noise (one chunk: the source itself)."""
    if len(slices) == 1:
        return kernel.transition(model, x, t0, t1, generator=generator, denoised=d, **cond)
    return torch.cat([
        kernel.transition(model, x[s], t0, t1, generator=rows_of(generator, s),
                          denoised=None if d is None else d[s], **take(cond, s))
        for s in slices
    ])  # fmt: skip


def posterior(
    model,
    images,
    t: float,
    kernel: Transition,
    n: int = 1,
    *,
    generator=None,
    progress=None,
    chunk: int | None = None,
    **cond,
) -> Tensor:
    """Posterior samples p_{1|t}(. | x_t) of the user's own images (paper §6.1): each image is
    encoded (latent models: ``model.encode``), noised to time t, x_t = alpha_t z + sigma_t eps (eq. 2), and
    ``n`` samples of p_{1|t} are drawn by one transition of ``kernel`` from t to 1 (GLASS: stochastic
    at ODE cost). Returns (B, n, ...) outputs: images in [0, 1] for latent models (decoded), data
    otherwise. ``**cond`` is per image (``prompt=``: a string or one per image).

    ``chunk``: rows (of the B x n) per network batch, decoded chunk by chunk (each chunk draws the noise
    its rows would get in one batch with ``Streams``); ``progress``: True for a bar over the chunks, or
    a callable called after each chunk."""

    check_int("n", n, 1)
    check_kernel(kernel)
    t = check_time("t", t)
    if hasattr(images, "__len__") and len(images) == 0:  # a batch of none (a PIL image has no len)
        raise ValueError("images holds no image; posterior needs at least one")
    latent = capabilities_of(model).latent
    z = model.encode(images) if latent else torch.as_tensor(images, dtype=torch.float64).to(model.device)
    b = len(z)
    generator = noise_source(generator)
    x_t = noise_to(model, z.double().repeat_interleave(n, 0), t, generator)  # eq. 2
    cond = per_row(cond, b, repeat=n, what="images")
    slices = row_slices(len(x_t), chunk)
    advance, close = progress_bar(progress, len(slices), f"{type(kernel).__name__} posterior", unit="chunk")
    parts = []
    try:
        with torch.no_grad():
            for s in slices:  # each chunk's rows of the noise source: the draws of one whole batch
                part = kernel.transition(model, x_t[s], t, 1.0, generator=rows_of(generator, s),
                                         **take(cond, s))  # fmt: skip
                parts.append(model.decode(part) if latent else part)
                if advance is not None:
                    advance()
    finally:
        close()
    out = torch.cat(parts)
    return out.reshape(b, n, *out.shape[1:])
