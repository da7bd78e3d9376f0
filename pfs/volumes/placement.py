"""Where a part's copies or shards go: weighted rendezvous hashing.

Every volume gets a score for each key; a part's pieces go to the volumes with
the highest scores. The score depends only on the key, the volume and its
weight, so placement needs no table, and adding a volume moves only the parts
for which the new volume now scores highest (about its share of them).
"""

from __future__ import annotations

import math

import xxhash


def score(key: str, volume: int, weight: float) -> float:
    """-weight / ln(u), u uniform in (0, 1) from the hash of (volume, key): the
    highest score wins with probability proportional to the weight."""
    u = (xxhash.xxh64_intdigest(f"{volume}:{key}".encode()) + 0.5) / 2.0 ** 64
    return -weight / math.log(u)


def rank(key: str, weights: dict[int, float]) -> list[int]:
    """The volumes in order of preference for `key` (`weights`: volume id -> weight)."""
    return sorted(weights, key=lambda v: score(key, v, weights[v]), reverse=True)
