"""Every use of Hydra's private API, and every reading of a library's message text, in one place.

Hydra has no public call for four things glass needs: splitting sweep overrides into jobs (its basic
sweeper's ``split_arguments``), building a launcher outside ``@hydra.main`` (``Callbacks`` and the
launcher plugin), a failed job's exception (``JobReturn._return_value``), and applying value
overrides to a composed config (``ConfigLoaderImpl._apply_overrides_to_config``, the last step of
its composition). Composition errors carry the offending key only in their message text, and so do
Python's ``TypeError`` for an unknown constructor argument and OmegaConf's interpolation errors.
``tests/test_hydra_api.py`` runs each function here against the installed Hydra and OmegaConf, so an
upgrade that changes any of them fails there, loudly, instead of degrading an error message somewhere
else.
"""

from __future__ import annotations

import re

__all__ = [
    "split_sweep", "make_launcher", "job_exception", "apply_value_overrides", "overridden_key",
    "unexpected_argument", "takes_no_arguments", "interpolation_reason", "literal", "launcher_problem",
    "launcher_names",
]  # fmt: skip


def split_sweep(parsed_overrides) -> list[list[str]]:
    """The cartesian product of parsed sweep overrides (``a=1,2 b=x,y``): one override list per job."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    (batch,) = BasicSweeper.split_arguments(parsed_overrides, None)
    return batch


def make_launcher(overrides: list[str], task_function):
    """Hydra's multirun master config with ``overrides`` and the launcher plugin it selects, set up
    to call ``task_function(cfg)`` per job (inside ``hydra.initialize_config_dir``)."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    loader = GlobalHydra.instance().config_loader()
    master = loader.load_configuration("config", overrides, run_mode=RunMode.MULTIRUN)
    context = HydraContext(config_loader=loader, callbacks=Callbacks(master))
    return Plugins.instance().instantiate_launcher(
        config=master, hydra_context=context, task_function=task_function
    )


def launcher_names() -> list[str]:
    """The ``hydra/launcher`` options installed (inside ``hydra.initialize_config_dir``)."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    return sorted(hydra.config_loader().get_group_options("hydra/launcher")) if hydra.is_initialized() else []


def job_exception(job_return) -> BaseException | None:
    """The exception a launched job raised (None when it completed)."""
    from hydra.core.utils import JobStatus

    if job_return.status == JobStatus.COMPLETED:
        return None
    return job_return._return_value


def apply_value_overrides(parsed_overrides, cfg) -> None:
    """Apply parsed value overrides (``key=v``, ``+key=v``, ``++key=v``, ``~key``; no config groups) to
    ``cfg`` in place, exactly as Hydra's composition does after it has merged the defaults list."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(parsed_overrides, cfg)


def overridden_key(message: str) -> str | None:
    """The key of a ``ConfigCompositionException`` for an override of a key that does not exist."""
    m = re.search(r"Could not override '([^']+)'", message)
    return m.group(1) if m else None


def unexpected_argument(message: str) -> str | None:
    """``Cls.__init__() got an unexpected keyword argument 'x'`` -> "unexpected option 'x'"."""
    m = re.match(r"^[\w.<>]+\.__init__\(\) got an unexpected keyword argument (.*)$", message)
    return f"unexpected option {m.group(1)}" if m else None


def takes_no_arguments(message: str) -> bool:
    """``Cls() takes no arguments``: a constructor without options was given some."""
    return re.match(r"^[\w.<>]+\(\) takes no arguments", message) is not None


def interpolation_reason(message: str) -> str:
    """OmegaConf's ``X raised while resolving interpolation: why`` -> ``why``."""
    return re.sub(r"^\w+ raised while resolving interpolation: ", "", message).strip('"')


def literal(value: str) -> str:
    """``value`` as a quoted override value that Hydra's grammar and OmegaConf's resolver both give
    back unchanged: ``${...}`` is not interpolated (a path such as ``sweeps/${now:%H}`` stays literal),
    quotes and backslashes survive. OmegaConf reads ``\\${`` as a literal ``${`` (backslashes before it
    doubled); Hydra's quoted strings unescape only backslashes before a quote or at the end."""
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", str(value))
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def launcher_problem(launcher) -> str | None:
    """What keeps a launcher from running any job, found before anything is written (None: nothing
    known). Reads the plugins' own attributes: the joblib launcher's keyword arguments
    (``launcher.joblib``), the submitit SLURM launcher's class."""
    import shutil

    name = type(launcher).__name__
    if name == "JoblibLauncher":
        n = getattr(launcher, "joblib", {}).get("n_jobs")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n == 0):
            return f"hydra.launcher.n_jobs must be a non-zero integer (-1: every CPU), got {n!r}"
        backend = getattr(launcher, "joblib", {}).get("backend")
        if backend not in (None, "loky"):  # the plugin replaces it with loky: it would be ignored
            return f"hydra.launcher.backend must be loky (the joblib launcher uses no other), got {backend!r}"
    if name in ("LocalLauncher", "SlurmLauncher"):  # submitit's: a job that may not run at all
        params = getattr(launcher, "params", {})
        minimum = {"timeout_min": 1, "cpus_per_task": 1, "tasks_per_node": 1, "nodes": 1, "gpus_per_node": 0,
                   "mem_gb": 1, "cpus_per_gpu": 1, "gpus_per_task": 0}  # fmt: skip
        for key, low in minimum.items():
            v = params.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                return f"hydra.launcher.{key} must be an integer >= {low}, got {v!r}"
    if name == "SlurmLauncher" and shutil.which("sbatch") is None:
        return (
            "hydra/launcher=submitit_slurm needs a SLURM cluster, and sbatch is not on PATH here "
            "(hydra/launcher=submitit_local runs the same code path on this machine)"
        )
    return None
