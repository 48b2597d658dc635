import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SCHEDULES = ["linear", "vp", "cosine"]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def floor_stats(exact, ref, repeats=6):
    """Noise floor of the energy distance at this sample size: (tolerance, far) where
    ``tolerance`` = 2 mean + 6 std of ED(fresh exact draw, ref) over ``repeats`` draws (the V-statistic
    is right-skewed and mixture proportions fluctuate, hence the factor 2), and ``far`` = 3 x the
    tolerance, a level an inexact kernel must exceed for a test to show it can fail."""
    from glass.metrics.oracle import energy_distance

    vals = torch.tensor([energy_distance(exact(), ref) for _ in range(repeats)])
    mean, std = float(vals.mean()), float(vals.std())
    tol = 2 * mean + 6 * std
    return tol, 3 * tol


# Modules whose tests start many processes (torchrun ranks, submitit and joblib workers, two copies of a
# sweep) run first, while this process is still small: the suite's peak memory is this process, which
# grows as tests load MNIST, Inception and models, plus the children alive at that moment.
FIRST = ("test_promptruns.py", "test_sweep_records.py", "test_sweep.py", "test_cli.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: the rest keep their order
