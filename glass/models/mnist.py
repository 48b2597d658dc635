"""The shipped MNIST models: a flow-matching UNet (velocity, linear schedule) and a CNN classifier.

Images live in data space z in [-1, 1] (z = 2 * pixel / 255 - 1), shape (1, 28, 28), for both models.
Checkpoints are safetensors files with a JSON manifest beside them (``<name>.json``): architecture
config, training config, sha256 of the weights, final loss or accuracy, number of steps, and
``manifest_sha256``: the sha256 of the manifest's own content (every other key), so that one changed
number in the manifest (an architecture width, ``time_scale``) is found as damage, not used. They ship
in ``glass/assets/`` and are loaded by default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from glass.models.base import CallableModel, Capabilities

__all__ = [
    "ASSETS",
    "flow_unet",
    "Classifier",
    "MnistFlow",
    "load_flow",
    "load_classifier",
    "sha256",
    "manifest_digest",
    "seal_manifest",
    "load_checkpoint",
    "build_from_manifest",
    "to_data",
    "to_pixels",
]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FLOW_FILE = "mnist_flow.safetensors"  # in ASSETS: what a null path means (model=mnist's flow)
CLASSIFIER_FILE = "mnist_classifier.safetensors"  # in ASSETS: the classifier of every MNIST model
#: config ``_target_`` -> {key: the shipped checkpoint (in ASSETS) its null value reads}: what a config
#: names by omission (glass.weights.weights_digest records these files' digests with a job)
DEFAULT_CHECKPOINTS = {
    "glass.models.mnist.load_flow": {"path": FLOW_FILE, "classifier": CLASSIFIER_FILE},
    "glass.models.lowfreq.load_lowfreq_flow": {"classifier": CLASSIFIER_FILE},
    "glass.rewards.ClassifierLogProb": {"path": CLASSIFIER_FILE},
}
DEFAULT_UNET = {
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
}
TIME_SCALE = 1000.0  # the UNet's sinusoidal embedding sees t * 1000
CPU_CHUNK = 64  # model.chunk=auto on the CPU: images per UNet call (see load_flow)


def to_data(pixels: Tensor) -> Tensor:
    """[0, 1] images -> data space [-1, 1]."""
    return pixels * 2 - 1


def to_pixels(z: Tensor) -> Tensor:
    """Data space -> [0, 1] images (clamped)."""
    return ((z + 1) / 2).clamp(0, 1)


def flow_unet(**config) -> nn.Module:
    """diffusers ``UNet2DModel`` for 28 x 28 x 1 velocity prediction (lazy import)."""
    from diffusers import UNet2DModel

    cfg = {**DEFAULT_UNET, **config}
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, **cfg)


class Classifier(nn.Module):
    """Small CNN for MNIST on data-space inputs; ``features`` gives the 128-d penultimate layer
    (used as the FID feature extractor)."""

    def __init__(self, width: int = 32, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(2 * width * 49, hidden), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(hidden, 10))
        self.config = {"width": width, "hidden": hidden}

    def features(self, z: Tensor) -> Tensor:
        return self.body(z)

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.body(z))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's content without its ``manifest_sha256`` (canonical JSON, sorted keys)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_manifest(manifest: dict) -> dict:
    """The manifest with its ``manifest_sha256`` (written by every export)."""
    return {**manifest, "manifest_sha256": manifest_digest(manifest)}


def repo_path(path: str | Path) -> Path:
    """``path`` as given when absolute or present, else relative to the repository root (so the configs'
    ``glass/assets/...`` paths work from any working directory)."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else ASSETS.parent.parent / path


