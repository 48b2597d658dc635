"""Inverse problems as rewards: r(x) = log N(y; A x, noise^2 I) for a measurement y = A x_0 + noise n.

``reward=measurement`` with ``reward.operator=inpaint|downsample|blur|identity``
(:mod:`glass.rewards.operators`), noise level ``reward.noise`` and the clean point x_0 taken from
``reward.source``: ``valid:INDEX`` or ``test:INDEX`` (image INDEX of MNIST's validation or test split;
on the oracle both name its one fixed set of exact draws) or a file (``.png`` / ``.jpg`` image, or a
``.pt`` / ``.npy`` tensor of one data point, in data space [-1, 1]). The default observes validation
images: they are held out from the flow's training and are not the test images that FID is measured
against. The measurement noise is drawn once, from ``reward.seed`` (with INDEX for ``SPLIT:INDEX``:
``glass.noise.indexed_seed``, so ``task=inverse``'s measurement of point i is the one ``SPLIT:i`` gives).

The reward is differentiable (guidance: its gradient is A^T (y - A x) / noise^2) and costs one
operator application (FK steering, best-of-N). With lam = 1, FK steering targets p(x) exp(r(x)),
i.e. the posterior p(x | y) (paper eq. 6); on the Gaussian-mixture oracle that target is exact
(:meth:`Measurement.exact_target`, a mixture with full covariances). On latent models the reward
scores decoded images (``glass.rewards.base.reward_input``): inpainting in pixel space through the
decoder; the source must then be an image file of the decoder's output size.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import Tensor

from glass.checks import check_choice, check_int, check_positive, check_seed
from glass.models.base import capabilities_of
from glass.models.mixture import gaussian_log_prob
from glass.noise import indexed_seed
from glass.rewards.operators import OPERATORS, REGIONS, LinearOperator

__all__ = ["Measurement", "load_source_file", "SPLITS"]

#: the data splits ``reward.source=SPLIT:INDEX`` can observe
SPLITS = ("valid", "test")


def parse_point(source: str) -> tuple[str, int] | None:
    """``(split, index)`` of ``reward.source=SPLIT:INDEX``; None for a file. Raises on a malformed
    ``SPLIT:INDEX``."""
    split, sep, index = source.partition(":")
    if not sep:
        return None
    if split not in SPLITS:
        # "train:3" or "Valid:0" look like data points, not files: say so rather than "no such file"
        # (a one-letter prefix is a drive letter, and an existing file is always read as a file).
        if len(split) > 1 and index.isascii() and index.isdigit() and not Path(source).expanduser().exists():
            splits = " or ".join(f"{s}:INDEX" for s in SPLITS)
            raise ValueError(f"reward.source={source}: data set {split!r} is not one of {splits}")
        return None
    if not (index.isascii() and index.isdigit()):
        raise ValueError(f"reward.source must be {split}:INDEX with an integer INDEX >= 0, got {source!r}")
    return split, int(index)


def load_source_file(path: str | Path, channels: int | None = None) -> Tensor:
    """One clean data point from a file, in data space [-1, 1]: an image (PNG / JPEG; ``channels``
    1 reads grey, 3 RGB, None keeps the file's) as (C, H, W), or a ``.pt`` / ``.npy`` tensor."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"reward.source file {str(path)!r} does not exist (data points: valid:INDEX or test:INDEX)"
        )
    suffix = path.suffix.lower()
    if suffix in (".pt", ".npy"):
        try:
            if suffix == ".pt":
                x = torch.load(path, map_location="cpu", weights_only=True)
            else:
                import numpy as np

                x = torch.from_numpy(np.load(path, allow_pickle=False))
        except Exception as e:  # noqa: BLE001 - any damage: one line naming the option
            what = f"reward.source {str(path)!r} cannot be read as a tensor ({type(e).__name__})"
            raise ValueError(what) from None
    elif suffix in (".png", ".jpg", ".jpeg"):
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(path)
            if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey: "L" would clip at 255
                a = np.asarray(img, dtype=np.float64) / 65535.0
                if a.max(initial=0) > 1 or a.min(initial=0) < 0:
                    raise ValueError(f"reward.source {str(path)!r}: {img.mode} pixels beyond 16 bits")
                a = np.repeat(a[..., None], 3, -1) if channels == 3 else a
            else:
                img = img.convert({1: "L", 3: "RGB"}.get(channels, "L" if img.mode in ("L", "1") else "RGB"))
                a = np.asarray(img, dtype=np.float64) / 255.0
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"reward.source {str(path)!r} is not a readable image ({e})") from None
        a = torch.from_numpy(a)
        x = (a[None] if a.ndim == 2 else a.permute(2, 0, 1)) * 2 - 1
    else:
        raise ValueError(
            f"reward.source {str(path)!r}: use valid:INDEX, test:INDEX, an image (.png, .jpg) "
            "or a .pt / .npy file"
        )
    if not torch.is_tensor(x) or not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        raise ValueError(f"reward.source {str(path)!r} must hold one finite floating-point data point")
    return x.to(torch.float64)


