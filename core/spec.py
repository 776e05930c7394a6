"""StreamSpec: what an extractor produces, known before any weights are loaded."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

StreamKind = Literal["float", "index"]


@dataclass(frozen=True)
class StreamSpec:
    """Shape, type and timing of one feature stream.

    float streams are ``float32 [T, dim]``; index streams are ``int64 [T, n_codebooks]`` with values
    in ``[0, vocab_size)``. ``frame_rate`` is in frames per second of audio; ``sample_rate`` is the
    audio rate the extractor wants (``None`` when it reads no audio, e.g. precomputed files).
    """

    kind: StreamKind
    frame_rate: float
    dim: int | None = None
    vocab_size: int | None = None
    n_codebooks: int = 1
    sample_rate: int | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("float", "index"):
            raise ValueError(f"StreamSpec.kind must be 'float' or 'index', not {self.kind!r}")
        if not (isinstance(self.frame_rate, (int, float)) and self.frame_rate > 0 and math.isfinite(self.frame_rate)):
            raise ValueError(f"StreamSpec.frame_rate must be a positive number of Hz, not {self.frame_rate!r}")
        if self.kind == "float":
            if not (isinstance(self.dim, int) and self.dim > 0):
                raise ValueError(f"a float StreamSpec needs a positive integer dim, not {self.dim!r}")
        else:
            if not (isinstance(self.vocab_size, int) and self.vocab_size > 1):
                raise ValueError(f"an index StreamSpec needs vocab_size > 1, not {self.vocab_size!r}")
            if not (isinstance(self.n_codebooks, int) and self.n_codebooks >= 1):
                raise ValueError(f"n_codebooks must be a positive integer, not {self.n_codebooks!r}")
        if self.sample_rate is not None and not (isinstance(self.sample_rate, int) and self.sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive integer or None, not {self.sample_rate!r}")

    @property
    def width(self) -> int:
        """Columns of the stream tensor: dim for float streams, n_codebooks for index streams."""
        return int(self.dim) if self.kind == "float" else int(self.n_codebooks)

    @property
    def log_vocab_nats(self) -> float | None:
        """Largest possible entropy of one frame of an index stream, in nats."""
        if self.kind != "index":
            return None
        return self.n_codebooks * math.log(self.vocab_size)

    def describe(self) -> str:
        """A short human description, e.g. 'index 8x1024 @ 75 Hz'."""
        rate = f"{self.frame_rate:g} Hz"
        if self.kind == "float":
            return f"float {self.dim}-d @ {rate}"
        cb = f"{self.n_codebooks}x" if self.n_codebooks > 1 else ""
        return f"index {cb}{self.vocab_size} @ {rate}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSpec":
        """Inverse of to_dict."""
        return cls(**data)
