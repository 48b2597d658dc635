"""Per-sample noise streams: the k-th Gaussian draw of sample i is a function of (seed, i, k) only.

With a single ``torch.Generator`` the noise a sample receives depends on how many samples share its
batch and on the order in which chunks are processed, so ``task.chunk`` or a different batch size
changes the numbers. A :class:`Streams` object replaces the generator wherever a kernel draws noise
(:func:`randn`): sample i of a batch always gets draw ``counts[i]`` of its own stream, so the noise is
identical for every chunk size and batch size, on any device (the results too where the arithmetic is
exact per row, as on the oracle; a network's batch of another size may round differently). The
generator is counter-based (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"): the
SplitMix64 finaliser (Steele et al. 2014) hashes (seed, sample id, draw, element) to 64 random bits;
two such words give one standard normal by Box-Muller. Everything is vectorised integer arithmetic on
the device, with no host-device synchronisation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "Streams",
    "Generators",
    "Injected",
    "noise_source",
    "randn",
    "rows_of",
    "splitmix64",
    "indexed_seed",
]

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # as signed int64
_M1 = 0xBF58476D1CE4E5B9 - 2**64
_M2 = 0x94D049BB133111EB - 2**64


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """The SplitMix64 output function on int64 tensors (two's-complement wrap-around arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def indexed_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` (a prompt, an observed image) in a run with seed ``seed``: SplitMix64
    of both, 62 bits, so items of one run and runs of different seeds do not share streams (a
    ``torch.Generator`` seeded with it keeps the low 32 bits, well mixed: two items share a generator
    with probability 2^-32)."""
    z = splitmix64(splitmix64(torch.tensor(int(seed), dtype=torch.int64)) ^ int(index))
    return int(z & ((1 << 62) - 1))


def _uniform(bits: Tensor) -> Tensor:
    """Top 53 bits -> float64 uniform in (0, 1)."""
    return (_shr(bits, 11).to(torch.float64) + 0.5) * 2.0**-53


class Streams:
    """Independent noise streams for ``n`` samples (ids 0..n-1), seeded by ``seed``.

    ``streams[a:b]`` (or an index tensor) is a view on those samples that shares their draw counters,
    so a chunk of a batch draws exactly the noise the whole batch would have given it.
    """

    def __init__(self, seed: int, n: int, device: str | torch.device = "cpu", *, _ids=None, _counts=None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Streams needs n >= 1 samples, got {n!r}")
        self.seed = int(seed)
        self.device = torch.device(device)
        self._counts = torch.zeros(n, dtype=torch.int64, device=self.device) if _counts is None else _counts
        self.ids = torch.arange(n, device=self.device) if _ids is None else _ids
        self._key = splitmix64(torch.tensor(self.seed, dtype=torch.int64, device=self.device))  # once

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Streams(seed={self.seed}, samples={len(self)})"

    def __getitem__(self, index) -> Streams:
        ids = self.ids[index]
        if ids.ndim != 1:
            raise ValueError("index Streams with a slice or a 1-D index tensor")
        view = Streams.__new__(Streams)
        view.seed, view.device, view._counts, view.ids, view._key = (
            self.seed, self.device, self._counts, ids, self._key)  # fmt: skip
        return view

    def randn(self, shape, dtype=torch.float64, device=None) -> Tensor:
        """One standard-normal draw of ``shape`` = (len(self), ...): row r from stream ``ids[r]``."""
        shape = tuple(shape)
        if not shape or shape[0] != len(self.ids):
            raise ValueError(f"Streams for {len(self.ids)} samples cannot draw a batch of shape {shape}")
        per = math.prod(shape[1:])
        counts = self._counts[self.ids]
        self._counts[self.ids] = counts + 1
        row = splitmix64(splitmix64(self._key ^ self.ids) + counts)  # (B,)
        j = torch.arange(per, dtype=torch.int64, device=self.device)
        a = splitmix64(row[:, None] + (2 * j + 1) * _GOLDEN)
        b = splitmix64(row[:, None] + (2 * j + 2) * _GOLDEN)
        z = torch.sqrt(-2 * torch.log(_uniform(a))) * torch.cos(2 * math.pi * _uniform(b))
        return z.reshape(shape).to(dtype=dtype, device=device or self.device)

    def derive_seed(self) -> int:
        """A seed for other random choices (e.g. resampling), fixed by this stream's seed."""
        return int(splitmix64(self._key ^ 0x5EED) & ((1 << 62) - 1))


class Generators:
    """One ``torch.Generator`` per sample, the diffusers idiom ``generator=[g0, g1, ...]``: row i of
    every draw comes from generator i, drawn with shape (1, ...) in ``draw_dtype`` on that generator's
    device as ``diffusers.utils.torch_utils.randn_tensor`` does (so a float32 pipeline's own first
    latents are ours), then cast; sample i's noise depends on its own generator only."""

    def __init__(self, generators, draw_dtype: torch.dtype = torch.float32):
        self.generators = list(generators)
        self.draw_dtype = draw_dtype  # diffusers draws latents in the pipeline's dtype (float32 here)
        if not self.generators or not all(isinstance(g, torch.Generator) for g in self.generators):
            raise ValueError("generator must be a torch.Generator, a list of torch.Generator (one per "
                             "sample), a glass.noise.Streams or None")  # fmt: skip

    def __len__(self) -> int:
        return len(self.generators)

    def __repr__(self) -> str:
        return f"Generators({len(self)})"

    def __getitem__(self, index) -> Generators:
        if isinstance(index, slice):
            return Generators(self.generators[index], self.draw_dtype)
        picked = [self.generators[int(i)] for i in torch.as_tensor(index).reshape(-1).tolist()]
        return Generators(picked, self.draw_dtype)

    def randn(self, shape, dtype=torch.float64, device=None) -> Tensor:
        shape = tuple(shape)
        if not shape or shape[0] != len(self):
            raise ValueError(f"generator is a list of {len(self)} generators (one per sample) but the batch "
                             f"has {shape[0] if shape else 0} samples")  # fmt: skip
        rows = [torch.randn((1, *shape[1:]), generator=g, dtype=self.draw_dtype, device=g.device)
                for g in self.generators]  # fmt: skip
        return torch.cat([r.to(device) for r in rows] if device is not None else rows).to(dtype)

    def derive_seed(self) -> int:
        return int(
            torch.randint(0, 2**62, (1,), generator=self.generators[0], device=self.generators[0].device)
        )


class Injected:
    """Noise given in advance (k-diffusion's injectable noise): draw k of sample i is row i of
    ``draws[k]``, checked for shape, so a kernel can be run on exactly the noise another sampler used.
    ``injected[a:b]`` (or an index tensor) is a view on those samples that shares their draw counters,
    as :class:`Streams`: a chunk of a batch (``chunk=``) draws the rows the whole batch would have
    given it, and the caller's source advances."""

    def __init__(self, *draws: Tensor, _rows: Tensor | None = None, _counts: Tensor | None = None):
        self.draws = list(draws)
        n = len(self.draws[0]) if self.draws else 0
        if any(d.ndim == 0 or len(d) != n for d in self.draws):
            sizes = [tuple(d.shape) for d in self.draws]
            raise ValueError(f"injected draws must share their first (batch) size, got shapes {sizes}")
        self._rows = torch.arange(n) if _rows is None else _rows
        self._counts = torch.zeros(n, dtype=torch.int64) if _counts is None else _counts

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"Injected({len(self.draws)} draws)"

    def __getitem__(self, index) -> Injected:
        rows = self._rows[index]
        if rows.ndim != 1:
            raise ValueError("index Injected with a slice or a 1-D index tensor")
        return Injected(*self.draws, _rows=rows, _counts=self._counts)

    @property
    def remaining(self) -> int:
        """Draws not yet made by every sample of this source."""
        done = int(self._counts[self._rows].min()) if len(self) else 0
        return len(self.draws) - done

    def randn(self, shape, dtype=torch.float64, device=None) -> Tensor:
        shape = tuple(shape)
        counts = self._counts[self._rows]
        k = int(counts.max()) if len(counts) else 0
        if len(counts) and int(counts.min()) != k:
            raise ValueError("the injected noise's samples are at different draws (rows drawn apart)")
        if k >= len(self.draws):
            raise ValueError("the injected noise is used up: give one tensor per draw the sampler makes")
        draw = self.draws[k]
        if (len(self), *draw.shape[1:]) != shape:
            raise ValueError(
                f"injected noise of shape {(len(self), *draw.shape[1:])} where the sampler draws {shape}"
            )
        self._counts[self._rows] = counts + 1
        return draw[self._rows.to(draw.device)].to(dtype=dtype, device=device or draw.device)

    def derive_seed(self) -> int:
        return 0


def noise_source(generator):
    """``generator=`` as the Python entry points accept it: None (torch's global generator), one
    ``torch.Generator``, a list or tuple of them (one per sample, as diffusers takes), :class:`Streams`
    or :class:`Injected`; anything else is a ValueError naming the argument."""
    if generator is None or isinstance(generator, (torch.Generator, Streams, Generators, Injected)):
        return generator
    if isinstance(generator, (list, tuple)):
        return Generators(generator)
    raise ValueError(
        "generator must be a torch.Generator, a list of torch.Generator (one per sample), a "
        f"glass.noise.Streams or None, got {type(generator).__name__}"
    )


def rows_of(generator, index):
    """The noise source of a chunk of a batch: those samples' :class:`Streams` (so the chunk draws
    what the whole batch would have given it), or a shared ``torch.Generator`` unchanged."""
    return generator[index] if isinstance(generator, (Streams, Generators, Injected)) else generator


def randn(shape, generator=None, dtype=torch.float64, device=None) -> Tensor:
    """Standard normal noise from any :func:`noise_source` (a ``torch.Generator``, torch's global one
    when None, a list of generators, :class:`Streams`, :class:`Injected`); every kernel draws its noise
    through here. A ``torch.Generator`` draws on its own device, then the noise moves to ``device``
    (as diffusers' ``randn_tensor``: a CPU generator serves a CUDA model, and the reverse)."""
    generator = noise_source(generator)
    if isinstance(generator, (Streams, Generators, Injected)):
        return generator.randn(shape, dtype=dtype, device=device)
    if generator is None:
        return torch.randn(tuple(shape), dtype=dtype, device=device)
    eps = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=generator.device)
    return eps if device is None else eps.to(device)