def load_checkpoint(path: str | Path, retrain: str) -> tuple[dict, dict]:
    """Load ``path`` (safetensors) and its manifest, checking both hashes (the weights' ``sha256`` and
    the manifest's own ``manifest_sha256``; a checkpoint exported before manifests were sealed has
    none, which is accepted outside ``glass/assets``). Errors say how to retrain."""
    from safetensors.torch import load_file

    path = Path(path)
    manifest_path = path.with_suffix(".json")
    hint = f"retrain it with `{retrain}`"
    if not path.is_file():
        raise ValueError(f"no checkpoint file {str(path)!r} (a .safetensors file with its .json manifest "
                         f"beside it; `{retrain}` makes one)")  # fmt: skip
    if not manifest_path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} has no manifest {manifest_path.name!r} beside it; {hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest["architecture"], dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise ValueError(f"the manifest {str(manifest_path)!r} is unreadable or incomplete; {hint}") from None
    shipped = path.resolve().parent == ASSETS
    sealed = manifest.get("manifest_sha256")
    if (sealed is not None or shipped) and sealed != manifest_digest(manifest):
        raise ValueError(
            f"the manifest {str(manifest_path)!r} is damaged (its content does not match its "
            f"manifest_sha256); {hint}"
        )
    digest = sha256(path)
    if digest != manifest.get("sha256"):
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupted (sha256 {digest[:12]}... does not match its "
            f"manifest); {hint}"
        )
    try:
        return load_file(str(path)), manifest
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}); {hint}") from None


class MnistFlow(CallableModel):
    """The MNIST flow model behind the denoiser interface (velocity prediction, linear schedule)."""

    capabilities = Capabilities(data=True, classifier=True)

    def __init__(
        self,
        net: nn.Module,
        device: str = "cpu",
        time_scale: float = TIME_SCALE,
        data_root: str | None = None,
        classifier: str | None = None,
        chunk: int | None = None,
    ):
        self.net = net.eval().requires_grad_(False).to(device)
        self.time_scale = time_scale
        self.chunk = chunk  # network calls in chunks of this many images (None: whole batch)
        self.data_root, self.classifier_path = data_root, classifier
        self._classifier: Classifier | None = None
        super().__init__(
            self._velocity, "velocity", "linear", shape=(1, 28, 28), dtype=torch.float32, device=device
        )

    # eager loops call ``denoise`` per step: on this UNet folding saves nothing measurable (GLASS costs
    # 1.01-1.02x bare calls either way, benchmarks/results/bench.md), and the plain loop keeps the
    # committed MNIST results bit for bit; a compiled transition (sampler.compile) folds it
    fold_eager = False

    def data_samples(self, n: int, generator=None, split: str = "test") -> tuple[Tensor, Tensor]:
        """``n`` distinct images of ``split`` drawn with ``generator`` (data space, float64, on the
        model's device) and their labels."""
        from glass.data import load_mnist

        images, labels = load_mnist(split, self.data_root)
        if n > len(images):
            raise ValueError(f"asked for {n} MNIST {split} images, the split has {len(images)}")
        idx = torch.randperm(len(images), generator=generator)[:n]
        return to_data(images[idx]).double().to(self.device), labels[idx]

    def data_point(self, index: int, split: str = "valid") -> tuple[Tensor, int]:
        """Image ``index`` of ``split`` (data space, float64, (1, 1, 28, 28) on the CPU) and its label:
        what ``reward.source=SPLIT:INDEX`` observes."""
        from glass.data import load_mnist

        images, labels = load_mnist(split, self.data_root)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
            raise ValueError(f"{split} index must be an integer in [0, {len(images) - 1}], got {index!r}")
        return to_data(images[index : index + 1]).double(), int(labels[index])

    def prepare(self) -> None:
        """The MNIST test set and the classifier (shipped or given) load now, before any sampling: a
        damaged checkpoint is one line before a run directory exists."""
        self.check_data()
        self.classifier()

    def check_data(self) -> None:
        """Fail early (before any run directory exists) when the MNIST test set cannot be loaded."""
        from glass.data import load_mnist

        load_mnist("test", self.data_root)

    def classifier(self) -> Classifier:
        """The shipped classifier (loaded once)."""
        if self._classifier is None:
            self._classifier = load_classifier(self.classifier_path, self.device)
        return self._classifier

    def classify(self, z: Tensor, batch: int = 128) -> Tensor:
        """Predicted labels of data-space images."""
        net = self.classifier()
        return torch.cat(
            [net(z[i : i + batch].float().to(self.device)).argmax(1).cpu() for i in range(0, len(z), batch)]
        )

    def _velocity(self, x: Tensor, t: Tensor) -> Tensor:
        n = self.chunk or len(x)
        if len(x) <= n:
            return self.net(x, t * self.time_scale).sample
        return torch.cat([self.net(x[i : i + n], t[i : i + n] * self.time_scale).sample
                          for i in range(0, len(x), n)])  # fmt: skip

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return f"MnistFlow({n / 1e6:.2f}M params)"