class Measurement:
    """r(x) = log N(y; A x, noise^2 I) (see the module docstring). Unbound until :meth:`bind` (the
    run does this with its model) or :meth:`observe` (a given clean point) sets x_0 and y."""

    differentiable = True

    def __init__(
        self,
        operator: str = "inpaint",
        noise: float = 0.1,
        source: str = "valid:0",
        region: str = "lower",
        factor: int = 4,
        width: float = 1.0,
        seed: int = 0,
    ):
        check_choice("reward.operator", operator, OPERATORS)
        check_positive("reward.noise", noise)
        check_choice("reward.region", region, REGIONS)
        check_int("reward.factor", factor, 1)
        check_positive("reward.width", width, " (pixels)")
        check_seed("reward.seed", seed)
        if not isinstance(source, str) or not source:
            raise ValueError(f"reward.source must be valid:INDEX, test:INDEX or a file, got {source!r}")
        parse_point(source)  # a malformed SPLIT:INDEX fails here
        self.operator, self.noise, self.source = operator, float(noise), source
        self.region, self.factor, self.width, self.seed = region, factor, float(width), seed
        self.op: LinearOperator | None = None
        self.original: Tensor | None = None  # x_0 (1, *shape)
        self.label: int | None = None
        self.y: Tensor | None = None  # (m,)

    # -- binding ------------------------------------------------------------------------------------
    def bind(self, model) -> Measurement:
        """A copy observing ``reward.source`` of ``model``'s data (``resolve_reward`` calls this)."""
        if (point := self.point()) is not None:
            return self.observe_point(model, *point)
        shape = getattr(model, "shape", None)
        latent = capabilities_of(model).latent
        channels = 3 if latent else (shape[0] if shape is not None and len(shape) == 3 else None)
        x0 = load_source_file(self.source, channels)[None]
        lo, hi = float(x0.min()), float(x0.max())
        if channels is not None and (lo < -1 - 1e-6 or hi > 1 + 1e-6):  # images: y on the wrong scale
            raise ValueError(
                f"reward.source={self.source} holds values in [{lo:.4g}, {hi:.4g}]; {model!r} makes images "
                "in [-1, 1] (a [0, 1] image: 2 x - 1; a 0..255 one: x / 127.5 - 1)"
            )
        if latent and shape is not None:  # the decoder's image size, from one decoded zero latent (it
            zero = torch.zeros(1, *shape, dtype=torch.float64, device=model.device)  # failed at sampling)
            with torch.no_grad():
                shape = tuple(model.decode(zero).shape[1:])
        if shape is not None and tuple(x0.shape[1:]) != tuple(shape):
            makes = "decodes to images" if latent else "makes data"
            raise ValueError(
                f"reward.source={self.source} has shape {tuple(x0.shape[1:])}; {model!r} {makes} of "
                f"shape {tuple(shape)}"
            )
        return self.observe(x0)

    def observe_point(self, model, split: str, index: int) -> Measurement:
        """A copy observing point ``index`` of the model's ``split``, its noise drawn from
        ``indexed_seed(seed, index)`` (so ``task=inverse``'s measurement of point i is the one
        ``reward.source=SPLIT:i`` gives, and ``reward.seed=1``'s noise on point 0 is not
        ``reward.seed=0``'s on point 1, as it was with ``seed + index``)."""
        if not capabilities_of(model).data:
            raise ValueError(
                f"reward.source={split}:{index} observes the model's data set; {model!r} has none "
                "(use model=mnist, gmm or gmm64, or give an image file)"
            )
        try:
            x0, label = model.data_point(index, split)
        except ValueError as e:  # the model's own words, with the option that asked
            raise ValueError(f"reward.source={split}:{index}: {e}") from None
        return self.observe(x0, label, noise_seed=indexed_seed(self.seed, index))

    def point(self) -> tuple[str, int] | None:
        """``(split, index)`` of ``reward.source=SPLIT:INDEX``; None when the source is a file."""
        return parse_point(self.source)

    def observe(self, x0: Tensor, label: int | None = None, noise_seed: int | None = None) -> Measurement:
        """A copy observing the clean point ``x0`` (a batch of one, (1, *shape)): y = A x0 + noise n,
        n drawn from ``noise_seed`` (default ``seed``). Built outside inference mode: guidance
        differentiates through it."""
        with torch.inference_mode(False):
            x0 = torch.as_tensor(x0).to(torch.float64).cpu().clone()
            if x0.ndim < 2 or x0.shape[0] != 1:
                raise ValueError(
                    f"x0 must be one data point as a batch of one, (1, *shape), got {tuple(x0.shape)}"
                )
            new = copy.copy(self)
            new.op = LinearOperator(self.operator, x0.shape[1:], self.region, self.factor, self.width)
            clean = new.op(x0)[0]
            gen = torch.Generator().manual_seed(self.seed if noise_seed is None else int(noise_seed))
            n = torch.randn(clean.shape, generator=gen, dtype=torch.float64)
            new.original, new.label, new.y = x0, label, clean + self.noise * n
        return new

    def _bound(self) -> LinearOperator:
        if self.op is None:
            raise ValueError("the measurement reward has no observation yet (call bind or observe)")
        return self.op

    # -- the reward ---------------------------------------------------------------------------------
    def residual(self, x: Tensor) -> Tensor:
        """y - A x per row (N, m)."""
        op = self._bound()
        ax = op(x.to(torch.float64))
        return self.y.to(ax.device) - ax

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        """log N(y; A x_1, noise^2 I) per row, float64."""
        r = self.residual(x1)
        m = r.shape[1]
        return -0.5 * (r**2).sum(1) / self.noise**2 - 0.5 * m * math.log(2 * math.pi * self.noise**2)

    def consistency(self, x: Tensor) -> Tensor:
        """||A x - y|| / (noise sqrt(m)) per row: about 1 when x explains y to the noise level."""
        r = self.residual(x)
        return r.norm(dim=1) / (self.noise * math.sqrt(r.shape[1]))

    def shown(self) -> Tensor:
        """y as a data point to look at (``LinearOperator.show``), (1, *shape)."""
        return self._bound().show(self.y[None])

    # -- exact answers on the oracle -----------------------------------------------------------------
    def exact_target(self, model, lam: float = 1.0):
        """p(z) exp(lam r(z)) (eq. 6) on the Gaussian-mixture oracle: the posterior for noise / sqrt(lam)."""
        op = self._bound()
        return model.condition(op.matrix(), self.y, self.noise / math.sqrt(lam))

    def exact_value(self, model, x: Tensor, t) -> Tensor:
        """V_t(x) = log E[N(y; A z, noise^2 I) | x_t = x] on the Gaussian-mixture oracle (eq. 8): z | x_t
        is the mixture of ``model.posterior`` (weights w_k, means mu_k, variances c_k I), so
        V_t(x) = log sum_k w_k N(y; A mu_k, noise^2 I + c_k A A^T)."""
        A = self._bound().matrix().to(x.device)
        logw, mu, c = model.posterior(x, t)  # (B, K), (B, K, d), (B, K)
        eye = torch.eye(A.shape[0], dtype=torch.float64, device=x.device)
        cov = self.noise**2 * eye + c[..., None, None] * (A @ A.T)  # (B, K, m, m)
        log_n = gaussian_log_prob(self.y.to(x.device) - mu @ A.T, torch.linalg.cholesky(cov))  # (B, K)
        return torch.logsumexp(logw + log_n, dim=1)

    def exact_mean(self, target) -> float:
        """E[r(z)] for z ~ ``target`` (a full-covariance mixture): the mean squared residual of each
        component is |y - A mu_k|^2 + tr(A Sigma_k A^T)."""
        A = self._bound().matrix()
        resid = self.y[None] - target.means @ A.T
        sq = (resid**2).sum(1) + torch.einsum("md,kde,me->k", A, target.covariances, A)
        m = A.shape[0]
        log_norm = -0.5 * m * math.log(2 * math.pi * self.noise**2)
        return float(log_norm - 0.5 * (target.weights * sq).sum() / self.noise**2)

    def __repr__(self) -> str:
        op = self.op if self.op is not None else self.operator
        return f"Measurement({op}, noise={self.noise:g}, source={self.source})"
