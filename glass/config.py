"""Config composition with Hydra's compose API, and one-line errors for bad input.

Configs live in the top-level ``conf/`` directory (installed wheels carry a copy as
``glass/conf``). Every failure of composition (malformed override, unknown group option, unknown key)
or of validation (a constructor's ValueError) becomes a :class:`UserError` with one line that names
the bad value and what is allowed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from pathlib import Path

from glass.hydra_api import (
    apply_value_overrides,
    interpolation_reason,
    overridden_key,
    split_sweep,
    takes_no_arguments,
    unexpected_argument,
)  # fmt: skip

__all__ = ["UserError", "config_dir", "config_hash", "groups", "compose", "expand_sweep", "instantiate"]


class UserError(Exception):
    """Bad user input: the CLI prints ``error: <message>`` and exits with code 2."""


class RunFailed(Exception):
    """Jobs that were valid input failed while running (e.g. a sweep's job raised): the CLI prints
    ``error: <message>`` and exits with code 1, the code of every run-time failure."""


def config_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise UserError(
        f"cannot find the config directory (looked in {here / 'conf'} and {here.parent / 'conf'})"
    )


def groups(config_name: str = "config") -> dict[str, list[str]]:
    """Config groups used by ``conf/<config_name>.yaml`` and their options (in defaults order)."""
    root = config_dir()
    names = []
    for entry in _defaults(root / f"{config_name}.yaml"):
        if isinstance(entry, dict):
            names.extend(k for k in entry if (root / k).is_dir())
    return {g: sorted(p.stem for p in (root / g).glob("*.yaml")) for g in names}


def _defaults(path: Path) -> list:
    import yaml

    with open(path) as f:
        return (yaml.safe_load(f) or {}).get("defaults", [])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# Config keys that would carry a secret into config.yaml (which is saved with every run and sent to W&B).
_SECRET_KEY = re.compile(r"^(?:.*_)?(?:api_?key|token|secret|password|passwd)$", re.IGNORECASE)
_SECRET_ENV = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")


def _secret_message(subject: str) -> str:
    return (
        f"{subject}: secrets do not belong in the config (it is saved with every run); set the "
        "WANDB_API_KEY environment variable instead (W&B reads it from there; the hub: HF_TOKEN)"
    )


def _top_keys(config_name: str) -> list[str]:
    """Top-level keys of ``conf/<config_name>.yaml``: its groups, then its own keys."""
    import yaml

    with open(config_dir() / f"{config_name}.yaml") as f:
        own = [k for k in (yaml.safe_load(f) or {}) if k != "defaults"]
    return [*groups(config_name), *own]


MAX_KEY = 200  # no config key is longer (a longer one would reach the file system as a name)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a one-line message (a 100 kB override is not echoed)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 20]}...[{len(text)} characters]"


def check_no_sweep(overrides: list[str], hint: str) -> None:
    """One UserError for a sweep value (``a=1,2``) where sweeps are not taken; ``hint`` says what to do."""
    for o in _parse(overrides):
        if o.is_sweep_override():
            raise UserError(f"{shorten(o.input_line)!r} is a sweep; {hint}")


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for o in overrides:
        try:
            parsed.extend(parser.parse_overrides([o]))
        except OverrideParseException as e:
            quote = " (a value with spaces or other characters: quote it, key='a b')" if "=" in o else ""
            raise UserError(
                f"malformed override {shorten(o)!r}: {shorten(_first_line(e), 200)} (expected key=value, "
                f"e.g. task.t=0.2){quote}"
            ) from None
        if not parsed[-1].key_or_group:
            raise UserError(f"malformed override {o!r}: no key (expected key=value, e.g. task.t=0.2)")
        key = parsed[-1].key_or_group
        if len(key) > MAX_KEY or any(len(part) > 100 for part in re.split(r"[./]", key)):
            raise UserError(
                f"override key {shorten(key)!r} is too long ({len(key)} characters); no config has such a key"
            )
        if parsed[-1].is_sweep_override() and isinstance(parsed[-1].value(), Glob):
            raise UserError(f"{shorten(o)!r}: glob() sweeps are not supported; list the values (a=x,y,z)")
        if _SECRET_KEY.match(parsed[-1].key_or_group.rsplit(".", 1)[-1]):
            raise UserError(_secret_message(parsed[-1].key_or_group))
    return parsed


def _check_groups(parsed, config_name: str = "config") -> None:
    known = groups(config_name)
    top = None
    for o in parsed:
        key = o.key_or_group
        if "." not in key and "/" not in key and (o.is_delete() or o.is_add() or o.is_force_add()):
            top = top or _top_keys(config_name)
            if o.is_delete() and key in top:  # every run needs each group and top-level key
                hint = f"choose another option: {key}=NAME" if key in known else f"set it: {key}=VALUE"
                raise UserError(f"{o.input_line!r}: {key!r} cannot be deleted; {hint}")
            if not o.is_delete() and key not in top:  # nothing would read it: a typo, silently ignored
                raise UserError(f"unknown key {key!r}; allowed keys: {', '.join(top)}")
        if key in known and not o.is_delete():
            values = (
                list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            )
            for v in values:
                if v not in known[key]:
                    raise UserError(f"unknown {key} {v!r}; choose from: {', '.join(known[key])}")


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Cartesian product of the sweep overrides (``a=1,2 b=x,y``) with Hydra's basic sweeper."""
    from hydra.errors import HydraException

    parsed = _parse(overrides)
    _check_groups(parsed)
    for o in parsed:  # an empty sweep would drop every override: the basic sweeper yields one empty job
        if o.is_sweep_override() and not list(o.sweep_string_iterator()):
            raise UserError(f"{shorten(o.input_line)!r} gives no values (an empty sweep); give at least one")
    try:
        return split_sweep(parsed)
    except HydraException as e:
        raise UserError(_first_line(e)) from None


def compose(overrides: list[str], config_name: str = "config"):
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` (no sweeps) into a DictConfig."""
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    parsed = _parse(overrides)
    _check_groups(parsed, config_name)
    for o in parsed:
        if o.is_sweep_override():
            raise UserError(
                f"{o.input_line!r} is a sweep; add -m (glass run -m ...) to run one job per value"
            )
    try:
        cfg = _compose_in_two_steps(parsed, list(overrides), config_name)
    except MissingConfigException as e:
        raise UserError(_first_line(e)) from None
    except ConfigCompositionException as e:
        raise UserError(_composition_message(e, overrides, config_name)) from None
    except OmegaConfBaseException as e:
        raise UserError(_first_line(e)) from None
    _check_values(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def hydra_compose(overrides: list[str], config_name: str = "config"):
    """Hydra's own composition of ``conf/<config_name>.yaml`` with ``overrides`` (no checks, no cache)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="glass"):
        return _compose(config_name=config_name, overrides=list(overrides))


@functools.lru_cache(maxsize=32)
def _composed_groups(config_name: str, group_overrides: tuple[str, ...], files: tuple):
    """Hydra's composition with the config group overrides alone, cached; ``files`` (the conf files'
    paths, mtimes and sizes) is only part of the key, so an edited or moved config is composed again.
    Callers copy the result: it is shared."""
    return hydra_compose(list(group_overrides), config_name)


def _config_files(root: Path) -> tuple:
    """(directory, name, mtime, size) of every file under the config directory."""
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            st = os.stat(os.path.join(d, f))
            out.append((d, f, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _compose_in_two_steps(parsed, overrides: list[str], config_name: str):
    """Hydra's composition, with its expensive first step cached: the defaults list (the config group
    choices: YAML files read and merged, about 60 ms) once per distinct choice of groups, then the
    value overrides applied to a copy by Hydra's own function, so that the result and every error
    message are Hydra's (``tests/test_hydra_api.py`` holds the two paths equal). A sweep of 1,000 jobs
    composes in seconds instead of a minute. Overrides of the ``hydra`` node or with a package
    (``group@pkg=...``) take Hydra's path whole."""
    import copy

    root = config_dir()
    group_overrides, values = [], []
    for text, o in zip(overrides, parsed):
        key = o.key_or_group
        if o.package is not None or key == "hydra" or key.startswith("hydra."):
            return hydra_compose(overrides, config_name)
        if key.startswith("hydra/") or (root / key).is_dir():
            group_overrides.append(text)
        else:
            values.append(o)
    base = _composed_groups(config_name, tuple(group_overrides), _config_files(root))
    cfg = copy.deepcopy(base)
    apply_value_overrides(values, cfg)
    return cfg


def _check_values(cfg) -> None:
    """Refuse what composition lets through: interpolations that do not resolve, NaN or infinite
    numbers, and secrets (keys named like one, ``${oc.env:...}`` of one, the W&B key's value)."""
    import math
    import os

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    key = os.environ.get("WANDB_API_KEY", "")

    def walk(node, path, resolved):
        if isinstance(node, dict):
            for k, v in node.items():
                if not resolved and _SECRET_KEY.match(str(k)):
                    raise UserError(_secret_message(f"{path}{k}"))
                walk(v, f"{path}{k}.", resolved)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}{i}.", resolved)
        elif isinstance(node, str) and not resolved:
            m = _SECRET_ENV.search(node)
            if m and (_SECRET_KEY.match(m.group(1)) or "KEY" in m.group(1).upper()):
                raise UserError(_secret_message(f"{path[:-1]}=${{oc.env:{m.group(1)}}}"))
            if len(key) >= 8 and key in node:
                raise UserError(_secret_message(f"{path[:-1]} holds the value of WANDB_API_KEY"))
        elif isinstance(node, float) and resolved and not math.isfinite(node):
            raise UserError(f"{path[:-1]} must be a finite number, got {node}")

    walk(OmegaConf.to_container(cfg, resolve=False), "", False)
    try:
        values = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        where = getattr(e, "full_key", None) or "the config"
        why = interpolation_reason(_first_line(e))
        raise UserError(f"cannot resolve {where}: {why}") from None
    walk(values, "", True)


def _composition_message(e: BaseException, overrides: list[str], config_name: str = "config") -> str:
    key = overridden_key(str(e))
    if key is None:
        return _first_line(e)
    parent, _, leaf = key.rpartition(".")
    allowed = ""
    try:  # list the keys that do exist under the parent node (group choices only, so no recursion)
        from omegaconf import DictConfig, OmegaConf

        known = groups(config_name)
        base = compose(
            [o for o in overrides if "=" in o and o.split("=")[0].lstrip("+~") in known], config_name
        )
        node = OmegaConf.select(base, parent) if parent else base
        if isinstance(node, DictConfig):
            keys = [str(k) for k in node.keys() if not str(k).startswith("_")]
            own = any(o.split("=")[0].lstrip("+~") == f"{parent}._target_" for o in overrides)
            if not keys and not own:  # e.g. metric=correlation: a + would only be refused by its constructor
                return f"unknown key {key!r}: this {parent} takes no options"
            allowed = f"; allowed keys: {', '.join(keys)}" if keys else ""
    except UserError:
        pass
    hint = " (prefix with + to add a new key)" if parent else ""  # nothing reads a new top-level key
    return f"unknown key {key!r}{allowed}{hint}"


def config_message(what: str, node, msg: str) -> str:
    """A library error in Python argument names -> the config key: "steps must ..." from the
    ``sampler`` node reads "sampler.steps must ..."; other messages get "<what>: " in front."""
    if msg.startswith((f"{what}.", f"{what}:", f"{what} ", f"{what}=")):
        return msg
    first = re.match(r"^(\w+)[ :]", msg)
    if first and first.group(1) in node:
        return f"{what}.{msg}"
    return f"{what}: {msg}"


def instantiate(node, what: str):
    """``hydra.utils.instantiate`` with constructor errors turned into one-line UserErrors."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, (ValueError, TypeError)):
            msg, extra = _first_line(cause), []
            if takes_no_arguments(msg):
                extra = [str(k) for k in node if k != "_target_"]
                msg = f"unexpected option{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
            elif unexpected := unexpected_argument(msg):
                msg, extra = unexpected, re.findall(r"'(\w+)'", unexpected)[:1]
            if extra:  # e.g. a key of the group's default left over after reward._target_=my.Reward
                removes = " ".join(f"~{what}.{k}" for k in extra)
                msg += f" of {node.get('_target_')} (remove it with {removes})"
            raise UserError(config_message(what, node, msg)) from None
        if str(e).startswith("Error locating target"):  # Hydra's advice (HYDRA_FULL_ERROR) helps nobody here
            inner = e
            while inner.__cause__ is not None:  # the import's own error (a module that exists may fail)
                inner = inner.__cause__
            why = f" ({type(inner).__name__}: {_first_line(inner)})" if inner is not e else ""
            raise UserError(
                f"{what}._target_={node.get('_target_')} cannot be imported{why}: check the name, and that "
                "its module is installed or its directory on PYTHONPATH"
            ) from None
        raise UserError(f"{what}: {_first_line(e)}") from None


# Keys that do not change a job's results (where outputs and caches go, where metrics are logged).
_IGNORED = ("out_dir", "logger", "cache_dir")


def config_hash(cfg) -> str:
    """Hash of the resolved config (a DictConfig or its container), without the keys that only say
    where things are written. A prompt file (``task.prompts``) counts by its name and content, not by
    how its path is spelled: ``task.prompts_sha256``, which a built job records from the bytes it
    read (glass.runner.build_job), else the file's as it is now; and so do the reference images it
    names (``task.prompt_images_sha256``, absent where it names none)."""
    from omegaconf import OmegaConf

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in _IGNORED}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    data = strip(cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True))
    prompts = (data.get("task") or {}).get("prompts") if isinstance(data.get("task"), dict) else None
    if prompts:  # a prompt set is its file's content, not its path: an edited file is a new run
        task = data["task"]
        task["prompts"] = Path(str(prompts)).name  # prompts.txt, ./prompts.txt, /abs/prompts.txt: one run
        if not task.get("prompts_sha256"):
            with contextlib.suppress(OSError):  # a missing file is reported where the prompts are loaded
                content = Path(str(prompts)).expanduser().read_bytes()
                task["prompts_sha256"] = hashlib.sha256(content).hexdigest()
        if not task.get("prompt_images_sha256"):  # the reference images the file names, by content
            from glass.promptsets import images_sha256

            with contextlib.suppress(OSError, ValueError):  # reported where the prompts are loaded
                if (images := images_sha256(Path(str(prompts)).expanduser())) is not None:
                    task["prompt_images_sha256"] = images
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
