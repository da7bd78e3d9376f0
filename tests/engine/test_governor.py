"""pfs.governor.MemoryGovernor: a shared byte budget, FIFO, never exceeded."""

import random
import threading
import time

import pytest

from pfs.engine.governor import MemoryGovernor

JOIN = 30  # seconds a thread gets before we call it a deadlock


def _wait_for_ticket(gov: MemoryGovernor, n: int) -> None:
    """Wait until `n` acquire() calls have taken their place in the queue.

    Reads the governor's private ticket counter: it is the only way to know,
    without sleeping and hoping, that a blocked thread is queued."""
    deadline = time.monotonic() + JOIN
    while gov._next_ticket < n:
        assert time.monotonic() < deadline, "a thread never reached acquire()"
        time.sleep(0.001)


def test_limit_is_never_exceeded_and_nothing_deadlocks():
    limit = 1000
    gov = MemoryGovernor(limit)
    lock = threading.Lock()
    state = {"held": 0, "peak": 0}
    errors = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                n = rng.choice([1, rng.randint(1, limit // 4), rng.randint(1, limit)])
                gov.acquire(n)
                with lock:  # counted after acquire and before release: never more than the governor holds
                    state["held"] += n
                    state["peak"] = max(state["peak"], state["held"])
                    assert state["held"] <= limit, state
                    assert gov.used <= limit
                if rng.random() < 0.3:
                    time.sleep(0)
                with lock:
                    state["held"] -= n
                gov.release(n)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not [t for t in threads if t.is_alive()], "deadlock: threads still blocked in acquire()"
    assert not errors, errors
    assert state["held"] == 0
    assert gov.used == 0
    assert state["peak"] <= gov.peak <= limit
    assert gov.peak > limit // 2  # the threads really did overlap


def test_reserve_context_manager_releases_on_error():
    gov = MemoryGovernor(100)
    with pytest.raises(RuntimeError):
        with gov.reserve(60):
            assert gov.used == 60
            raise RuntimeError("boom")
    assert gov.used == 0
    with gov.reserve(100):  # the whole budget is available again
        assert gov.used == 100
    assert gov.peak == 100


def test_request_larger_than_the_limit_is_refused_at_once():
    gov = MemoryGovernor(100)
    with pytest.raises(ValueError):
        gov.acquire(101)
    assert gov.used == 0
    gov.acquire(100)  # exactly the limit is fine
    gov.release(100)


def test_non_positive_limit_and_over_release_are_refused():
    with pytest.raises(ValueError):
        MemoryGovernor(0)
    with pytest.raises(ValueError):
        MemoryGovernor(-1)
    gov = MemoryGovernor(10)
    gov.acquire(3)
    with pytest.raises(ValueError):
        gov.release(4)
    assert gov.used == 3


def test_big_request_is_not_starved_by_small_ones():
    """FIFO: while a big request waits, later small requests that would fit
    must queue behind it, and it is served first once there is room."""
    gov = MemoryGovernor(10)
    gov.acquire(8)  # ticket 0
    order = []
    acquired = {}

    def take(name: str, n: int) -> None:
        gov.acquire(n)
        order.append(name)
        acquired[name].set()
        if name == "big":
            gov.release(n)

    acquired["big"] = threading.Event()
    big = threading.Thread(target=take, args=("big", 10))
    big.start()
    _wait_for_ticket(gov, 2)
    smalls = []
    for i in range(3):
        acquired[f"small{i}"] = threading.Event()
        t = threading.Thread(target=take, args=(f"small{i}", 1))
        t.start()
        _wait_for_ticket(gov, 3 + i)
        smalls.append(t)

    # 8 + 1 would fit under 10, but the big request came first
    assert not acquired["small0"].wait(0.3), "a small request overtook the waiting big one"
    assert gov.used == 8
    gov.release(8)
    for t in [big, *smalls]:
        t.join(JOIN)
        assert not t.is_alive(), "deadlock"
    assert order[0] == "big", order
    assert sorted(order[1:]) == ["small0", "small1", "small2"]
    assert gov.used == 3
    assert gov.peak == 10
