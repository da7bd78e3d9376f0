"""The store's set of volumes: how store.json lists them, their identity markers
and their status (online, missing, draining, full).

A volume is known by a small integer id that is never reused. Its marker
names the store and the volume, so an empty or foreign directory mounted in
its place reads as missing, never as an empty volume: nothing is ever written
there, and no file is forgotten because of it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pfs.errors import BucketMissingError, PfsError, UsageError, VolumeError
from pfs.volumes.base import Volume, open_volume
from pfs.volumes.local import LocalVolume

ACTIVE, DRAINING = "active", "draining"
ONLINE, MISSING, FULL = "online", "missing", "full"
#: Where a new store keeps its first volume, relative to the store's root.
FIRST_VOLUME = "volumes/0"
#: URL scheme -> the module the worker pool's forkserver imports for it.
PRELOAD = {"s3": "pfs.volumes.s3_warm"}
#: How long a remote volume's status holds: a look is a request to its server.
REMOTE_STATUS_SECONDS = 10.0


@dataclass(frozen=True)
class VolumeConfig:
    """One volume as store.json lists it. `url` is a directory (relative to the
    store's root when it lies inside it) or s3://bucket/prefix; `endpoint` is
    its S3 server where not the standard AWS one (credentials come from the
    standard AWS places, never from the store)."""

    id: int
    url: str
    weight: float = 1.0
    state: str = ACTIVE
    endpoint: str = ""

    @classmethod
    def from_dict(cls, d: object) -> VolumeConfig:
        """A listed volume; ValueError unless it is what pfs writes."""
        if type(d) is not dict or set(d) - {"id", "url", "weight", "state", "endpoint"}:
            raise ValueError("not a volume")
        v = cls(**d)
        if type(v.id) is not int or not 0 <= v.id < 1 << 31 or type(v.url) is not str or not v.url or \
                type(v.weight) not in (int, float) or not 0 < v.weight < 1e9 or v.state not in (ACTIVE, DRAINING) \
                or type(v.endpoint) is not str:
            raise ValueError(f"volume {d.get('id')!r} is not a volume")
        return v

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "endpoint" or v}


def parse_volumes(listed: object) -> list[VolumeConfig]:
    """store.json's "volumes": ValueError unless a non-empty list of distinct volumes."""
    if type(listed) is not list or not listed:
        raise ValueError("no volumes")
    volumes = [VolumeConfig.from_dict(d) for d in listed]
    if len({v.id for v in volumes}) != len(volumes) or len({v.url for v in volumes}) != len(volumes):
        raise ValueError("a volume is listed twice")
    return volumes


class VolumeSet:
    """The store's volumes, opened, with their status as of the last refresh()."""

    def __init__(self, root: Path, store_id: str, configs: list[VolumeConfig]) -> None:
        self.root = root
        self.store_id = store_id
        self.configs = {c.id: c for c in configs}
        self._open: dict[int, Volume] = {}
        self._status: dict[int, tuple[str, float]] = {}  # vid -> (status, when looked at)
        self._why: dict[int, str] = {}  # vid -> why it is missing, when it is
        #: Where a remote volume's status is looked at, when not here: the worker
        #: pool, whose processes have the backend's client at hand (making boto3's
        #: here took 0.7 s of CPU before a get could start); status() otherwise.
        self.prober: Callable[[Volume], tuple[str, str]] | None = None

    # -- opening ------------------------------------------------------------------

    def location(self, config: VolumeConfig) -> str:
        """Where the volume is: a relative directory is inside the store."""
        if "://" in config.url or os.path.isabs(config.url):
            return config.url
        return str(self.root / config.url)

    def describe(self, vid: int) -> dict:
        """What a worker process needs to open volume `vid` (see Volume.describe)."""
        return self.volume(vid).describe()

    def volume(self, vid: int) -> Volume:
        volume = self._open.get(vid)
        if volume is None:
            config = self.configs[vid]
            endpoint = {"endpoint": config.endpoint} if config.endpoint else {}
            volume = self._open[vid] = open_volume({"url": self.location(config), "store_id": self.store_id,
                                                    "volume_id": str(vid), **endpoint})
        return volume

    def preload(self) -> tuple[str, ...]:
        """What the worker pool's forkserver imports for the volumes' backends,
        once, rather than each worker (see pfs.volumes.s3_warm)."""
        schemes = {c.url.split("://", 1)[0].lower() for c in self.configs.values()}
        return tuple(sorted(PRELOAD[s] for s in schemes if s in PRELOAD))

    # -- status ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Forget what may have changed since: is each volume there, is it ours,
        has it room? A volume is looked at again when its status is next asked
        for, so a command looks only at the volumes it uses; a local volume's
        look is a stat, a remote one's a request, so its status holds for
        REMOTE_STATUS_SECONDS (a shell's `list` does not ask every server)."""
        now = time.monotonic()
        self._status = {vid: (status, looked) for vid, (status, looked) in self._status.items()
                        if self._remote(vid) and now - looked < REMOTE_STATUS_SECONDS}

    def _remote(self, vid: int) -> bool:
        return vid in self.configs and "://" in self.configs[vid].url

    def _look(self, vid: int) -> str:
        try:
            volume = self.volume(vid)
            found, why = self.prober(volume) if self.prober and self._remote(vid) else volume.diagnose()
        except PfsError as exc:
            found, why = MISSING, str(exc)
        self._why[vid] = why
        if found == MISSING:
            return MISSING
        return DRAINING if self.configs[vid].state == DRAINING else found

    def why(self, vid: int) -> str:
        """Why a missing volume is missing, as last looked at."""
        return self._why.get(vid) or f"volume {vid} is not configured"

    def status(self, vid: int, ask: bool = True) -> str:
        """The volume's status, looked at if not known; without `ask`, a remote
        volume's is not asked of its server (what a listing shows needs no round
        trip to every server): unknown, it counts as online."""
        if vid not in self.configs:
            return MISSING
        if vid not in self._status:
            if not ask and self._remote(vid):
                return DRAINING if self.configs[vid].state == DRAINING else ONLINE
            self._status[vid] = (self._look(vid), time.monotonic())
        return self._status[vid][0]

    def readable(self, vid: int) -> bool:
        """Whether parts can be read from (and repaired on) the volume: it is there and ours."""
        return self.status(vid) != MISSING

    def keeps(self, vid: int, ask: bool = True) -> bool:
        """Whether a piece on the volume counts towards redundancy (not missing, not draining)."""
        return self.status(vid, ask) in (ONLINE, FULL)

    def gone(self, vids: Iterable[int]) -> list[VolumeError]:
        """Of the local volumes among `vids`, those missing now, looked at afresh: a
        disk unmounted or a directory moved away while a put wrote to it, after
        the pieces it holds were flushed (so no flush failed to say so). A remote
        volume that does not answer has still stored what it acknowledged."""
        return [volume.missing() for vid in sorted(set(vids))
                if isinstance(volume := self.volume(vid), LocalVolume) and self._look(vid) == MISSING]

    def writable(self) -> dict[int, float]:
        """Volumes new pieces may go to, with their placement weight: the
        configured weight times free space (what a backend cannot measure counts
        as the most any other has), so fuller volumes get fewer parts."""
        online = [vid for vid in self.configs if self.status(vid) == ONLINE]
        free = {vid: _free(self.volume(vid)) for vid in online}
        known = [f for f in free.values() if f is not None]
        default = max(known, default=1 << 40)
        return {vid: self.configs[vid].weight * max(1, free[vid] if free[vid] is not None else default)
                for vid in online}

    def take(self, configs: list[VolumeConfig]) -> None:
        """Take up the configuration as the store now lists it (another pfs may have
        changed it); volumes whose place is unchanged stay open. New dicts replace
        the old ones, so other threads (jobs) still using those are not disturbed."""
        new = {c.id: c for c in configs}
        same = {vid for vid, c in new.items() if vid in self.configs and
                (c.url, c.endpoint) == (self.configs[vid].url, self.configs[vid].endpoint)}
        self._open = {vid: volume for vid, volume in self._open.items() if vid in same}
        self.configs = new
        self._status = {}

    # -- changes (the caller saves the configuration) ------------------------------------

    def add(self, url: str, weight: float, endpoint: str, next_id: int, create: bool = False) -> VolumeConfig:
        """Claim a new volume (its bucket first created, with `create`): refused if it
        is in use (listed already, another store's, or not empty). Its marker is
        written before store.json lists it."""
        if endpoint and "://" not in url:
            raise UsageError("--endpoint is for s3:// volumes only")
        config = VolumeConfig(next_id, url, weight, ACTIVE, endpoint)
        location = self.location(config)
        if any(self.location(c) == location for c in self.configs.values()):
            raise UsageError(f"{url} is already a volume of this store", "`volume list` shows them")
        self.configs[config.id] = config
        try:
            volume = self.volume(config.id)
            if create:
                volume.create()
            marker = volume.read_marker()
            if marker is not None:
                raise UsageError(f"{url} is already a volume (of {'this' if marker.get('store') == self.store_id else 'another'} store)",
                                 "give an empty directory or bucket")
            if not _empty(volume):
                raise UsageError(f"{url} is not empty", "give an empty directory or bucket")
            volume.write_marker(self.store_id, str(config.id))
        except VolumeError as exc:
            self.forget(config.id)
            advice = f"`volume add {url} --create-bucket` creates it; or check the URL and the endpoint" \
                if isinstance(exc, BucketMissingError) else exc.advice
            raise UsageError(f"cannot use {url} as a volume: {exc.message}", advice) from None
        except BaseException:
            self.forget(config.id)
            raise
        self._status.pop(config.id, None)
        return config

    def set_state(self, vid: int, state: str) -> None:
        self.configs[vid] = VolumeConfig(**{**asdict(self.configs[vid]), "state": state})
        self._status.pop(vid, None)

    def forget(self, vid: int) -> None:
        self.configs.pop(vid, None)
        self._open.pop(vid, None)
        self._status.pop(vid, None)

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.configs.values()]


def _empty(volume: Volume) -> bool:
    """No parts, and for a directory nothing at all but a new filesystem's lost+found."""
    if next(iter(volume.keys()), None) is not None:
        return False
    return not isinstance(volume, LocalVolume) or set(os.listdir(volume.root)) <= {"lost+found"}


def _free(volume: Volume) -> int | None:
    with contextlib.suppress(PfsError, OSError):
        return volume.free()
    return None
