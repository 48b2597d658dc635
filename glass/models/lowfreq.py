"""The MNIST flow model trained with the low-frequency prior (``model=mnist_lowfreq``; Malnick et al.,
arXiv 2606.04092).

Inference: the low-resolution generator G samples a 7 x 7 image (``g_steps`` Euler steps of its ODE),
the prior upsamples it and adds noise, x0 = (1 - a) up(G) + a eps, and the main model's ODE carries x0
to data. NFE counts the main network's calls; ``prior_cost()`` is G's calls converted to main-network
units by their measured cost (``nfe_effective`` = NFE + prior_cost in the generate task).

Only deterministic ODE transitions apply: GLASS (and the SDE) rely on the Gaussian path
x_t = alpha_t z + sigma_t eps with one scalar signal-to-noise ratio per time. Here
x_t = t z + (1 - t)((1 - a) T(z) + a eps): the low frequencies of z are present at every t (their SNR is
not the high frequencies' SNR), so p(x_t | z) is Gaussian with a covariance that is not a multiple of I,
there is no single t* with x̄_s ~ x_{t*}, and the GLASS reparameterization (Proposition 2) has no
scalar solution. A correct generalisation would need a frequency-wise schedule.
"""

from __future__ import annotations

import time

import torch

from glass.checks import check_int
from glass.models.base import Capabilities
from glass.models.mnist import (
    MnistFlow,
    build_from_manifest,
    check_device,
    flow_unet,
    load_checkpoint,
    repo_path,
)
from glass.priors.generator import LowResFlow, LowResNet
from glass.priors.lowfreq import LowFrequency

__all__ = ["MnistLowFreqFlow", "load_lowfreq_flow"]


class MnistLowFreqFlow(MnistFlow):
    gaussian_path = False

    capabilities = Capabilities(data=True, classifier=True, own_prior=True)

    def __init__(self, net, generator: LowResFlow, prior: LowFrequency, g_steps: int = 8, **kw):
        super().__init__(net, **kw)
        check_int("g_steps", g_steps, 1)
        self.lowres, self.prior, self.g_steps = generator, prior, g_steps
        self._ratio = None

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0 = (1 - a) up(G sample) + a eps (G's calls are not counted as the main model's NFE)."""
        from glass.samplers import ODE, generate

        with torch.no_grad():
            low = generate(self.lowres, ODE(self.g_steps), 1, n, generator=generator)
            return self.prior.from_low(low.float(), self.shape[-2:], generator).double().to(self.device)

    def cost_ratio(self, batch: int = 64, reps: int = 3) -> float:
        """Measured cost of one G call relative to one main-network call (same batch, this device)."""
        if self._ratio is None:
            x = torch.randn(batch, *self.shape, device=self.device)
            low = torch.randn(batch, *self.lowres.shape, device=self.device)
            t = torch.full((batch,), 0.5, device=self.device)

            def sync():
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)

            def clock(fn):
                fn()
                sync()
                start = time.perf_counter()
                for _ in range(reps):
                    fn()
                sync()
                return (time.perf_counter() - start) / reps

            with torch.no_grad():
                main = clock(lambda: self.net(x, t * self.time_scale))
                small = clock(lambda: self.lowres.net(low, t))
            self._ratio = small / main
        return self._ratio

    def prior_cost(self) -> float:
        """G's calls per sample path in main-network units (effective NFE of the prior)."""
        return self.g_steps * self.cost_ratio()

    def check_sampler(self, kernels) -> None:
        for label, kernel in kernels:
            if kernel.stochastic:
                raise ValueError(
                    f"{label}: GLASS and SDE transitions need a Gaussian path; the low-frequency prior "
                    "is not one (see glass.models.lowfreq), use sampler=ode"
                )

    def __repr__(self) -> str:
        return f"MnistLowFreqFlow({self.prior!r}, G {self.g_steps} steps)"


def load_lowfreq_flow(
    path: str = "glass/assets/mnist_flow_lowfreq.safetensors",
    lowres: str = "glass/assets/mnist_lowres.safetensors",
    g_steps: int = 8,
    device: str = "cpu",
    data_root: str | None = None,
    classifier: str | None = None,
) -> MnistLowFreqFlow:
    """``model=mnist_lowfreq``: the low-frequency-prior flow model and its generator G (both made by
    ``glass train flow prior=lowfreq`` and ``glass train lowres``)."""
    check_device(device)
    state, manifest = load_checkpoint(repo_path(path), "glass train flow prior=lowfreq")
    spec = manifest.get("prior", {})
    if spec.get("name") != "lowfreq":
        raise ValueError(
            f"{path!r} was not trained with the low-frequency prior (its manifest says {spec!r})"
        )
    g_state, g_manifest = load_checkpoint(repo_path(lowres), "glass train lowres")
    if int(g_manifest.get("factor", 0)) != int(spec.get("factor", 4)):
        raise ValueError(
            f"G was trained at factor {g_manifest.get('factor')}, the flow at {spec.get('factor')}"
        )
    with torch.inference_mode(False):
        net = build_from_manifest(flow_unet, manifest, state, path, "glass train flow prior=lowfreq")
        g = build_from_manifest(LowResNet, g_manifest, g_state, lowres, "glass train lowres")
    prior = LowFrequency(int(spec.get("factor", 4)), float(spec.get("a", 0.5)))
    return MnistLowFreqFlow(net, LowResFlow(g, device), prior, g_steps, device=device,
                            time_scale=manifest.get("time_scale", 1000.0), data_root=data_root,
                            classifier=classifier)  # fmt: skip
