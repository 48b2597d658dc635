"""Damaged checkpoints and caches (issue 20, defects 5 and 6): an edited manifest is damage, found
before any sampling; FID reference statistics live under the run's output directory, are keyed by
what determines them, verified on load and rebuilt when damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import glass.models.mnist as mnist
from glass.cli import app
from glass.config import compose
from glass.metrics import FID, DefaultMetric, resolve_metric
from glass.models.mnist import ASSETS, load_checkpoint, load_flow, manifest_digest

runner = CliRunner()
SMALL = ["task.n=4", "sampler.steps=1", "task.points=1"]  # never reached: the runs below fail first


def copy_checkpoint(name: str, where: Path) -> tuple[Path, dict]:
    where.mkdir(parents=True, exist_ok=True)
    for ext in (".safetensors", ".json"):
        shutil.copy(ASSETS / f"{name}{ext}", where / f"{name}{ext}")
    return where / f"{name}.safetensors", json.loads((where / f"{name}.json").read_text())


def test_shipped_manifests_are_sealed():
    for path in sorted(ASSETS.glob("*.json")):
        manifest = json.loads(path.read_text())
        assert manifest["manifest_sha256"] == manifest_digest(manifest), path.name


def test_one_changed_number_in_a_manifest_is_damage(tmp_path):
    weights, manifest = copy_checkpoint("mnist_flow", tmp_path)
    load_checkpoint(weights, "glass train flow")  # the copy itself is fine
    (tmp_path / "mnist_flow.json").write_text(json.dumps({**manifest, "time_scale": 999.0}))
    with pytest.raises(ValueError, match="is damaged .* manifest_sha256.*glass train flow"):
        load_flow(weights)
    res = runner.invoke(app, ["run", f"model.path={weights}", *SMALL, f"out_dir={tmp_path / 'out'}"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "is damaged" in res.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_an_unsealed_manifest_is_refused_in_the_assets_and_accepted_elsewhere(tmp_path, monkeypatch):
    """A checkpoint exported before manifests were sealed still loads from the user's own directory;
    the shipped files must carry the seal."""
    weights, manifest = copy_checkpoint("mnist_flow", tmp_path)
    del manifest["manifest_sha256"]
    (tmp_path / "mnist_flow.json").write_text(json.dumps(manifest))
    load_flow(weights)
    monkeypatch.setattr(mnist, "ASSETS", tmp_path.resolve())
    with pytest.raises(ValueError, match="is damaged"):
        load_flow(weights)


def test_an_architecture_the_weights_do_not_fit_is_one_line(tmp_path):
    weights, manifest = copy_checkpoint("mnist_flow", tmp_path)
    for architecture in ({**manifest["architecture"], "block_out_channels": [16, 32, 32]}, {"nope": 1}):
        edited = mnist.seal_manifest({**manifest, "architecture": architecture})  # as a careless re-export
        (tmp_path / "mnist_flow.json").write_text(json.dumps(edited))
        with pytest.raises(ValueError, match="does not match its manifest's architecture.*glass train flow"):
            load_flow(weights)


def test_a_damaged_shipped_classifier_is_found_before_sampling(tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    copy_checkpoint("mnist_flow", assets)
    copy_checkpoint("mnist_classifier", assets)
    data = bytearray((assets / "mnist_classifier.safetensors").read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the weights
    (assets / "mnist_classifier.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(mnist, "ASSETS", assets.resolve())
    res = runner.invoke(app, ["run", *SMALL, f"out_dir={tmp_path / 'out'}"])  # the default MNIST job
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "mnist_classifier.safetensors" in res.stderr and "glass train classifier" in res.stderr
    assert not (tmp_path / "out" / "runs").exists()


# -- FID reference statistics


def test_fid_cache_is_verified_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    def fid():  # a new run: a new metric, nothing in memory
        return FID(n_reference=40, cache_dir=str(tmp_path / "cache"))

    mu, sigma = fid().reference_stats()
    (path,) = (tmp_path / "cache").glob("fid-ref-*.npz")
    import glass.metrics.fid as fid_module

    computed = []
    real = fid_module.feature_stats
    monkeypatch.setattr(fid_module, "feature_stats", lambda f: computed.append(1) or real(f))
    assert np.allclose(fid().reference_stats()[0], mu) and not computed  # read back, not recomputed

    path.write_bytes(path.read_bytes()[:100])  # truncated (BadZipFile before)
    again = fid().reference_stats()
    assert computed == [1]
    assert np.array_equal(again[0], mu) and np.array_equal(again[1], sigma)

    with np.load(path) as f:  # edited: the checksum no longer holds
        saved = dict(f)
    np.savez(path, **{**saved, "mu": saved["mu"] + 1.0})
    assert np.array_equal(fid().reference_stats()[0], mu)

    np.savez(path, mu=mu + 1, sigma=sigma)  # an older cache file without key or checksum
    assert np.array_equal(fid().reference_stats()[0], mu) and computed == [1, 1, 1]
    assert len(list((tmp_path / "cache").glob("fid-ref-*.npz"))) == 1
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_fid_cache_key_covers_the_reference_images(tmp_path, monkeypatch):
    """Other reference images (another data_root, an edited MNIST file) never reuse the statistics."""
    first = FID(n_reference=40, cache_dir=str(tmp_path)).reference_stats()
    fid = FID(n_reference=40, cache_dir=str(tmp_path))
    original = fid.reference_images
    monkeypatch.setattr(fid, "reference_images", lambda: original().flip(-1))
    second = fid.reference_stats()
    assert len(list(tmp_path.glob("fid-ref-*.npz"))) == 2 and not np.allclose(first[0], second[0])


def test_fid_caches_under_out_dir_and_an_unwritable_cache_fails_early(tmp_path):
    cfg = compose([f"out_dir={tmp_path / 'o'}"])
    assert cfg.metric.cache_dir == str(tmp_path / "o" / "cache")
    fid = resolve_metric(DefaultMetric(cache_dir=str(tmp_path / "o" / "cache")), "posterior", load_flow())
    assert isinstance(fid, FID) and fid.cache_dir == tmp_path / "o" / "cache"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="metric.cache_dir .* cannot be written"):
        resolve_metric(DefaultMetric(cache_dir=str(tmp_path / "a-file" / "cache")), "posterior", load_flow())
