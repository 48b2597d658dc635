"""glass.hydra_api against the installed Hydra and OmegaConf: each private API and each message format
glass reads is exercised for real here, so an upgrade that changes one fails this file, loudly."""

import importlib.util

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from glass import hydra_api
from glass.config import config_dir


def test_split_sweep_is_the_cartesian_product():
    parsed = OverridesParser.create().parse_overrides(["a=1,2", "b=x,y", "c=3"])
    jobs = hydra_api.split_sweep(parsed)
    assert sorted(map(tuple, jobs)) == sorted(
        (f"a={a}", f"b={b}", "c=3") for a in (1, 2) for b in ("x", "y")
    )


def test_launcher_names_are_the_installed_launcher_configs():
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="t"):
        names = hydra_api.launcher_names()
    assert names[0] == "basic" and names == sorted(names)
    plugins = {"hydra_plugins.hydra_joblib_launcher": ["joblib"],
               "hydra_plugins.hydra_submitit_launcher": ["submitit_local", "submitit_slurm"]}  # fmt: skip
    for plugin, configs in plugins.items():
        installed = importlib.util.find_spec(plugin) is not None
        assert all((c in names) == installed for c in configs), (plugin, names)


def test_the_launcher_runs_the_task_function_and_reports_a_failed_job(tmp_path):
    from hydra import initialize_config_dir

    seen = []

    def task(cfg):
        seen.append(cfg.seed)
        if cfg.seed == 1:
            raise ValueError("boom")
        return "ok"

    overrides = ["hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.output_subdir=null",
                 f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="t"):
        launcher = hydra_api.make_launcher(overrides, task)
        returns = launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    assert seen == [0, 1]
    assert hydra_api.job_exception(returns[0]) is None
    err = hydra_api.job_exception(returns[1])
    assert isinstance(err, ValueError) and str(err) == "boom"


def test_composition_errors_name_the_key():
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="t"):
        with pytest.raises(ConfigCompositionException) as e:
            compose("config", overrides=["task.no_such_key=1"])
    assert hydra_api.overridden_key(str(e.value)) == "task.no_such_key"
    assert hydra_api.overridden_key("something else") is None


def test_python_and_omegaconf_messages_are_read():
    class Thing:
        def __init__(self, a=1):
            pass

    class Bare:
        pass

    with pytest.raises(TypeError) as e:
        Thing(b=2)
    assert hydra_api.unexpected_argument(str(e.value)) == "unexpected option 'b'"
    with pytest.raises(TypeError) as e:
        Bare(1)
    assert hydra_api.takes_no_arguments(str(e.value))
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.create({"x": "${oc.decode:'{'}"})
    with pytest.raises(OmegaConfBaseException) as e:
        OmegaConf.to_container(cfg, resolve=True)
    first = str(e.value).strip().splitlines()[0]
    assert "raised while resolving interpolation" in first
    assert not hydra_api.interpolation_reason(first).startswith(type(e.value).__name__)


def _both_ways(overrides):
    """(Hydra's own composition, glass's two-step one) of ``overrides``: each a config or the
    exception it raised, as (type name, message)."""
    from omegaconf import OmegaConf

    from glass import config

    def two_steps(ov):
        return config._compose_in_two_steps(config._parse(ov), ov, "config")

    out = []
    for compose in (config.hydra_compose, two_steps):
        try:
            cfg = compose(list(overrides))
            out.append((OmegaConf.to_container(cfg), OmegaConf.is_struct(cfg), OmegaConf.is_readonly(cfg)))
        except Exception as e:  # noqa: BLE001 - the exception is the result compared
            out.append((type(e).__name__, str(e)))
    return out


TWO_STEP_CASES = [
    [],
    ["model=gmm", "task.n=100", "sampler=glass", "sampler.rho=0.4", "seed=3"],
    ["sampler.rho=0.4", "model=gmm64", "model.schedule=vp", "sampler=glass"],  # values before groups
    ["sampler=compare", "sampler.steps=[2,4]", "sampler.samplers=[sde,glass]", "task.t=0.05"],
    ["task=value", "reward.target=3", "++seed=5", "hydra/launcher=joblib"],
    ["model=gmm", "+task.extra={a: 1, b: [1, 2]}", "~task.n", "out_dir='a b'"],
    ["task=generate", "task.transitions=5", "sampler=glass", "sampler.rho=ddpm", "metric=none"],
    # errors: Hydra's own exception and message either way
    ["task.no_such_key=1"],
    ["model=gmm", "+seed=1"],
    ["~task.no_such_key"],
    ["~task.n=12345"],
    ["model=no_such_model"],
    ["hydra.job.name=x", "seed=2"],  # the hydra node: Hydra's path whole
]


@pytest.mark.parametrize("overrides", TWO_STEP_CASES, ids=lambda ov: " ".join(ov) or "defaults")
def test_two_step_composition_is_hydras(overrides):
    hydra_way, two_steps = _both_ways(overrides)
    assert two_steps == hydra_way


def test_two_step_composition_is_hydras_for_every_definition_job():
    from glass.definitions import load, names
    from glass.reproduce import job_overrides

    for name in names():
        overrides, _ = job_overrides(load(name), "small", [])
        for ov in (overrides[0], overrides[-1]):
            hydra_way, two_steps = _both_ways(ov)
            assert two_steps == hydra_way, (name, ov)


def test_an_edited_config_file_is_composed_again(tmp_path, monkeypatch):
    import shutil

    from glass import config

    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    monkeypatch.setattr(config, "config_dir", lambda: conf)
    before = config.compose(["model=gmm"])
    text = (conf / "model" / "gmm.yaml").read_text()
    (conf / "model" / "gmm.yaml").write_text(text + "\nedited_marker: 7\n")
    after = config.compose(["model=gmm"])
    assert "edited_marker" not in before.model and after.model.edited_marker == 7
