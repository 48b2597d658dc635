"""Determinism: per-sample noise streams make results independent of chunk and batch sizes; the same
seed gives identical samples and metrics across reruns."""

import json

import pytest
import torch
from typer.testing import CliRunner

import glass
from glass.alignment import best_of_n, fk_steering
from glass.cli import app
from glass.models import random_mixture
from glass.noise import Streams, splitmix64
from glass.tasks.value import mc_value

runner = CliRunner()
MASK = (1 << 64) - 1


def splitmix64_reference(x: int) -> int:
    """SplitMix64 in Python integers (Steele et al. 2014), independent of the torch code."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def test_splitmix64_matches_the_reference_including_wraparound():
    vals = [0, 1, 7, 12345, 2**31, 2**62 + 3, 2**63 - 1]
    got = splitmix64(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert [g & MASK for g in got] == [splitmix64_reference(v) for v in vals]
    assert splitmix64_reference(0) == 0xE220A8397B1DCDAF  # the published first output for seed 0


def test_streams_are_standard_normal_and_independent():
    z = Streams(0, 20000).randn((20000, 16))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert abs(float((z**4).mean()) - 3) < 0.06  # Gaussian kurtosis
    c = torch.corrcoef(z[:, :4].T) - torch.eye(4, dtype=z.dtype)
    assert float(c.abs().max()) < 0.03
    a, b = Streams(0, 5).randn((5, 3)), Streams(1, 5).randn((5, 3))
    assert not torch.equal(a, b)
    s = Streams(0, 5)
    assert not torch.equal(s.randn((5, 3)), s.randn((5, 3)))  # the second draw is a new one
    # no stream is a (shifted) copy of another: neighbouring samples, seeds or draws are uncorrelated,
    # also one element apart, and share no value
    s = Streams(0, 2000)
    pairs = {"sample 2i, 2i + 1": (z[0::2], z[1::2]),
             "seed 0, 1": (z[:2000], Streams(1, 2000).randn((2000, 16))),
             "draw 0, 1": (s.randn((2000, 16)), s.randn((2000, 16)))}  # fmt: skip
    for name, (u, v) in pairs.items():
        for shift in (0, 1):
            pair = torch.stack([u[:, shift:].flatten(), v[:, : v.shape[1] - shift].flatten()])
            assert abs(float(torch.corrcoef(pair)[0, 1])) < 0.02, (name, shift)
        assert not set(u.flatten().tolist()) & set(v.flatten().tolist()), name


def test_a_chunk_draws_what_the_batch_would_have_given_it():
    whole, parts = Streams(3, 10), Streams(3, 10)
    for _ in range(3):
        a = whole.randn((10, 2, 2))
        b = torch.cat([parts[0:4].randn((4, 2, 2)), parts[4:10].randn((6, 2, 2))])
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cannot draw"):
        Streams(0, 3).randn((4, 2))


@pytest.fixture(scope="module")
def gmm():
    return random_mixture(dim=6, n_components=3, scale=1.0, std=0.3, seed=0)


@pytest.mark.parametrize("kernel", [glass.GLASS(3), glass.SDE(3), glass.DDPM(2)], ids=repr)
def test_generation_does_not_depend_on_batch_size(gmm, kernel):
    big = glass.generate(gmm, kernel, 3, 8, generator=Streams(7, 8))
    small = glass.generate(gmm, kernel, 3, 3, generator=Streams(7, 3))
    assert torch.equal(big[:3], small)


@pytest.mark.parametrize("kernel", [glass.GLASS(2), glass.SDE(2)], ids=repr)
def test_fk_steering_does_not_depend_on_the_chunk_size(gmm, kernel):
    w = torch.ones(6, dtype=torch.float64)
    reward = lambda z: z @ w  # noqa: E731
    runs = [
        fk_steering(gmm, kernel, reward, 4, particles=6, groups=3, chunk=c, generator=Streams(11, 18))
        for c in (None, 5, 1)
    ]
    for r in runs[1:]:
        assert torch.equal(r.x, runs[0].x)
        assert torch.equal(r.log_weights, runs[0].log_weights)
        assert torch.equal(r.rewards, runs[0].rewards)
        assert r.nfe == runs[0].nfe


def test_best_of_n_and_value_do_not_depend_on_the_chunk_size(gmm):
    w = torch.ones(6, dtype=torch.float64)
    reward = lambda z: z @ w  # noqa: E731
    a = best_of_n(gmm, glass.GLASS(2), reward, 3, n=4, groups=5, chunk=None, generator=Streams(1, 20))
    b = best_of_n(gmm, glass.GLASS(2), reward, 3, n=4, groups=5, chunk=7, generator=Streams(1, 20))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    x_t = gmm.sample_marginal(5, 0.3, torch.Generator().manual_seed(0))
    v = [mc_value(gmm, glass.GLASS(3), reward, x_t, 0.3, 8, Streams(2, 40), chunk=c) for c in (2048, 16, 8)]
    assert torch.equal(v[0], v[1]) and torch.equal(v[0], v[2])


def _metrics(run_dir):
    rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
    # wall time varies; network_calls counts batched calls, which chunking changes by design
    return [{k: v for k, v in r.items() if "time" not in k and k != "network_calls"} for r in rows]


def _run(tmp_path, name, *args):
    out = tmp_path / name
    res = runner.invoke(app, ["run", *args, f"out_dir={out}"])
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in (out / "runs").glob("*/*") if (p / "metrics.json").is_file()]
    return run_dir


@pytest.mark.parametrize(
    "args,vary,batches",
    [
        (
            [
                "model=gmm",
                "task=fk_steering",
                "sampler=glass",
                "sampler.steps=2",
                "task.groups=4",
                "task.particles=6",
                "task.transitions=3",
            ],
            ("task.chunk=null", "task.chunk=5"), None,
        ),
        (
            ["model=gmm", "task=value", "sampler=sde", "sampler.steps=3", "task.points=6", "task.n=16"],
            ("task.chunk=2048", "task.chunk=16"), (1, 6),  # 16 samples a point: a point per batch
        ),
        (
            ["model=gmm", "task=posterior", "sampler=compare", "sampler.steps=3", "task.points=3",
             "task.n=50"],
            ("task.chunk=null", "task.chunk=7"), (1, 22),  # 150 rows: the last batch of 3
        ),
        (
            ["model=gmm", "task=generate", "sampler=compare", "sampler.steps=2", "task.transitions=3",
             "task.n=40"],
            ("task.chunk=null", "task.chunk=16"), (1, 3),
        ),
    ],  # fmt: skip
    ids=["fk-chunk", "value-chunk", "posterior-chunk", "generate-chunk"],
)
def test_cli_runs_are_identical_across_reruns_and_chunk_sizes(tmp_path, args, vary, batches):
    """The same numbers for any chunk size, with nfe per sample path; ``network_calls`` (where the
    task reports it) is nfe times the network batches the chunk size made, so the chunks did run."""
    a = _run(tmp_path, "a", *args, vary[0])
    b = _run(tmp_path, "b", *args, vary[1])
    assert _metrics(a) == _metrics(b)
    for run_dir, k in zip((a, b), batches or ()):
        rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
        assert [r.get("network_calls", r["nfe"]) for r in rows] == [r["nfe"] * k for r in rows]
    pa, pb = sorted(p.name for p in a.glob("*.png")), sorted(p.name for p in b.glob("*.png"))
    assert pa == pb and pa  # the sample plots, pixel for pixel
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in pa)


def test_generate_task_samples_do_not_depend_on_task_n(tmp_path):
    """task=generate draws sample i from stream i: the first 20 samples of n = 40 are those of n = 20."""
    from glass.tasks.generate import Generate

    gmm = random_mixture(dim=6, n_components=3, scale=1.0, std=0.3, seed=0)

    def samples(n):
        res = Generate(transitions=3, n=n)(
            gmm, glass.GLASS(2), lambda s, exact: {}, torch.Generator().manual_seed(5)
        )
        return res.samples["glass M=2"]

    assert torch.equal(samples(40)[:20], samples(20))


def test_injected_noise_is_the_same_in_chunks_and_the_callers_source_advances():
    """``generate(..., generator=Injected(...), chunk=...)``: each chunk takes its rows of the same draw
    (as Streams), so the result is the unchunked one; the caller's source is used up, and too few draws
    for the transitions is an error in chunks too (was: every transition reused draw 0, silently)."""
    from glass.models.gmm import ring
    from glass.noise import Injected

    gmm = ring()
    draws = [torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
             for k in range(4)]  # fmt: skip
    whole = glass.generate(gmm, glass.GLASS(2), 3, n=6, generator=Injected(*draws))
    source = Injected(*draws)
    chunked = glass.generate(gmm, glass.GLASS(2), 3, n=6, generator=source, chunk=4)
    assert torch.equal(whole, chunked) and source.remaining == 0
    other = glass.generate(gmm, glass.GLASS(2), 3, n=6, generator=Injected(draws[0], *draws[1:][::-1]))
    assert not torch.allclose(whole, other)  # the draws are used, in order
    with pytest.raises(ValueError, match="used up"):
        glass.generate(gmm, glass.GLASS(2), 3, n=6, generator=Injected(*draws[:2]), chunk=4)
    with pytest.raises(ValueError, match="share their first"):
        Injected(torch.zeros(6, 2), torch.zeros(5, 2))


def test_posterior_in_chunks_draws_what_one_batch_draws():
    """``glass.posterior(..., chunk=k)`` with per-sample Streams: the chunks give the unchunked samples
    (each row's x_t noise, then its transition noise, from its own stream); ``progress`` is called
    once per chunk; a bad chunk is one clear error."""
    from glass.models.gmm import ring

    gmm, images = ring(), torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    whole = glass.posterior(gmm, images, 0.3, glass.GLASS(3), n=4, generator=Streams(7, 12))
    calls = []
    chunked = glass.posterior(gmm, images, 0.3, glass.GLASS(3), n=4, generator=Streams(7, 12), chunk=5,
                              progress=lambda *a: calls.append(a))  # fmt: skip
    assert whole.shape == (3, 4, 2) and torch.equal(whole, chunked) and len(calls) == 3
    other = glass.posterior(gmm, images, 0.3, glass.GLASS(3), n=4, generator=Streams(8, 12), chunk=5)
    assert not torch.allclose(whole, other)  # the streams are used
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        glass.posterior(gmm, images, 0.3, glass.GLASS(3), chunk=0)
    with pytest.raises(ValueError, match="images holds no image; posterior needs at least one"):
        glass.posterior(gmm, images[:0], 0.3, glass.GLASS(3), n=2, chunk=2)  # not a range() error
    with pytest.raises(ValueError, match="images holds no image"):
        glass.posterior(gmm, [], 0.3, glass.GLASS(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_torch_generator_draws_on_its_own_device_for_a_model_on_another():
    """As diffusers' randn_tensor: a CPU generator serves a CUDA model with the CPU's numbers, and a
    CUDA generator serves glass.posterior (its x_t noise drawn on the generator's device)."""
    def shrink(x, t, **cond):  # an x0-predictor that runs on any device
        return 0.5 * x

    cpu = glass.from_prediction(shrink, "x0", shape=(2,))
    gpu = glass.from_prediction(shrink, "x0", shape=(2,), device="cuda")
    a = glass.generate(cpu, glass.GLASS(2), 3, n=8, generator=torch.Generator().manual_seed(0))
    b = glass.generate(gpu, glass.GLASS(2), 3, n=8, generator=torch.Generator().manual_seed(0))
    assert b.device.type == "cuda" and torch.allclose(a, b.cpu(), atol=1e-5)
    post = glass.posterior(gpu, torch.zeros(2, 2), 0.5, glass.GLASS(2), n=3,
                           generator=torch.Generator("cuda").manual_seed(0))  # fmt: skip
    assert post.shape == (2, 3, 2) and post.device.type == "cuda"
