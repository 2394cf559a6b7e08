"""Concurrent requests gathered into one call, as TorchServe batches them for a worker.

The first request to arrive opens a batch; the batch is run when it holds ``max_size``
requests or ``max_delay_s`` after that first arrival, whichever comes first (TorchServe's
``batchSize`` and ``maxBatchDelay``). Batches run one at a time on a thread of their own,
so the event loop keeps taking requests while the model works, and the next batch fills
meanwhile. ``run`` answers every item of its batch on its own (the handler's per-request
statuses): one bad request never fails another. Should ``run`` itself raise, only that
batch's requests get the exception.

The model lives on that one thread: ``on_model_thread`` runs its loading there too. PyTorch's
OpenMP pool belongs to the thread that runs it; a second thread running the model starts a
second pool, and with more OpenMP threads than cores libgomp stops spinning between parallel
regions, so each small region pays a wake-up. On 2 cores a one-event CLINC150 call took 15 ms
from a second thread against 7 ms from the first (docs/results.md, "KServe's model server
beside TorchServe").
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """More requests waiting than the batcher holds (TorchServe's job_queue_size): retry later."""


class RequestBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_size: int, max_delay_s: float,
                 max_waiting: int = 256) -> None:
        if max_size < 1 or max_delay_s < 0 or max_waiting < 1:
            raise ValueError("max_size and max_waiting must be at least 1 and max_delay_s not negative")
        self.run, self.max_size, self.max_delay_s, self.max_waiting = run, max_size, max_delay_s, max_waiting
        self.batches = 0  # calls of run so far
        self.requests = 0  # items those calls carried
        self._waiting: deque[tuple[T, asyncio.Future]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")

    def on_model_thread(self, fn: Callable[..., R], *args: object) -> R:
        """``fn(*args)`` on the thread the batches run on, waited for: load the model with it."""
        return self._executor.submit(fn, *args).result()

    async def submit(self, item: T) -> R:
        """The answer to one item, once the batch it joined has run."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():  # first use, or the loop it ran on has ended
            self._waiting.clear()
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._serve())
        if len(self._waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self._waiting)} requests are already waiting for the model: retry shortly")
        future = loop.create_future()
        self._waiting.append((item, future))
        self._arrived.set()
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_delay_s
            while len(self._waiting) < self.max_size and loop.time() < deadline:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            taken = [self._waiting.popleft() for _ in range(min(self.max_size, len(self._waiting)))]
            batch = [(item, future) for item, future in taken if not future.done()]  # callers gone: skip
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[T, asyncio.Future]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        try:
            results = await loop.run_in_executor(self._executor, self.run, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} answers for a batch of {len(batch)}")
        except Exception as exc:  # noqa: BLE001 - handed to this batch's callers, the loop goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
