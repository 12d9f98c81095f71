"""What a mesh dialect is (work in progress: fleshed out with the signal model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    title: str
