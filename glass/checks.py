"""Early validation of user-facing values: one ``ValueError`` naming the key and what is allowed
(the CLI prints it as one line, exit 2)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["check_int", "check_seed", "MAX_SEED", "check_number", "check_positive", "check_time",
           "check_choice", "check_dtype", "check_finite", "check_transition", "check_state"]  # fmt: skip

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """An integer (bools refused; numpy integers accepted as ints) >= ``minimum`` (and <= ``maximum``);
    errors name ``name``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):  # e.g. np.int64(4)
        value = int(value)
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    if maximum is not None and not bad and value > maximum:
        bad = True
    if bad:
        allowed = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


MAX_SEED = 2**32 - 1  # torch's CPU generator (mt19937) keeps 32 bits of a seed


def check_seed(name: str, value) -> int:
    """A seed torch's CPU generator keeps whole: an integer in [0, 2^32 - 1]. Larger seeds would
    silently repeat smaller ones (``seed=0`` and ``seed=4294967296`` give the same run), so they are
    refused."""
    try:
        return check_int(name, value, 0, MAX_SEED)
    except ValueError:
        raise ValueError(
            f"{name} must be an integer in [0, {MAX_SEED}] (torch's generator keeps 32 bits; a larger seed "
            f"would repeat a smaller one), got {value!r}"
        ) from None


def check_number(name: str, value, minimum: float | None = None) -> float:
    """A finite number (bools refused; numpy scalars accepted), optionally >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def check_positive(name: str, value, unit: str = "") -> float:
    """A finite number > 0 (bools refused); ``unit`` is named in the error, e.g. ``" (pixels)"``."""
    if check_number(name, value) <= 0:
        raise ValueError(f"{name} must be a number > 0{unit}, got {value!r}")
    return float(value)


def check_time(name: str, t) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {t!r}")
    return float(t)


def check_dtype(name: str, value) -> torch.dtype:
    """A network dtype: a ``torch.dtype`` or its name (``"bfloat16"``, ``"torch.bfloat16"``)."""
    key = str(value).removeprefix("torch.") if isinstance(value, (str, torch.dtype)) else None
    if key not in DTYPES:
        raise ValueError(f"{name} must be one of {', '.join(DTYPES)}, got {value!r}")
    return DTYPES[key]


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_kernel(kernel) -> None:
    """``kernel`` of the Python entry points: a transition kernel (anything with ``transition``)."""
    if not callable(getattr(kernel, "transition", None)):
        kernels = "glass.ODE, glass.SDE, glass.DDPM or glass.GLASS"
        raise ValueError(f"kernel must be a transition kernel ({kernels}), got {kernel!r}")


def check_reward(reward) -> None:
    """``reward`` of the Python entry points: a callable ``reward(x1, **cond) -> (N,)``."""
    if not callable(reward):
        raise ValueError(f"reward must be a callable reward(x1, **cond) -> (N,) tensor, got {reward!r}")


def check_finite(x: Tensor, what: str) -> Tensor:
    """Refuse NaN or Inf samples with a message naming who produced them (never a silent number)."""
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{what} produced NaN or Inf")
    return x


def _show_time(t) -> str:
    if isinstance(t, Tensor) and t.numel() > 1:
        return f"[{float(t.min()):.4g}, {float(t.max()):.4g}]"
    return f"{float(t):.4g}"


def check_state(model, x, t=None, t_next=None, denoised=None) -> None:
    """What a kernel is handed through the Python API, checked on the host before any work (no
    synchronisation): ``x`` a floating-point ``torch.Tensor`` of shape (B, *model.shape) (an integer
    tensor would come back rounded), per-sample times of shape (B,), ``denoised`` of x's shape (a
    (1, d) row would silently broadcast over the batch). One TypeError / ValueError naming the
    argument."""
    if not isinstance(x, Tensor):
        hint = " (torch.from_numpy(x) converts it)" if type(x).__module__.startswith("numpy") else ""
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor, got {x.dtype} (samples would be rounded to integers; "
            "x.double() converts it)"
        )
    shape = tuple(getattr(model, "shape", None) or ())
    if x.ndim < 1 or (shape and tuple(x.shape[1:]) != shape):
        want = ", ".join(["B", *map(str, shape)]) if shape else "B, ..."
        raise ValueError(f"x must have shape ({want}) for this model, got {tuple(x.shape)}")
    for name, v in (("t", t), ("t_next", t_next)):
        if isinstance(v, Tensor) and v.numel() > 1 and tuple(v.shape) != (x.shape[0],):
            raise ValueError(
                f"{name} must be a number or have shape ({x.shape[0]},) (one time per row of x), got "
                f"{tuple(v.shape)}"
            )
    if denoised is not None and (not isinstance(denoised, Tensor) or denoised.shape != x.shape):
        got = tuple(denoised.shape) if isinstance(denoised, Tensor) else type(denoised).__name__
        raise ValueError(f"denoised must be D_t(x) for every row, of x's shape {tuple(x.shape)}, got {got}")


def check_transition(model, y: Tensor, kernel, t, t_next, x: Tensor | None = None) -> Tensor:
    """End of a transition: refuse NaN or Inf in the network outputs seen since the last check (the
    model wrapper records them without synchronising) or in the result, naming the network call, its
    time and the transition; one host-device synchronisation per transition (the message, which
    reads device times, is built only on failure). When the transition's input ``x`` already held
    NaN or Inf, that is what the error says (a ValueError: the input is wrong, not the model)."""

    def where() -> str:
        return f" during {kernel!r}, transition t = {_show_time(t)} -> {_show_time(t_next)}"

    try:
        if hasattr(model, "check_outputs"):
            model.check_outputs(where, y)
        elif not bool(torch.isfinite(y).all()):
            raise FloatingPointError(f"NaN or Inf{where()}")
    except FloatingPointError:
        if x is not None and not bool(torch.isfinite(x).all()):
            where = f"the input of {kernel!r} at t = {_show_time(t)}"
            raise ValueError(f"x contains NaN or Inf ({where})") from None
        raise
    return y
