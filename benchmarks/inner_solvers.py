"""Issue 19 item 4 (fewer NFE): inner ODE solvers beyond the shipped ones, on the 64-D oracle.

The GLASS inner ODE (eq. 19) is itself a Gaussian-path flow: with v = (xbar_s - gamma x_t) / abar_s
and sigma_s = sbar_s / abar_s it is dv/dsigma = (v - Dhat) / sigma, whose exact solution over a step is

    xbar_{s'} - gamma x_t = (sbar_{s'} / sbar_s) (xbar_s - gamma x_t)
                            + sbar_{s'} abar  int_s^{s'} Dhat(u) / sbar_u^2 du.

Every scheme below replaces Dhat in the integral by the Lagrange polynomial (in the inner time s, or
in the effective denoiser time t* of Proposition 2) through the last k network evaluations, and
integrates it exactly (Gauss-Legendre on the host: the weights are scalars computed once, like
GLASS's plan). k = 1 is the paper's Euler step (exact for D frozen); k = 2, 3 are exponential
Adams-Bashforth steps (DPM-Solver++(2M)/(3M)-like, one NFE per step). "PC" adds a UniC-style
corrector: when D is evaluated at the new point, the step just taken is redone with it (still one NFE
per step, s = 1 never evaluated); GLASS's ``multistep`` solver is "exp. Adams 2 + corrector", with
closed-form weights (this script's quadrature version agrees to 1e-14). "start-dense" places the
inner grid at s_i = (i / M)^1.5.

Error = Fréchet distance to the exact conditional's moments above its Monte-Carlo floor, in % of tr
Cov (benchmarks/accuracy.py; 8 conditioning points x 4096 samples), for the posterior t = 0.2 -> 1
and the transition 0.2 -> 0.6. Writes benchmarks/results/inner_solvers.{json,md}; ~10 minutes on 2
CPU cores.

    python benchmarks/inner_solvers.py [--n 4096] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import accuracy  # noqa: E402

import glass  # noqa: E402
from glass.samplers.glass import SBAR0, glass_denoiser  # noqa: E402

F64 = torch.float64
BUDGETS = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32)
TARGETS = (2.0, 0.5)  # % of tr Cov


def lagrange(nodes: list[float], j: int, u: np.ndarray) -> np.ndarray:
    out = np.ones_like(u)
    for m, um in enumerate(nodes):
        if m != j:
            out = out * (u - um) / (nodes[j] - um)
    return out


def step_weights(s0: float, s1: float, nodes: list[float], phi, abar: float, sbar: float) -> list[float]:
    """w_j = sbar_{s1} abar int_{s0}^{s1} l_j(phi(u)) / sbar_u^2 du (sbar_u = 1 - kappa u), integrated
    in w = 1 / sbar_u (du / sbar_u^2 = dw / kappa); at sbar_{s1} = 0 the limit abar l_j(phi(1)) / kappa."""
    kappa = SBAR0 - sbar
    sb1 = SBAR0 - kappa * s1
    at = [phi(v) for v in nodes]
    if sb1 == 0:
        return [abar / kappa * float(lagrange(at, j, np.array([phi(s1)]))[0]) for j in range(len(at))]
    x, q = np.polynomial.legendre.leggauss(64)
    if abs(kappa) < 1e-12:  # sbar = 1: the integrand is l_j itself
        u = s0 + (s1 - s0) * (x + 1) / 2
        return [sb1 * abar * float(np.sum(q * (s1 - s0) / 2 * lagrange(at, j, phi(u))))
                for j in range(len(at))]  # fmt: skip
    w0, w1 = 1 / (SBAR0 - kappa * s0), 1 / sb1
    w = w0 + (w1 - w0) * (x + 1) / 2
    u = (SBAR0 - 1 / w) / kappa
    return [sb1 * abar / kappa * float(np.sum(q * (w1 - w0) / 2 * lagrange(at, j, phi(u))))
            for j in range(len(at))]  # fmt: skip


class Adams:
    """Exponential Adams inner solver of order ``order`` (1 = Euler), optional corrector; M NFE."""

    def __init__(self, steps: int, order: int, corrector: bool = False, grid_power: float = 1.0,
                 variable: str = "s"):  # fmt: skip
        self.steps, self.order, self.corrector = steps, order, corrector
        self.p, self.variable = grid_power, variable

    def _phi(self, model, c):
        if self.variable == "s":
            return lambda v: v
        sch, abar, sbar = model.schedule, float(c.abar), float(c.sbar)
        snr_t = float(sch.alpha(c.t)) ** 2 / float(sch.sigma(c.t)) ** 2

        def t_star(v):  # Proposition 2: t* = g^{-1}(1 / P(s))
            sb = (1 - v) + v * sbar
            prec = snr_t + (v * abar / sb) ** 2 if sb > 0 else math.inf
            return 1.0 if prec == math.inf else float(sch.g_inv(torch.tensor(1 / prec, dtype=F64)))

        return np.vectorize(t_star)

    def transition(self, model, x, t, t_next, generator=None):
        c = glass.GLASS(1).coefficients(model.schedule, torch.as_tensor(t, dtype=F64),
                                        torch.as_tensor(t_next, dtype=F64))  # fmt: skip
        abar, sbar, gamma = float(c.abar), float(c.sbar), float(c.gamma)
        s = (np.arange(self.steps + 1) / self.steps) ** self.p
        phi = self._phi(model, c)
        x_t = x.to(F64)
        xbar = gamma * x_t + SBAR0 * torch.randn(x_t.shape, generator=generator, dtype=F64)

        def step(i0, i1, xb, ds, at):  # from s[i0] to s[i1] with evaluations ds at inner times at
            w = step_weights(s[i0], s[i1], at, phi, abar, sbar)
            ratio = ((1 - s[i1]) + s[i1] * sbar) / ((1 - s[i0]) + s[i0] * sbar)
            return gamma * x_t + ratio * (xb - gamma * x_t) + sum(wj * d for wj, d in zip(w, ds))

        ds, prev = [], None
        for i in range(self.steps):
            d = glass_denoiser(model, x_t, xbar, float(s[i]), c)
            if self.corrector and i >= 1:  # redo the step s_{i-1} -> s_i with D_i
                k = min(self.order, i + 1)
                xbar = step(i - 1, i, prev, [d, *ds[::-1][: k - 1]], [s[i - m] for m in range(k)])
            ds.append(d)
            k = min(self.order, i + 1)
            prev = xbar
            xbar = step(i, i + 1, xbar, ds[::-1][:k], [s[i - m] for m in range(k)])
        return xbar


KERNELS = {
    "GLASS Euler (paper)": lambda n: glass.GLASS(n),
    "GLASS multistep (shipped: exp. Adams 2 + corrector)": lambda n: glass.GLASS(n, solver="multistep"),
    "GLASS midpoint (shipped, 2 NFE/step)": lambda n: (
        glass.GLASS(n // 2, solver="midpoint") if n % 2 == 0 else None
    ),
    "exp. Adams 2 (s)": lambda n: Adams(n, 2),
    "exp. Adams 3 (s)": lambda n: Adams(n, 3),
    "exp. Adams 2 (t*)": lambda n: Adams(n, 2, variable="t*"),
    "exp. Adams 3 + corrector": lambda n: Adams(n, 3, corrector=True),
    "exp. Adams 2 + corrector, start-dense": lambda n: Adams(n, 2, corrector=True, grid_power=1.5),
    "SDE (eq. 5)": lambda n: glass.SDE(n),
}


def measure(n: int) -> dict:
    out = {}
    for name, (t, tn) in {"posterior 0.2 -> 1": (0.2, 1.0), "transition 0.2 -> 0.6": (0.2, 0.6)}.items():
        r = accuracy.measure(t, tn, budgets=BUDGETS, n=n, n_energy=min(n, 200), kernels=KERNELS)
        tr, floor = r["trace_cov"], r["frechet_floor"]
        rows = {k: [{"nfe": x["nfe"], "excess_pct": 100 * (x["frechet"] - floor) / tr} for x in v]
                for k, v in r["kernels"].items()}  # fmt: skip
        reach = {k: [accuracy.nfe_to_reach(v, f, "excess_pct") for f in TARGETS] for k, v in rows.items()}
        out[name] = {"rows": rows, "nfe_to_target": reach, "floor_pct": 100 * floor / tr}
        print(name, json.dumps(reach), flush=True)
    return out


def markdown(res: dict) -> str:
    lines = ["# Inner solvers for fewer NFE (issue 19 item 4)", "",
             f"{res['date']}; {res['n']} samples x 8 points; excess Fréchet error in % of tr Cov "
             "(values within about ±0.1 of 0 are Monte-Carlo noise).", ""]  # fmt: skip
    cases = list(res["cases"])
    lines += ["| kernel | " + " | ".join(f"{c}: {f:g} %" for c in cases for f in TARGETS) + " |",
              "|---" * (1 + 2 * len(cases)) + "|"]  # fmt: skip
    for k in res["cases"][cases[0]]["nfe_to_target"]:
        reach = [v for c in cases for v in res["cases"][c]["nfe_to_target"][k]]
        lines.append(f"| {k} | " + " | ".join("> 32" if v is None else f"{v:.1f}" for v in reach) + " |")
    lines.append("")
    for case, r in res["cases"].items():
        head = "| kernel | " + " | ".join(f"{b}" for b in BUDGETS) + " | NFE to 2 % | to 0.5 % |"
        lines += [f"## {case}", "", head, "|---" * (len(BUDGETS) + 3) + "|"]
        for k, rows in r["rows"].items():
            by = {x["nfe"]: x["excess_pct"] for x in rows}
            cells = [f"{by[b]:.2f}" if b in by else "—" for b in BUDGETS]
            reach = ["> 32" if v is None else f"{v:.1f}" for v in r["nfe_to_target"][k]]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {reach[0]} | {reach[1]} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="samples per conditioning point")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the saved .json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.markdown_only:
        (out / "inner_solvers.md").write_text(markdown(json.loads((out / "inner_solvers.json").read_text())))
        return 0
    res = {"date": datetime.now().isoformat(timespec="seconds"), "n": args.n, "cases": measure(args.n)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "inner_solvers.json").write_text(json.dumps(res, indent=1))
    (out / "inner_solvers.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
