"""Issue #18: with max_batch_size 1 the batcher stops forming jobs while ``_AHEAD_REQUESTS`` requests are
queued on the worker, so the requests that arrive meanwhile share the next job (fewer wake-ups, reply
encodings and socket writes per request); the dispatcher frees that room as each job is done, also when
it failed. Larger batches form jobs at once, as before. Runs the real batcher and dispatcher."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from edge_runtime.daemon import pipeline
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.daemon.pipeline import Daemon, Request, RequestQueue, Segment

AHEAD = pipeline._AHEAD_REQUESTS if hasattr(pipeline, "_AHEAD_REQUESTS") else 192


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class _Pipeline:
    """What ``Daemon._batcher`` and ``Daemon._dispatcher`` use; jobs are futures the test settles."""

    def __init__(self, max_batch: int) -> None:
        self.q = RequestQueue(1000)
        self.max_batch = max_batch
        self.cfg = SimpleNamespace(pipeline=SimpleNamespace(max_queue_delay_ms=0))
        self.inflight: asyncio.Queue = asyncio.Queue(pipeline._IN_FLIGHT)
        self._ahead = 0
        self._room = asyncio.Event()
        self.sinks: list = []
        self.post = None
        self.want_json = False
        self.metrics = Metrics()
        self.jobs: list[tuple[list[int], asyncio.Future]] = []
        self.link = Link("t", self.metrics, 1 << 16)
        self.n = 0

    def _more_batches(self, batches: list[list[Request]], delay: float) -> bool:
        return Daemon._more_batches(self, batches, delay)  # type: ignore[arg-type]

    def _submit_job(self, loop: asyncio.AbstractEventLoop, batches: list[list[Request]]) -> asyncio.Future:
        fut = loop.create_future()
        self.jobs.append(([r.seq for b in batches for r in b], fut))
        return fut

    def put(self, k: int) -> None:
        reqs = [Request(self.n + i, self.link, None, 0.0, b"") for i in range(k)]
        self.link.inflight += k
        self.q.put_many_nowait(reqs)
        self.n += k

    def finish(self, j: int, exc: BaseException | None = None) -> None:
        """The worker is done with job ``j`` (every batch failed: counted, no reply to send)."""
        seqs, fut = self.jobs[j]
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result([Segment("v", len(seqs) // self.max_batch, None, [])])

    def sizes(self) -> list[int]:
        return [len(s) for s, _ in self.jobs]


def test_single_requests_gather_while_the_worker_has_enough_queued() -> None:
    assert AHEAD == 3 * pipeline._JOB_REQUESTS

    async def main() -> None:
        p = _Pipeline(1)
        batcher = asyncio.create_task(Daemon._batcher(p))  # type: ignore[arg-type]
        dispatcher = asyncio.create_task(Daemon._dispatcher(p))  # type: ignore[arg-type]
        p.put(1)
        await _settle()
        assert p.sizes() == [1]  # an idle worker gets a request at once
        p.put(AHEAD)
        await _settle()
        assert p.sizes() == [1, 64, 64, 64]  # up to AHEAD requests queued on the worker
        assert p._ahead == 1 + 3 * 64
        p.put(10)
        await _settle()
        p.put(20)
        await _settle()
        assert p.sizes() == [1, 64, 64, 64]  # enough queued: these 30 wait instead of forming jobs
        p.finish(0)
        await _settle()
        assert p.sizes() == [1, 64, 64, 64]  # 192 still queued on the worker
        p.finish(1)
        await _settle()
        assert p.sizes() == [1, 64, 64, 64, 30]  # one job for everything that gathered, in order
        assert p.jobs[-1][0] == list(range(AHEAD + 1, AHEAD + 31))
        assert p._ahead == 2 * 64 + 30 and p.metrics.counters["inference_errors"] == 65
        for j in range(2, 5):
            p.finish(j)
        p.q.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(batcher, dispatcher), 5)
        assert p._ahead == 0 and p.link.inflight == 0

    asyncio.run(main())


def test_batches_of_several_requests_still_form_jobs_at_once() -> None:
    async def main() -> None:
        p = _Pipeline(4)
        batcher = asyncio.create_task(Daemon._batcher(p))  # type: ignore[arg-type]
        p.put(AHEAD + 4)
        await _settle()
        p.put(8)
        await _settle()
        assert sum(p.sizes()) == AHEAD + 12 and p.sizes()[-1] == 8  # no waiting for room
        batcher.cancel()

    asyncio.run(main())


def test_a_failed_job_frees_its_room() -> None:
    async def main() -> None:
        p = _Pipeline(1)
        dispatcher = asyncio.create_task(Daemon._dispatcher(p))  # type: ignore[arg-type]
        batcher = asyncio.create_task(Daemon._batcher(p))  # type: ignore[arg-type]
        p.put(AHEAD)
        await _settle()
        assert p._ahead == AHEAD
        p.finish(0, RuntimeError("worker died"))
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(dispatcher, 5)
        assert p._ahead == AHEAD - p.sizes()[0] and p._room.is_set()
        batcher.cancel()

    asyncio.run(main())
