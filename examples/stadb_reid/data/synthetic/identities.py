"""What the generator draws from the seed: the persons' attributes and the cameras' looks.

Colours come from a small palette (12 colours), so identities share colours and patterns and
differ only in their combination; ``_identities`` keeps drawing until every identity has its
own clothing combination. Every camera's look (colour cast, exposure, blur, noise, JPEG quality,
background, person scale and offset, view mix, occlusion rate) is drawn once from the seed, and
``difficulty`` scales how far it departs from a neutral camera.

Examples:
    >>> people = _identities(3, seed=0)
    >>> len({p.signature() for p in people})
    3
    >>> _camera(0, seed=0, difficulty=0.0).gain
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__: list[str] = []


# ---------------------------------------------------------------------------------------- palette
_PALETTE = np.array(
    [
        (0.08, 0.08, 0.09),  # black
        (0.90, 0.90, 0.88),  # white
        (0.50, 0.50, 0.52),  # grey
        (0.75, 0.12, 0.13),  # red
        (0.16, 0.30, 0.72),  # blue
        (0.12, 0.14, 0.32),  # navy
        (0.16, 0.52, 0.22),  # green
        (0.88, 0.78, 0.16),  # yellow
        (0.45, 0.28, 0.15),  # brown
        (0.88, 0.50, 0.64),  # pink
        (0.78, 0.70, 0.54),  # beige
        (0.46, 0.22, 0.55),  # purple
    ],
    dtype=np.float32,
)
_SKIN = np.array([(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.68, 0.48, 0.34), (0.42, 0.29, 0.20)], np.float32)
_HAIR = np.array([(0.07, 0.06, 0.05), (0.30, 0.18, 0.09), (0.80, 0.66, 0.38), (0.55, 0.55, 0.55)], np.float32)
_UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo", "block")
_LOWER_TYPES = ("trousers", "shorts", "skirt")
_LOWER_PATTERNS = ("plain", "side_stripes", "checks")
_BAGS = ("none", "backpack", "handbag")
_VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class _Identity:
    upper: int
    upper2: int
    upper_pattern: str
    period: float  # stripe/check period as a fraction of the person height
    long_sleeves: bool
    lower: int
    lower2: int
    lower_type: str
    lower_pattern: str
    skin: int
    hair: int
    long_hair: bool
    shoes: int
    bag: str
    bag_colour: int
    bag_side: int  # -1 left, +1 right (in a front view)
    build: float
    height: float
    tint: tuple[float, float, float]  # small per-identity colour jitter

    def signature(self) -> tuple[int, int, str, int, int, str, str]:
        """The clothing combination that must be unique per identity."""
        return (
            self.upper,
            self.upper2,
            self.upper_pattern,
            self.lower,
            self.lower2,
            self.lower_type,
            self.lower_pattern,
        )


@dataclass(frozen=True)
class _Camera:
    gain: tuple[float, float, float]
    brightness: float
    gamma: float
    ramp: float  # left-to-right lighting gradient
    blur: float  # Gaussian blur sigma at 128-pixel height
    lowres: float  # down-scaling factor before upsampling back (1 = none)
    noise: float
    jpeg_quality: int
    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    horizon: float
    scale: float  # person height / image height
    offset: float  # horizontal person offset / image width
    view_probs: tuple[float, float, float]
    occlusion: float
    clutter: float  # scales the number of background objects


def _pick_other(rng: np.random.Generator, n: int, exclude: int) -> int:
    value = int(rng.integers(n - 1))
    return value + (value >= exclude)


def _random_identity(rng: np.random.Generator) -> _Identity:
    n = len(_PALETTE)
    upper = int(rng.integers(n))
    lower = int(rng.integers(n))
    return _Identity(
        upper=upper,
        upper2=_pick_other(rng, n, upper),
        upper_pattern=str(rng.choice(_UPPER_PATTERNS)),
        period=float(rng.choice([0.035, 0.05, 0.07])),
        long_sleeves=bool(rng.random() < 0.6),
        lower=lower,
        lower2=_pick_other(rng, n, lower),
        lower_type=str(rng.choice(_LOWER_TYPES, p=[0.6, 0.2, 0.2])),
        lower_pattern=str(rng.choice(_LOWER_PATTERNS, p=[0.6, 0.2, 0.2])),
        skin=int(rng.integers(len(_SKIN))),
        hair=int(rng.integers(len(_HAIR))),
        long_hair=bool(rng.random() < 0.35),
        shoes=int(rng.choice([0, 1, 2, 8])),
        bag=str(rng.choice(_BAGS, p=[0.5, 0.3, 0.2])),
        bag_colour=int(rng.integers(n)),
        bag_side=int(rng.choice([-1, 1])),
        build=float(rng.uniform(0.85, 1.15)),
        height=float(rng.uniform(0.92, 1.04)),
        tint=(float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03))),
    )


def _identities(count: int, seed: int) -> list[_Identity]:
    rng = np.random.default_rng([seed, 0])
    out: list[_Identity] = []
    seen: set[tuple[int, int, str, int, int, str, str]] = set()
    while len(out) < count:
        identity = _random_identity(rng)
        if identity.signature() not in seen:
            seen.add(identity.signature())
            out.append(identity)
    return out


def _muted(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(0.25, 0.7)
    r, g, b = (np.clip(base + rng.normal(0, 0.08, 3), 0.05, 0.95)).tolist()
    return (float(r), float(g), float(b))


def _camera(index: int, seed: int, difficulty: float = 1.0) -> _Camera:
    """Draw camera ``index``; ``difficulty`` scales every departure from a neutral camera."""
    d = difficulty
    rng = np.random.default_rng([seed, 1, index])
    gain = np.exp(d * rng.normal(0, 0.2, 3))
    gain = gain / gain.mean()
    probs = rng.dirichlet([2.0, 2.0, 1.2])
    r, g, b = gain.tolist()
    p0, p1, p2 = probs.tolist()
    return _Camera(
        gain=(float(r), float(g), float(b)),
        brightness=1.0 + d * (float(rng.uniform(0.65, 1.25)) - 1.0),
        gamma=1.0 + d * (float(rng.uniform(0.8, 1.25)) - 1.0),
        ramp=d * float(rng.uniform(-0.25, 0.25)),
        blur=0.3 + d * (float(rng.uniform(0.4, 1.5)) - 0.3),
        lowres=1.0 + d * (float(rng.choice([1.0, 1.0, 1.6, 2.2])) - 1.0),
        noise=d * float(rng.uniform(0.01, 0.04)),
        jpeg_quality=round(95 - d * (95 - int(rng.integers(70, 95)))),
        wall=_muted(rng),
        floor=_muted(rng),
        horizon=float(rng.uniform(0.45, 0.75)),
        scale=float(rng.uniform(0.78, 0.92)),
        offset=d * float(rng.uniform(-0.08, 0.08)),
        view_probs=(float(p0), float(p1), float(p2)),
        occlusion=min(1.0, d * float(rng.uniform(0.15, 0.45))),
        clutter=d,
    )