def load_flow(
    path: str | Path | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    classifier: str | None = None,
    compile: bool = False,
    chunk: int | str | None = "auto",
) -> MnistFlow:
    """Load the shipped (or given) MNIST flow checkpoint (``model=mnist``). ``data_root`` and
    ``classifier`` are where the task's data images and the label classifier come from; ``compile``
    wraps the UNet in ``torch.compile``; ``chunk`` calls the UNet on at most that many images at a
    time: ``"auto"`` is 64 on the CPU, where large batches cost more per image (their activations
    leave the caches; "Batch sizes" in benchmarks/results/bench.md), and the whole batch on a GPU;
    None is the whole batch. The same numbers to float32 rounding, bit for bit on this CPU for
    multiples of 64 (the default run's 256 images; other sizes may take other conv kernels)."""
    check_device(device)
    if not isinstance(compile, bool):
        raise ValueError(f"model.compile must be true or false, got {compile!r}")
    if chunk == "auto":
        chunk = CPU_CHUNK if torch.device(device).type == "cpu" else None
    elif chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"model.chunk must be auto, null or an integer >= 1, got {chunk!r}")
    path = repo_path(path) if path else ASSETS / FLOW_FILE
    state, manifest = load_checkpoint(path, "glass train flow")
    prior = manifest.get("prior", {"name": "gaussian"})  # the first exports predate the key: Gaussian
    if not isinstance(prior, dict) or prior.get("name") != "gaussian":
        raise ValueError(  # its samples would start from noise the network never saw
            f"{str(path)!r} was trained with another prior ({prior!r}), not the Gaussian one "
            "model=mnist samples from; use model=mnist_lowfreq"
        )
    with torch.inference_mode(False):  # normal tensors even when loaded inside an inference-mode run
        net = build_from_manifest(flow_unet, manifest, state, path, "glass train flow")
    time_scale = manifest.get("time_scale", TIME_SCALE)
    if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) or not time_scale > 0:
        raise ValueError(f"the manifest of {str(path)!r} has no valid time_scale ({time_scale!r}); "
                         "retrain it with `glass train flow`")  # fmt: skip
    model = MnistFlow(net, device, float(time_scale), data_root, classifier, chunk)
    return model.compile() if compile else model


def check_device(device: str, key: str = "model.device") -> None:
    """One clear error for a device string torch cannot use here (``key`` names the option)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{key} must be a torch device such as cpu or cuda, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}={device!r} but no CUDA GPU is available here; use {key}=cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{key}={device!r} but MPS is not available here; use {key}=cpu")


def load_classifier(path: str | Path | None = None, device: str = "cpu") -> Classifier:
    """Load the shipped (or given) MNIST classifier checkpoint (eval mode)."""
    path = repo_path(path) if path else ASSETS / CLASSIFIER_FILE
    state, manifest = load_checkpoint(path, "glass train classifier")
    # weights are built outside inference mode whatever the caller's mode, so a classifier first
    # loaded inside a no-gradient run still works in a later reward-gradient (guidance) run
    with torch.inference_mode(False):
        net = build_from_manifest(Classifier, manifest, state, path, "glass train classifier")
        return net.eval().requires_grad_(False).to(device)


def build_from_manifest(build, manifest: dict, state: dict, path, retrain: str) -> nn.Module:
    """``build(**manifest["architecture"])`` with the checkpoint's weights loaded; an architecture the
    constructor refuses, or weights that do not fit it, is one ValueError saying how to retrain."""
    try:
        net = build(**manifest["architecture"])
        net.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} does not match its manifest's architecture ({why}); retrain it with "
            f"`{retrain}`"
        ) from None
    return net
