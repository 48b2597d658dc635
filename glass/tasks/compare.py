"""Several transition kernels run on the same inputs (``sampler=compare``): an experiment's concept, not
a sampler.

A comparison is the product ``samplers x steps`` (x ``rho`` for GLASS): e.g. ``samplers=[sde, glass,
ode]``, ``steps=[2, 8]``, ``rho=[ddpm, 0.4]`` gives SDE M=2, SDE M=8, GLASS(rho_DDPM) M=2, ... Hydra
composes each kernel's own config (``conf/sampler/<name>.yaml``) under ``kernels`` (see
``conf/sampler/compare.yaml``); each entry of the product is that config with ``steps`` (and ``rho``)
replaced, instantiated by Hydra, so the kernels are exactly those of ``sampler=<name>``. Tasks run
every kernel on the same inputs and the same random stream and report one row per kernel, labelled
by the kernel itself (``kernel.label``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Compare", "kernels_of"]


def _as_list(name: str, value) -> list:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Sequence) and len(value) > 0:
        return list(value)
    raise ValueError(f"{name} must be a value or a non-empty list, got {value!r}")


class Compare:
    """The kernels of a comparison; see the module docstring. ``kernels``: name -> kernel config."""

    def __init__(self, samplers=("sde", "glass", "ode"), steps=8, rho="ddpm", kernels=None):
        from omegaconf import OmegaConf

        from glass.config import UserError, instantiate

        configs = kernels if kernels is not None else _default_configs()
        known = sorted(configs)
        self.kernels = []
        for name in _as_list("samplers", samplers):
            if name not in configs:
                raise ValueError(f"samplers: unknown sampler {name!r}; choose from: {', '.join(known)}")
            for m in _as_list("steps", steps):
                for r in _as_list("rho", rho) if name == "glass" else [None]:
                    replaced = {"steps": m} if r is None else {"steps": m, "rho": r}
                    node = OmegaConf.merge(configs[name], replaced)
                    try:
                        self.kernels.append(instantiate(node, "sampler"))
                    except UserError as e:  # the outer instantiate reports it as one line
                        raise ValueError(str(e)) from None
        labels = [k.label for k in self.kernels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"the comparison lists a kernel twice: {labels}")

    def __repr__(self) -> str:
        return f"Compare({', '.join(k.label for k in self.kernels)})"


def _default_configs() -> dict:
    """The kernels' configs as Hydra composes them for ``sampler=compare`` (Python use without Hydra)."""
    from glass.config import compose

    return dict(compose(["sampler=compare"]).sampler.kernels)


def kernels_of(sampler) -> list[tuple[str, object]]:
    """``[(label, kernel)]`` for a comparison or a single kernel."""
    kernels = sampler.kernels if isinstance(sampler, Compare) else [sampler]
    return [(k.label, k) for k in kernels]
