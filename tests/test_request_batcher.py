"""serving/request_batcher.py on its own: concurrent requests share one call, a failure stays in its batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.request_batcher import QueueFull, RequestBatcher


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_requests_share_one_call() -> None:
    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = RequestBatcher(double, max_size=8, max_delay_s=5.0)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        finally:
            batcher.close()

    # A full batch runs at once, long before the 5 s delay.
    assert run(main()) == [2 * i for i in range(8)]
    assert calls == [list(range(8))]


def test_the_batch_size_caps_a_call_and_the_delay_closes_a_short_one() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        batcher = RequestBatcher(lambda items: calls.append(list(items)) or items, max_size=3, max_delay_s=0.05)
        try:
            answers = await asyncio.gather(*(batcher.submit(i) for i in range(7)))
            assert (batcher.batches, batcher.requests) == (3, 7)
            return answers
        finally:
            batcher.close()

    assert run(main()) == list(range(7))
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]


def test_requests_arriving_while_a_batch_runs_fill_the_next() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    def slow(items: list[str]) -> list[str]:
        calls.append(list(items))
        if items == ["first"]:
            release.wait(10)
        return items

    async def main() -> None:
        batcher = RequestBatcher(slow, max_size=8, max_delay_s=0.0)
        try:
            first = asyncio.ensure_future(batcher.submit("first"))
            while not calls:
                await asyncio.sleep(0.001)
            later = [asyncio.ensure_future(batcher.submit(f"later {i}")) for i in range(4)]
            await asyncio.sleep(0.05)  # the loop keeps accepting while the model works
            release.set()
            assert await first == "first"
            assert await asyncio.gather(*later) == [f"later {i}" for i in range(4)]
        finally:
            batcher.close()

    run(main())
    assert calls == [["first"], [f"later {i}" for i in range(4)]]


def test_a_call_that_raises_fails_only_its_own_batch() -> None:
    def picky(items: list[str]) -> list[str]:
        if "poison" in items:
            raise RuntimeError("poisoned batch")
        return items

    async def main() -> None:
        batcher = RequestBatcher(picky, max_size=2, max_delay_s=1.0)
        try:
            results = await asyncio.gather(batcher.submit("poison"), batcher.submit("a"), batcher.submit("b"),
                                           batcher.submit("c"), return_exceptions=True)
            assert [type(r).__name__ for r in results[:2]] == ["RuntimeError", "RuntimeError"]
            assert results[2:] == ["b", "c"]
        finally:
            batcher.close()

    run(main())


def test_a_full_queue_refuses_instead_of_growing() -> None:
    release = threading.Event()

    async def main() -> None:
        batcher = RequestBatcher(lambda items: release.wait(10) and items, max_size=1, max_delay_s=0.0,
                                 max_waiting=2)
        try:
            running = asyncio.ensure_future(batcher.submit(0))
            await asyncio.sleep(0.05)
            queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFull, match="2 requests are already waiting"):
                await batcher.submit(3)
            release.set()
            assert await asyncio.gather(running, *queued) == [0, 1, 2]
        finally:
            batcher.close()

    run(main())


def test_a_batcher_outlives_the_event_loop_it_first_ran_on() -> None:
    batcher = RequestBatcher(lambda items: [i + 1 for i in items], max_size=4, max_delay_s=0.0)
    try:
        for n in range(3):  # each asyncio.run is a new loop; the old loop's task is gone with it
            assert run(batcher.submit(n)) == n + 1
        assert batcher.batches == 3
    finally:
        batcher.close()


def test_the_model_loads_on_the_thread_its_batches_run_on() -> None:
    """One thread for the model: a second thread running it starts a second OpenMP pool."""
    batcher = RequestBatcher(lambda items: [threading.get_ident() for _ in items], max_size=4, max_delay_s=0.001)
    try:
        loaded_on = batcher.on_model_thread(threading.get_ident)
        assert loaded_on != threading.get_ident()
        assert run(batcher.submit(0)) == loaded_on
    finally:
        batcher.close()
