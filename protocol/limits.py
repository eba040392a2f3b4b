"""Size limits enforced by the codec, so that a peer cannot make the other side allocate freely."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on one frame. Defaults fit a 500-line order with room to spare."""

    max_frame_bytes: int = 1024 * 1024
    max_name_length: int = 64
    max_id_length: int = 255
    max_text_length: int = 4000
    max_operations: int = 512
    max_call_id: int = 2**53 - 1


DEFAULT_LIMITS = Limits()
