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
