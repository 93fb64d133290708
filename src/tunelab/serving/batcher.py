"""Micro-batching: texts from concurrent requests are gathered into one forward pass,
bounded by a batch size and a wait. Requests share a batch only when their task request
options are equal. The model runs in one worker thread, so the event loop keeps accepting
requests while a batch is computed."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """More texts are waiting than the queue holds: the caller should answer 503 now
    rather than let every request's latency grow without bound."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} texts waiting")
        self.waiting = waiting


@dataclass
class Job:
    inputs: Sequence[Any]
    future: asyncio.Future[list[Any]]
    options: dict[str, Any] = field(default_factory=dict)
    queued: float = field(default_factory=time.perf_counter)

    @functools.cached_property
    def key(self) -> str:
        return json.dumps(self.options, sort_keys=True, default=str)


class MicroBatcher:
    def __init__(self, predict: Callable[..., list[Any]], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int], None] | None = None,
                 max_queue: int | None = None) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-model")
        self.task: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.max_queue = max_queue
        self.waiting = 0  # texts submitted and not yet answered
        self.held: Job | None = None  # taken from the queue, for the next batch

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish every queued job, then stop."""
        while not self.queue.empty() or self.held is not None or self.in_flight:
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
        self.worker.shutdown(wait=True)

    async def submit(self, inputs: Sequence[Any], options: dict[str, Any] | None = None
                     ) -> list[Any]:
        """`predict(inputs, **options)` for these inputs, batched with others."""
        if self.max_queue is not None and self.waiting + len(inputs) > self.max_queue \
                and self.waiting:
            raise QueueFull(self.waiting)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        self.waiting += len(inputs)
        try:
            await self.queue.put(Job(inputs, future, options or {}))
            return await future
        finally:
            self.in_flight -= 1
            self.waiting -= len(inputs)

    async def _gather(self) -> list[Job]:
        """The next batch: whatever is queued, plus what arrives within the wait. The wait
        is skipped when no other request is in flight, so a lone client is not delayed for
        company that is not coming; under load, requests queue while the model is busy."""
        first, self.held = self.held or await self.queue.get(), None
        jobs = [first]
        size = len(first.inputs)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch_size:
            if not self.queue.empty():
                job = self.queue.get_nowait()
            elif self.in_flight <= len(jobs):
                break
            else:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if job.key != first.key:  # other options: it starts the next batch
                self.held = job
                break
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            inputs = [item for job in jobs for item in job.inputs]
            if self.on_batch:
                self.on_batch(len(inputs))
            try:
                # the predictor sorts by length inside the batch, so padding stays small
                outputs = await loop.run_in_executor(
                    self.worker, functools.partial(self.predict, inputs, **jobs[0].options))
            except Exception as error:
                if len(jobs) == 1:
                    self._answer(jobs[0], error=error)
                    continue
                # one request's bad input must not fail the others that shared its batch
                for job in jobs:
                    try:
                        own = await loop.run_in_executor(self.worker, functools.partial(
                            self.predict, list(job.inputs), **job.options))
                    except Exception as own_error:
                        self._answer(job, error=own_error)
                    else:
                        self._answer(job, own)
                continue
            start = 0
            for job in jobs:
                self._answer(job, outputs[start:start + len(job.inputs)])
                start += len(job.inputs)

    @staticmethod
    def _answer(job: Job, outputs: list[Any] | None = None,
                error: BaseException | None = None) -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(outputs or [])
