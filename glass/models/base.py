"""One model interface: ``denoise(x, t, **cond) -> D_t(x) = E[z | x_t = x]`` (paper §2, eqs. 2, 14, 26-27).

Every model, whatever it predicts (velocity, epsilon, x0, v), is adapted to this denoiser once, so
samplers never see prediction types. The wrapper counts network function evaluations (NFE): one per
call of :meth:`Model.denoise`, whatever the batch size. Tasks read ``model.nfe``; nothing counts by
hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.checks import check_dtype
from glass.conditioning import check_keys
from glass.schedules import Schedule, as_time, get

Prediction = Literal["velocity", "epsilon", "x0", "v"]

__all__ = [
    "Model",
    "CallableModel",
    "Capabilities",
    "capabilities_of",
    "Prediction",
    "from_prediction",
    "to_denoiser",
]


@dataclass(frozen=True)
class Capabilities:
    """What a model is, declared once by its class: tasks, metrics, rewards and samplers read these
    flags (through :func:`capabilities_of`) instead of probing for attributes."""

    data: bool = False  # a data set: data_samples(n, generator, split), data_point(i, split) (tasks, FID)
    oracle: bool = False  # exact answers in closed form: sample_posterior, tilted, log_prob
    classifier: bool = False  # classify(z) -> labels (MNIST: label agreement, target accuracy)
    latent: bool = False  # decode(x) -> images in [0, 1] and encode(images) -> x
    prompts: bool = False  # text-conditioned: prompt= / negative_prompt= conditioning
    own_grid: bool = False  # grid(K): the model's own outer time grid (a pipeline's scheduler)
    own_prior: bool = False  # prior_sample(n, generator): a designed prior instead of N(0, sigma^2 I)


def capabilities_of(model) -> Capabilities:
    """The model's declared capabilities (any object: wrappers forward them, plain callables have none)."""
    return getattr(model, "capabilities", None) or Capabilities()


EPSILON_AT_ZERO = (
    "an epsilon-prediction model cannot give the denoiser at t = 0 (alpha_0 = 0); "
    "start the time grid at t > 0, e.g. glass.generate(model, kernel, [1e-3, ..., 1.0])"
)


def _on_host(t: Tensor) -> bool:
    """Whether reading t costs no host-device synchronisation (a CPU tensor)."""
    return t.device.type == "cpu"


def _at_zero(schedule: Schedule, t) -> bool:
    """Whether alpha_t = 0 somewhere in t, where an epsilon model has no denoiser (eq. 27)."""
    return bool(torch.any(schedule.alpha(t) == 0))


def unit_images(images: Tensor) -> Tensor:
    """Images in [-1, 1] (a VAE's decoding, a pixel model's sample) -> [0, 1] in float64, clamped. Under
    autograd the gradient passes the clamp unchanged (straight-through): guidance on a decoded image
    still moves a pixel that decodes beyond the range (towards a target inside [0, 1]; a reward that
    always wants brighter pixels pushes it further out), where a clamp's gradient is 0."""
    u = images.double() / 2 + 0.5
    return _StraightThroughClamp.apply(u) if u.requires_grad else u.clamp(0, 1)


