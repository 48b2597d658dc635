"""The Python API never returns a silently wrong number (issue 20, defect 8): each input below used to
be accepted (integer samples, a broadcast denoiser or network output, a kernel that does not exist,
NaN mixture parameters) or failed with a raw torch error; now each is one TypeError / ValueError
naming the argument, before any network call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glass.models import GaussianMixture, from_prediction, ring
from glass.samplers import DDPM, GLASS, ODE, SDE, generate

KERNELS = [GLASS(2), SDE(2), ODE(2), DDPM(2)]
IDS = ["glass", "sde", "ode", "ddpm"]


@pytest.fixture
def model():
    return ring()


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_bad_states_are_refused_before_any_network_call(model, kernel):
    x = torch.randn(16, 2, dtype=torch.float64)
    cases = [
        (dict(x=torch.ones(4, 2, dtype=torch.int64)), TypeError, "x must be a floating-point tensor"),
        (dict(x=np.zeros((4, 2))), TypeError, "x must be a torch.Tensor, got ndarray"),
        (dict(x=torch.randn(4, 3)), ValueError, r"x must have shape \(B, 2\)"),
        (dict(x=x, denoised=x[:1]), ValueError, r"denoised must be D_t\(x\) for every row"),
        (dict(x=x, t=torch.full((3,), 0.2)), ValueError, r"t must be a number or have shape \(16,\)"),
    ]
    for kwargs, error, message in cases:
        args = {"t": 0.2, "t_next": 0.5, **kwargs}
        model.nfe = 0
        with pytest.raises(error, match=message):
            kernel.transition(model, args.pop("x"), args.pop("t"), args.pop("t_next"), **args)
        assert model.nfe == 0, kwargs


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_nan_in_the_input_is_named_as_the_input(model, kernel):
    x = torch.randn(8, 2, dtype=torch.float64)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        kernel.transition(model, x, 0.2, 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        generate(model, kernel, 2, x=torch.zeros(4, 2, dtype=torch.int32))


def test_a_network_output_of_the_wrong_shape_is_not_broadcast():
    x = torch.randn(8, 2, dtype=torch.float64)
    narrow = from_prediction(lambda x, t: x[:, :1], "velocity", shape=(2,))
    with pytest.raises(ValueError, match=r"the network returned \(8, 1\) for x of shape \(8, 2\)"):
        GLASS(2).transition(narrow, x, 0.2, 0.5)
    with pytest.raises(ValueError, match="returned"):
        narrow.denoise(x, 0.2)


def test_mixture_parameters_and_kernels_that_do_not_exist(model):
    x = torch.randn(8, 2, dtype=torch.float64)
    for rho in (2, -1.5, float("nan"), "0.4", True):
        with pytest.raises(ValueError, match="rho must be 'ddpm' or a number in"):
            model.sample_transition(x, 0.2, 0.5, rho=rho)
    assert model.sample_transition(x, 0.2, 0.5, rho=np.float64(0.4)).shape == x.shape  # numpy scalars
    with pytest.raises(ValueError, match="means must be finite"):
        GaussianMixture(torch.tensor([[float("nan"), 0.0]]), 0.3)
    with pytest.raises(ValueError, match="weights must be"):
        GaussianMixture(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 0.3, torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="stds must be finite"):
        GaussianMixture(torch.tensor([[1.0, 0.0]]), float("inf"))


def test_numpy_scalars_are_numbers():
    assert GLASS(np.int64(4)).steps == 4 and type(GLASS(np.int64(4)).steps) is int
    assert SDE(np.int32(3)).steps == 3
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        GLASS(np.int64(0))


def test_more_bad_inputs_of_the_python_entry_points_are_one_clear_error():
    """Found by an audit of the public API: each was a raw IndexError / AttributeError / TypeError
    from deep inside, or silently ignored."""
    import glass
    from glass.rewards import LinearReward

    gmm = ring()
    cases = [
        (lambda: glass.time_grid([]), "a time grid must increase"),
        (lambda: glass.time_grid(["a"]), "the time grid must be an int K >= 1 or a list of times"),
        (lambda: glass.GaussianMixture([[1, 0], [-1, 0]], [0.2, 0.3, 0.4]), "stds must be one number or 2"),
        (lambda: glass.generate(gmm, "glass", 3, n=2), "kernel must be a transition kernel"),
        (lambda: glass.posterior(gmm, torch.zeros(2, 2), 0.5, None), "kernel must be a transition kernel"),
        (lambda: glass.generate(gmm, GLASS(2), 3, n=3, x=torch.zeros(2, 2)), "n = 3 but the starting x"),
        (lambda: glass.fk_steering(gmm, glass.GLASS(2), None, grid=2), "reward must be a callable"),
        (lambda: glass.best_of_n(gmm, GLASS(2), lambda x: x, 2, 2), r"returned shape \(2, 2\) for 2 samples"),
        (lambda: glass.fk_steering(gmm, glass.GLASS(2), LinearReward(), grid=2, intermediate="posterior",
                                   posterior_steps=0), "posterior_steps must be an integer >= 1"),
        (lambda: glass.fk_steering(gmm, glass.GLASS(2), LinearReward(), grid=2, posterior_steps=3),
         "posterior_steps applies to intermediate='posterior', not 'denoiser'"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    # numpy scalars are numbers like any other
    assert len(glass.time_grid(np.int64(4))) == 5
    assert glass.GLASS(2, rho=np.float32(0.5)).rho == 0.5
    assert float(glass.rho_ddpm("linear", 0.2, 0.5)) == float(glass.rho_ddpm(gmm.schedule, 0.2, 0.5))
    # a dtype by name, as from_pipe takes it
    named = glass.from_prediction(lambda x, t, **c: x, "x0", shape=(2,), dtype="bfloat16")
    assert named.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, got 'int8'"):
        glass.from_prediction(lambda x, t, **c: x, "x0", shape=(2,), dtype="int8")
