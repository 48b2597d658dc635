"""Algebraic invariants (property-based), solver grids, lazy imports and logger robustness."""

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import glass
from glass.models import ring
from glass.samplers.glass import rho_ddpm, transition_coefficients

times = st.tuples(st.floats(0.0, 0.98), st.floats(0.01, 1.0)).filter(lambda p: p[0] + 1e-3 < p[1])


@settings(max_examples=200, deadline=None)
@given(schedule=st.sampled_from(["linear", "vp", "cosine"]), tt=times, rho=st.floats(-1.0, 1.0))
def test_eqs_12_13_preserve_the_marginal_for_every_rho(schedule, tt, rho):
    """x_{t'} = gamma x_t + abar z + sbar eps with x_t = alpha_t z + sigma_t eps' has signal
    coefficient alpha_{t'} and noise variance gamma^2 sigma_t^2 + sbar^2 = sigma_{t'}^2."""
    sch = glass.schedules.get(schedule)
    t, tn = tt
    c = transition_coefficients(sch, t, tn, rho)
    assert float(c.gamma * sch.alpha(t) + c.abar) == pytest.approx(float(sch.alpha(tn)), abs=1e-12)
    noise = c.gamma**2 * sch.sigma(t) ** 2 + c.sbar**2
    assert float(noise) == pytest.approx(float(sch.sigma(tn)) ** 2, abs=1e-12)
    assert float(c.abar) > 0


@settings(max_examples=100, deadline=None)
@given(schedule=st.sampled_from(["linear", "vp", "cosine"]), tt=times)
def test_rho_ddpm_is_a_correlation(schedule, tt):
    r = float(rho_ddpm(glass.schedules.get(schedule), *tt))
    assert 0.0 <= r < 1.0


class Recorder:
    """Wraps a model and records every time it is evaluated at."""

    def __init__(self, model):
        self.model, self.times = model, []
        self.schedule, self.shape = model.schedule, model.shape

    def denoise(self, x, t, **cond):
        self.times.append(torch.as_tensor(t, dtype=torch.float64).max().item())
        return self.model.denoise(x, t, **cond)

    def velocity(self, x, t, **cond):
        return self.schedule.x0_to_velocity(self.denoise(x, t, **cond), x, t)


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
@pytest.mark.parametrize("t_next", [0.7, 1.0])
def test_inner_solvers_never_evaluate_s_equal_1(solver, t_next):
    """Under rho_DDPM, t* reaches t' only at s = 1: every evaluation stays below."""
    rec = Recorder(ring())
    x = rec.model.sample_marginal(8, 0.3)
    glass.GLASS(6, solver=solver).transition(rec, x, 0.3, t_next)
    assert len(rec.times) == (6 if solver == "euler" else 12)
    assert rec.times[0] == pytest.approx(0.3)  # s = 0 is the plain denoiser at t
    assert max(rec.times) < t_next - 1e-6 and all(torch.isfinite(torch.tensor(rec.times)))


def test_heavy_libraries_are_imported_lazily():
    code = (
        "import sys, glass, glass.cli, glass.runner, glass.tasks, glass.metrics; "
        "print(sorted(m for m in ('diffusers', 'wandb', 'cleanfid', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wandb_failure_never_stops_a_run(tmp_path, monkeypatch, capsys):
    import wandb

    from glass.experiment import run

    def broken_init(*a, **k):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    base, rows = run(["model=gmm", "sampler=glass", "logger=wandb", "task.n=50", f"out_dir={tmp_path}"])
    assert (base / "metrics.json").is_file() and rows[0]["nfe"] == 8
    err = capsys.readouterr().err
    assert err.count("W&B init failed") == 1 and "no network" in err


def test_wandb_offline_run_logs_locally(tmp_path, monkeypatch):
    from glass.experiment import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    base, _ = run(["model=gmm", "sampler=glass", "logger=wandb", "task.n=50", f"out_dir={tmp_path}"])
    assert list((base / "wandb").glob("offline-run-*")), "an offline W&B run directory is written"