class _StraightThroughClamp(torch.autograd.Function):
    """clamp(0, 1) forward, identity backward (u + (clamp(u) - u).detach() is NaN where u is inf: an
    overflowing float16 VAE)."""

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        return u.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def to_denoiser(schedule: Schedule, prediction: Prediction, out: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """A network's prediction -> the denoiser D_t(x) in float64 (eqs. 14, 26, 27). An epsilon model
    has no D where alpha_t = 0 (t = 0): the conversion is Inf there, and the callers say so —
    :meth:`Model.denoise` at once for host times, :meth:`Model.check_outputs` at the end of the
    transition for times on an accelerator (read per call, they would synchronise every call)."""
    out, x64 = out.to(torch.float64), x.to(torch.float64)
    if prediction == "x0":
        return out
    if prediction == "velocity":
        return schedule.velocity_to_x0(out, x64, t)
    if prediction == "epsilon":
        return schedule.eps_to_x0(out, x64, t)
    return schedule.v_to_x0(out, x64, t)


class Model:
    """Base class for every model seen by a sampler.

    Subclasses implement ``_denoise(x, t, **cond)``: ``x`` is the sampler's state (float64) and ``t``
    a float64 tensor of shape (B,); a subclass casts only the network input to ``self.dtype``. Public
    calls go through :meth:`denoise`, which counts NFE and returns the input's dtype.
    ``device`` is where samplers put fresh noise (``glass.generate``).
    """

    #: keyword conditioning ``denoise`` takes (e.g. ``("prompt", "negative_prompt")``); any other key is a
    #: ValueError. ``None``: passed through unchecked (:class:`CallableModel` hands it to the user's fn).
    conditioning: tuple[str, ...] | None = ()
    capabilities = Capabilities()
    #: what the network predicts when the model converts it with :func:`to_denoiser`, else None
    prediction: Prediction | None = None

    def __init__(
        self,
        schedule: str | Schedule = "linear",
        shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        self.schedule = get(schedule)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype if isinstance(dtype, torch.dtype) else check_dtype("dtype", dtype)  # or its name
        self.device = torch.device(device)
        self.nfe = 0

    # -- the interface -----------------------------------------------------------------------------
    def start_std(self, t0: float) -> float:
        """The standard deviation of the noise a sample starts from at t0 on the model's own grid
        (``capabilities.own_grid``): sigma_{t0}, the noise part of p_{t0}, unless the model's own sampler
        starts elsewhere (a Stable Diffusion scheduler's ``init_noise_sigma``: N(0, I) at t0 > 0)."""
        return float(self.schedule.sigma(torch.tensor(t0, dtype=torch.float64)))

    def denoise(self, x: Tensor, t: float | Tensor, **cond) -> Tensor:
        """D_t(x) = E[z | x_t = x]; counts one network function evaluation."""
        if self.prediction == "epsilon" and (not isinstance(t, Tensor) or _on_host(t)):
            if _at_zero(self.schedule, t):  # host times, before t moves to x's device: no sync
                raise ValueError(EPSILON_AT_ZERO)
        t = as_time(t, x)
        if t.numel() == 1:
            t = t.reshape(()).expand(x.shape[0])
        elif t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if cond and self.conditioning is not None:
            check_keys(self, cond)
        self.nfe += 1
        # the network runs without autograd unless the caller differentiates through it (guidance with
        # grad="network" hands in an x that requires grad): outputs never carry a graph otherwise,
        # even when the network's parameters require grad (as a diffusers pipeline's do)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            out = self._denoise(x, t, **cond).to(x.dtype)
        if out.shape != x.shape:  # a broadcast would silently give every row the same wrong answer
            raise ValueError(
                f"{type(self).__name__} returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; "
                "the network must return one prediction per input element"
            )
        if self.watch_finite:
            self._watch(out, t)
        return out

    # -- NaN / Inf watch -----------------------------------------------------------------------------
    watch_finite = True  # record whether each output is finite (on the device; no synchronisation)
    _WATCH_LIMIT = 256

    def _watch(self, out: Tensor, t: Tensor) -> None:
        """Record the output's float64 sum: one tensor operation, finite exactly when every element
        is (a NaN or Inf propagates; float64 cannot overflow on any network's output)."""
        self._record(t, out.sum(dtype=torch.float64))

    def _record(self, t: Tensor, total: Tensor) -> None:
        calls = self.__dict__.setdefault("_calls", [])
        calls.append((self.nfe, t, total))
        if len(calls) >= self._WATCH_LIMIT:  # code that never calls check_outputs: check now and then
            self.check_outputs(" (checked every 256 network calls)")

    def record_calls(self, times: list[Tensor], totals: Tensor) -> None:
        """Count network calls made inside a compiled graph (:meth:`raw_network`): one NFE each, and
        their outputs' float64 sums ``totals`` watched as :meth:`network` watches an output."""
        for t, total in zip(times, totals.unbind(0)):
            self.nfe += 1
            if self.watch_finite:
                self._record(t, total)

    def check_outputs(self, where: str | Callable[[], str] = "", *outputs: Tensor) -> None:
        """Raise ``FloatingPointError`` naming the first network call (its number and time t) whose
        output had a NaN or Inf since the last check, else if one of ``outputs`` has one. One
        host-device synchronisation; kernels call it once per transition. ``where`` (a string, or a
        callable evaluated only on failure) ends the message."""
        calls, self._calls = self.__dict__.get("_calls", []), []
        values = [s for _, _, s in calls] + [o.sum(dtype=torch.float64) for o in outputs]
        if not values:
            return
        device = values[0].device
        finite = torch.isfinite(torch.stack([v.to(device, non_blocking=True) for v in values]))
        if bool(finite.all()):
            return
        where = where() if callable(where) else where
        if self.prediction == "epsilon" and any(_at_zero(self.schedule, t.cpu()) for _, t, _ in calls):
            raise ValueError(EPSILON_AT_ZERO)  # the cause, not checked per call on an accelerator
        for (n, t, _), ok in zip(calls, finite.tolist()):
            if not ok:
                tt = t.detach().double().cpu().reshape(-1)
                when = (
                    f"t = {tt[0]:.6g}"
                    if bool((tt == tt[0]).all())
                    else f"t in [{tt.min():.6g}, {tt.max():.6g}]"
                )
                raise FloatingPointError(f"the model returned NaN or Inf at network call {n} ({when}){where}")
        seen = "every network output was finite" if self.watch_finite else "network outputs are not watched"
        raise FloatingPointError(f"the sampler produced NaN or Inf{where} ({seen})")

    # -- the network itself, for samplers that fold the denoiser into their own updates ----------------
    def affine(self, t: Tensor) -> tuple[Tensor, Tensor] | None:
        """(a, b), float64 of t's shape, with D_t(x) = a x + b f(x, t) for the model's raw network f
        (:meth:`raw_network`), or None when the denoiser is not affine in one network output (the oracle,
        pipelines with guidance): then samplers call :meth:`denoise`. A sampler with host times folds
        a and b into its own linear update, saving the conversion's tensor operations per call (an
        eager loop only where :attr:`fold_eager`; a compiled transition always)."""
        return None

    fold_eager = True  # eager sampler loops fold the denoiser into their updates when affine allows

    def network(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        """f(x, t) on inputs already in the network's dtypes (:attr:`network_dtypes`), t of shape (B,):
        :meth:`raw_network`, counted as one NFE and watched for NaN like :meth:`denoise`."""
        self.nfe += 1
        out = self.raw_network(x, t, cond)
        if self.watch_finite:
            self._watch(out, t)
        return out

    def raw_network(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        """The network f itself, uncounted (a compiled graph calls it and accounts with
        :meth:`record_calls`). Every model whose :meth:`affine` is not None implements it."""
        raise NotImplementedError

    @property
    def network_dtypes(self) -> tuple[torch.dtype, torch.dtype]:
        """(x's, t's) dtype for :meth:`network`."""
        return self.dtype, torch.promote_types(self.dtype, torch.float32)

    def velocity(self, x: Tensor, t: float | Tensor, **cond) -> Tensor:
        """Marginal velocity u_t(x) from the denoiser (eq. 14); one NFE."""
        return self.schedule.x0_to_velocity(self.denoise(x, t, **cond), x, t)

    def compile(self, **options) -> Model:
        """Wrap the network (``self.net``) in ``torch.compile`` (e.g. ``mode="max-autotune"``); the
        sampler's algebra is unchanged. Measured by ``make bench --compile`` (benchmarks/results)."""
        if not hasattr(self, "net"):
            raise ValueError(f"{type(self).__name__} has no network to compile")
        self.net = torch.compile(self.net, **options)
        return self

    # -- hooks the runner calls when a run is prepared (declared here, so nothing is probed) ---------
    def prepare(self) -> None:
        """Fail early, before any run directory exists, on what the run will need (data, weights)."""

    def prepare_prompts(self, texts) -> None:
        """Encode the prompts a run will use before it starts (text-conditioned models)."""

    def check_sampler(self, kernels) -> None:
        """Refuse kernels (``[(label, kernel)]``) the model cannot be sampled with (ValueError)."""

    def prior_cost(self) -> float:
        """Network calls of a designed prior per sample path, in main-network units (0: Gaussian)."""
        return 0.0

    def reset_nfe(self) -> int:
        """Set the NFE counter to zero and return its previous value."""
        n, self.nfe = self.nfe, 0
        return n

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        raise NotImplementedError


class CallableModel(Model):
    """Adapt a network ``fn(x, t, **cond)`` that predicts ``prediction`` under ``schedule``.

    The network sees ``x`` in ``dtype`` and ``t`` in ``dtype`` or float32, whichever is wider (bf16
    would round 0.995 to 0.996); the conversion to the denoiser (eqs. 14, 26, 27) runs in float64 on
    the sampler's float64 state. An epsilon model cannot give D_t where alpha_t = 0 (t = 0): that is
    a ValueError, never a NaN; start the sampling grid at t > 0 for such models.
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        prediction: Prediction,
        schedule: str | Schedule = "linear",
        shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        if prediction not in get_args(Prediction):
            raise ValueError(
                f"unknown prediction type {prediction!r}; choose from: {', '.join(get_args(Prediction))}"
            )
        super().__init__(schedule, shape, dtype, device)
        self.conditioning = None  # whatever the caller gives goes to fn
        self.fn = fn
        self.prediction = prediction

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        t_net = t.to(torch.promote_types(self.dtype, torch.float32))
        out = self._call(x.to(self.dtype), t_net, cond)
        return to_denoiser(self.schedule, self.prediction, out, x, t)

    def _call(self, x_net: Tensor, t_net: Tensor, cond: dict) -> Tensor:
        out = self.fn(x_net, t_net, **cond)
        if not isinstance(out, Tensor) or out.shape != x_net.shape:  # before the conversion broadcasts it
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"the network returned {got} for x of shape {tuple(x_net.shape)}; it must return one "
                f"{self.prediction} prediction per input element"
            )
        return out

    def affine(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Every prediction type's conversion (eqs. 14, 26, 27) is linear in (x, prediction): its
        coefficients are the conversion of the unit inputs (an epsilon model at t = 0: ValueError).
        Kept per set of times (up to 256), as samplers ask for the same inner times again."""
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        cache = self.__dict__.setdefault("_affine", {})
        key = (self.prediction, id(self.schedule), tuple(t.tolist()))
        if key not in cache:
            if len(cache) >= 256:
                cache.clear()
            if self.prediction == "epsilon" and _at_zero(self.schedule, t):
                raise ValueError(EPSILON_AT_ZERO)  # host times: no synchronisation
            one, zero = torch.ones_like(t), torch.zeros_like(t)
            a = to_denoiser(self.schedule, self.prediction, zero, one, t)
            cache[key] = (a, to_denoiser(self.schedule, self.prediction, one, zero, t), self.schedule)
        a, b, _ = cache[key]
        return a, b

    def raw_network(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        return self._call(x, t, cond)


def from_prediction(
    fn: Callable[..., Tensor],
    prediction: Prediction,
    schedule: str | Schedule = "linear",
    shape: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> CallableModel:
    """Shorthand for :class:`CallableModel`."""
    return CallableModel(fn, prediction, schedule, shape, dtype, device)
