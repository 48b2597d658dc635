"""Several transition kernels run on the same inputs (``sampler=compare``).

A comparison is the product ``samplers x steps`` (x ``rho`` for GLASS): e.g. ``samplers=[sde, glass,
ode]``, ``steps=[2, 8]``, ``rho=[ddpm, 0.4]`` gives SDE M=2, SDE M=8, GLASS(rho_DDPM) M=2, ...
Each entry is built from ``conf/sampler/<name>.yaml`` with ``steps`` (and ``rho``) replaced, so the
kernels are exactly those of ``sampler=<name>``. Tasks run every kernel on the same noised images /
conditioning points and the same random stream, and report one row per kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Compare", "kernels_of", "label_of"]


def label_of(kernel) -> str:
    """Short human label: ``glass M=8``, ``glass(rho=0.4) M=8``, ``sde M=8``, ``ode(heun) M=8``."""
    name = type(kernel).__name__.lower()
    extra = []
    if name == "glass":
        if kernel.rho != "ddpm":
            extra.append(f"rho={kernel.rho:g}")
        if getattr(kernel, "kappa", None) is not None:
            extra.append(f"kappa={kernel.kappa:g}")
        if kernel.solver != "euler":
            extra.append(kernel.solver)
        if getattr(kernel, "grid", "uniform") != "uniform":
            extra.append(f"grid={kernel.grid}")
    if name == "ode" and kernel.method != "euler":
        extra.append(kernel.method)
    return f"{name}{'(' + ', '.join(extra) + ')' if extra else ''} M={kernel.steps}"


def _as_list(name: str, value) -> list:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Sequence) and len(value) > 0:
        return list(value)
    raise ValueError(f"sampler.{name} must be a value or a non-empty list, got {value!r}")


class Compare:
    """The kernels of a comparison; see the module docstring."""

    def __init__(self, samplers=("sde", "glass", "ode"), steps=8, rho="ddpm"):
        from omegaconf import OmegaConf

        from glass.config import UserError, config_dir, instantiate

        root = config_dir() / "sampler"
        known = sorted(p.stem for p in root.glob("*.yaml") if p.stem != "compare")
        self.kernels = []
        for name in _as_list("samplers", samplers):
            if name not in known:
                raise ValueError(
                    f"sampler.samplers: unknown sampler {name!r}; choose from: {', '.join(known)}"
                )
            for m in _as_list("steps", steps):
                for r in _as_list("rho", rho) if name == "glass" else [None]:
                    node = OmegaConf.load(root / f"{name}.yaml")
                    node.steps = m
                    if r is not None:
                        node.rho = r
                    try:
                        self.kernels.append(instantiate(node, "sampler"))
                    except UserError as e:  # the outer instantiate reports it as one line
                        raise ValueError(str(e)) from None
        labels = [label_of(k) for k in self.kernels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sampler: the comparison lists a kernel twice: {labels}")

    def __repr__(self) -> str:
        return f"Compare({', '.join(label_of(k) for k in self.kernels)})"


def kernels_of(sampler) -> list[tuple[str, object]]:
    """``[(label, kernel)]`` for a comparison or a single kernel."""
    kernels = sampler.kernels if isinstance(sampler, Compare) else [sampler]
    return [(label_of(k), k) for k in kernels]
