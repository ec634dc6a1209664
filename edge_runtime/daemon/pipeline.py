"""The serving pipeline: source -> preprocessing -> model -> postprocessing -> sinks.

One asyncio event loop runs the sources, the batcher, the result dispatcher, the
health server and the timers. Inference runs in one worker thread. The batcher hands
it jobs: one batch, plus further batches formed from requests already queued (up to
``_JOB_REQUESTS // max_batch_size`` requests), so a thread hand-off, a future and a socket write per link
are paid per job rather than per batch. At most ``_IN_FLIGHT`` jobs are in flight, so the
worker has the next one ready while the loop dispatches the previous one; with one request per
batch the batcher also waits while ``_AHEAD_REQUESTS`` are in flight, so the requests that
arrive meanwhile share the next job. Every queue
is bounded. Well-formed samples of a one-input model are admitted without a coroutine,
all the samples of one read at once (``submit_many_nowait``, one queue wake-up), and
reach the worker as their payload bytes: a full batch joins them into its input tensor
in one copy; one request at a time, a LiteRT model copies each straight into its
interpreter's input buffer (``_invoke_rows``), other backends view it as an array.

Per request, the worker only invokes: the outputs of a job's one-request batches go into
one array per output (a :class:`Segment`; LiteRT writes each output straight into its row,
with no allocation per request), and the dispatcher updates the counters once per job. When every sink is the reply sink and the postprocessing is
argmax (and thresholds), the dispatcher answers a whole job without per-result objects:
label indices and scores in one numpy pass, RESULT frames encoded together
(``framing.encode_results_fixed``, CRCs by table), one write per link.

Dynamic batching follows Triton: a batch is handed to the worker once it holds
``max_batch_size`` requests, or once its oldest request has waited
``max_queue_delay_ms`` (0: take what is queued, never wait). Models exposing
``run_batch(stacked_inputs)`` run a batch as one invocation; others run its requests
back to back in one worker call. The batch size is capped by the memory budget.

The event loop and the worker share the GIL; the daemon sets a 0.5 ms switch interval
(``EDGE_RUNTIME_SWITCH_INTERVAL`` overrides it, in seconds) so that a finished inference
does not wait 5 ms for a busy loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import operator
import os
import logging
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

import edge_runtime
from edge_runtime.daemon import framing, memory
from edge_runtime.daemon.config import ArgmaxPost, DaemonConfig
from edge_runtime.daemon.config_reload import ConfigReloader
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import HealthServer, Metrics
from edge_runtime.daemon.model_slot import Loaded, ModelSlot, sample_shape, watched_stat
from edge_runtime.daemon.postprocess import PostChain
from edge_runtime.daemon.sdnotify import Notifier
from edge_runtime.daemon.sinks import ReplySink, Result, make_sink, to_json_line
from edge_runtime.daemon.sources import Source, make_source
from edge_runtime.daemon.stream_state import StreamModels, is_stateful, max_streams
from edge_runtime.errors import ConfigError, EdgeRuntimeError
from edge_runtime.model import Model

log = logging.getLogger("edge_runtime.daemon")

#: how long the batcher sleeps between looks at the queue while waiting for a batch to fill
_POLL_S = 0.0005
#: batches handed to the worker and not yet dispatched: enough to ride out scheduling jitter
_IN_FLIGHT = 4
#: a job holds up to max(max_batch_size, _JOB_REQUESTS) requests in whole batches: small batches
#: share one hand-off and one dispatch (with the dispatch vectorized, 8 batches of 8 per job took the
#: daemon from 74% to 87% of the raw rate per CPU-second, against one batch per job; batches of 64 or
#: more go one per job)
_JOB_REQUESTS = 64
#: with max_batch_size 1: requests handed to the worker and not yet dispatched, past which the batcher
#: waits for a job to be done before it forms the next one. The requests that arrive meanwhile then
#: share that next job (at saturation jobs of ~62 requests instead of ~40, one per read: fewer
#: wake-ups, reply encodings and socket writes per request), while the worker still has 2-3 jobs
#: queued. Larger batches keep forming jobs as soon as requests are queued (busy batching needs it).
_AHEAD_REQUESTS = 3 * _JOB_REQUESTS


class Request(NamedTuple):
    """One sample waiting for inference.

    ``arrays`` holds the model inputs; on the fast path (one input, no preprocessing) it
    is None and ``payload`` holds the input's bytes, turned into an array only by the
    worker (a full batch joins the payloads into its input tensor in one copy).
    A tuple: the admission fast path makes them with ``tuple.__new__`` (no Python-level constructor).
    """

    seq: int
    link: Link
    arrays: Optional[list[np.ndarray]]
    t0: float
    payload: Optional[bytes] = None


_new_tuple = tuple.__new__
_seq_of, _link_of, _t0_of = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(3)
_chain = itertools.chain.from_iterable


class Segment(NamedTuple):
    """Consecutive batches of one worker job that ran on one model version (the worker's result).

    ``outputs`` holds each model output stacked over the segment's requests,
    ``(requests, *one request's output shape)``; None when the batch failed (then ``batches`` is 1).
    ``seconds`` is the worker time per request of each batch (the ``inference_seconds`` metric).
    """

    version: str
    batches: int
    outputs: Optional[list[np.ndarray]]
    seconds: list[float]


class RequestQueue(asyncio.Queue):
    """The request queue: an ``asyncio.Queue`` that also takes and gives many requests per call.

    Bulk calls wake the waiting batcher (or the waiting sources, under the ``block`` policy) as
    the single-item calls do, but pay the bookkeeping once per call instead of once per request.
    """

    def put_many_nowait(self, items: list[Any]) -> None:
        """Append ``items``; the caller has made sure they fit (``maxsize - qsize()`` of them at most)."""
        self._queue.extend(items)  # type: ignore[attr-defined]
        self._unfinished_tasks += len(items)  # type: ignore[attr-defined]
        self._finished.clear()  # type: ignore[attr-defined]
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]

    def get_many_nowait(self, k: int) -> list[Any]:
        """Remove and return up to ``k`` items from the front."""
        q = self._queue  # type: ignore[attr-defined]
        pop = q.popleft
        items = [pop() for _ in range(min(k, len(q)))]
        if self._putters:  # type: ignore[attr-defined]
            for _ in items:
                self._wakeup_next(self._putters)  # type: ignore[attr-defined]
        return items


class Daemon:
    """A configured daemon; ``await run()`` serves until SIGTERM (or the end of a file source)."""

    def __init__(self, cfg: DaemonConfig, loader: Callable[..., Model] = edge_runtime.load,
                 install_signals: bool = True, reread: Optional[Callable[[], DaemonConfig]] = None) -> None:
        """``reread``: how to read the configuration again (SIGHUP then reloads all of it, not only the model)."""
        self.cfg = cfg
        self.metrics = Metrics()
        self.notifier = Notifier()
        self._loader = loader
        self._install_signals = install_signals
        self.ready = asyncio.Event()
        self.source: Optional[Source] = None
        self.health: Optional[HealthServer] = None
        self.slot: Optional[ModelSlot] = None
        self._stop_requested = False
        self._reloading = False
        self._tasks: list[asyncio.Task] = []
        self._reload_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._batcher_task: Optional[asyncio.Task] = None
        self._dispatch_task: Optional[asyncio.Task] = None
        self._failed: Optional[BaseException] = None
        self.addresses: dict[str, str] = {}
        self._model_stat: Optional[tuple[int, int, int]] = None
        self.reloader: Optional[ConfigReloader] = ConfigReloader(self, reread) if reread is not None else None

    # -- public controls ------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown: stop reading, answer everything queued, exit 0."""
        if not self._stop_requested:
            self._stop_requested = True
            self._stop.set()

    def request_reload(self) -> None:
        """As on SIGHUP: re-read and apply the whole configuration (or only reload the model without one)."""
        loop = asyncio.get_running_loop()
        loop.create_task(self.reloader.reload("SIGHUP") if self.reloader is not None else self.reload("SIGHUP"))

    # -- start-up ------------------------------------------------------------
    def _setup_model(self) -> None:
        cfg = self.cfg
        profile = None
        if cfg.profile:
            from device_profiles import load_profile

            profile = load_profile(cfg.profile)
            if not profile.python:
                raise ConfigError(f"profile '{profile.name}' cannot run the daemon: it has no Python "
                                  "(python: false; microcontroller profiles are for sizing only)")
        budget = cfg.memory_budget_bytes or (profile.inference_ram_budget_bytes if profile is not None else None)
        self.slot = ModelSlot(cfg.model, profile, self._loader)
        loaded = self.slot.load_initial()
        try:
            est = memory.check_budget(loaded.model, cfg, budget)
        except EdgeRuntimeError:
            loaded.model.close()
            raise
        self.memory = est
        self.max_batch = est.max_batch
        model = loaded.model
        self._attach_batch(loaded)
        self._setup_streams(loaded)
        shapes = [sample_shape(s.shape, f"input '{s.name}'") for s in model.inputs]
        self._in_specs = [(shape, np.dtype(s.dtype), int(np.prod(shape)) * np.dtype(s.dtype).itemsize)
                          for shape, s in zip(shapes, model.inputs)]
        self._in_bytes = sum(n for _, _, n in self._in_specs)
        #: (dtype, shape) of the single input when samples can take the fast path
        self._fast: Optional[tuple[np.dtype, tuple[int, ...]]] = None
        if len(self._in_specs) == 1 and cfg.preprocess is None:
            self._fast = (self._in_specs[0][1], self._in_specs[0][0])
        steps = list(cfg.postprocess) or [ArgmaxPost(type="argmax")]
        out = model.outputs[0]
        out = replace(out, shape=sample_shape(out.shape, f"output '{out.name}'"))
        try:
            self.post = PostChain(steps, out, cfg.model.labels)
        except ValueError as exc:
            raise ConfigError(f"model.labels / postprocess: {exc}") from None
        try:
            self.preprocessor = self._make_preprocessor(model)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"preprocess: the chain does not fit the model's input: {exc}") from None
        self._note_model(loaded)

    def _setup_streams(self, loaded: Loaded) -> None:
        """Stateful models get one instance per source stream (stream_state.py); others share one."""
        self.streams: Optional[StreamModels] = None
        if is_stateful(loaded.path):
            slot = self.slot
            assert slot is not None
            self.streams = StreamModels(lambda: slot._open().model, max_streams(self.cfg))
            self.batching = "per stream (stateful model: one state per source stream)"
            self.metrics.gauges["streams"] = lambda: float(len(self.streams) if self.streams is not None else 0)

    def _attach_batch(self, loaded: Loaded) -> None:
        """Give ``loaded`` a runner for full batches when its backend has a batch axis."""
        from edge_runtime.daemon.batching import make_batch_runner

        loaded.batch, how = make_batch_runner(loaded.model, self.max_batch)
        self.batching = how if loaded.batch is not None else f"per request ({how})"

    def _make_preprocessor(self, model: Model) -> Any:
        if self.cfg.preprocess is None:
            return None
        from edge_runtime.daemon.preprocessing import LinkPreprocessor

        return LinkPreprocessor(self.cfg.preprocess, model.inputs[0], self.cfg.pipeline.payload_dtype)

    def _note_model(self, loaded: Loaded) -> None:
        m = self.metrics
        m.model_version, m.model_path, m.backend = loaded.version, loaded.path, loaded.model.backend
        self._model_stat = watched_stat(loaded.path)

    # -- what the config reloader (config_reload.py) uses ----------------------
    def reload_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread that loads and checks candidates, off the event loop."""
        if self._reload_executor is None:
            self._reload_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reload")
        return self._reload_executor

    def model_file_changed(self) -> bool:
        """True when the served model's file differs from when it was loaded."""
        return self.slot is not None and self.slot.current is not None and \
            watched_stat(self.slot.current.path) != self._model_stat

    def attach_batch(self, loaded: Loaded) -> None:
        """Give a candidate its batch runner (as at start-up)."""
        self._attach_batch(loaded)

    def swap_model(self, cand: Loaded) -> None:
        """Serve ``cand`` from the next batch on; close the old model after the batches already queued."""
        assert self.slot is not None
        old = self.slot.swap(cand)
        self.executor.submit(old.model.close)
        self._restart_streams()
        self._note_model(cand)

    def _restart_streams(self) -> None:
        """After a model swap, every stream starts from the new model's initial state."""
        if self.streams is not None:
            self.executor.submit(self.streams.close_all)

    def reload_failed(self, why: str, reason: str) -> bool:
        """Count and report a refused reload; the old configuration keeps serving."""
        self.metrics.inc("reload_failures")
        self.metrics.last_reload_error = why
        log.error("%s (triggered by %s); still serving version %s", why, reason, self.metrics.model_version)
        return False

    def reload_succeeded(self) -> None:
        """Count a reload and clear the last error."""
        self.metrics.inc("reloads")
        self.metrics.last_reload_error = ""

    # -- the run -------------------------------------------------------------
    async def run(self) -> int:
        """Serve until stopped; return the exit code (0 after a clean drain)."""
        try:
            return await self._run()
        finally:
            await self._teardown()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_RateLimitedLoopErrors())
        self._stop = asyncio.Event()
        cfg = self.cfg
        self._setup_model()
        # the worker thread is short on Python work; a short switch interval stops the
        # busy event loop from holding the GIL for 5 ms while an inference has finished
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(float(os.environ.get("EDGE_RUNTIME_SWITCH_INTERVAL", "0.0005")))
        # the daemon's own threads need little stack; 1 MiB instead of the usual 8 MiB keeps
        # the address space small, which matters under a memory rlimit on a small board
        self._old_stack = threading.stack_size(1 << 20)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        try:  # start the worker now, so a process out of memory or threads fails here, clearly
            self.executor.submit(lambda: None).result()
        except RuntimeError as exc:
            raise EdgeRuntimeError(f"cannot start the inference worker thread ({exc}); the process is out of "
                                   "memory or threads (check ulimit -v and -u)") from None
        self.q: asyncio.Queue = RequestQueue(cfg.pipeline.queue_size)
        self.inflight: asyncio.Queue = asyncio.Queue(_IN_FLIGHT)
        self._ahead = 0  #: requests in the jobs in flight (handed to the worker, not yet dispatched)
        self._room = asyncio.Event()  #: set when a job in flight is done: the batcher may form the next
        self.policy = cfg.pipeline.overload
        self.sinks = [make_sink(s, self.metrics) for s in cfg.sinks]
        self.want_json = any(s.wants_json for s in self.sinks)
        m = self.metrics
        m.gauges["queue_depth"] = lambda: float(self.q.qsize())
        m.gauges["queue_capacity"] = lambda: float(cfg.pipeline.queue_size)
        m.gauges["batches_in_flight"] = lambda: float(self.inflight.qsize())
        m.gauges["max_batch_size"] = lambda: float(self.max_batch)
        m.gauges["memory_estimate_bytes"] = lambda: float(self.memory.total)
        m.gauges["mqtt_pending"] = lambda: float(sum(getattr(s, "pending", lambda: 0)() for s in self.sinks))
        m.gauges["mqtt_connected"] = lambda: float(all(getattr(s, "connected", True) for s in self.sinks))
        m.alive = lambda: self._batcher_task is not None and not self._batcher_task.done()
        m.degraded_checks += [self._sinks_down, self._shedding]
        for s in self.sinks:
            await s.start()
        if cfg.health is not None:
            self.health = HealthServer(m, cfg.health.listen, cfg.health.max_connections, cfg.health.request_timeout_s)
            await self.health.start()
            self.addresses["health"] = self.health.address
        self._batcher_task = loop.create_task(self._batcher())
        self._dispatch_task = loop.create_task(self._dispatcher())
        for t in (self._batcher_task, self._dispatch_task):
            t.add_done_callback(self._core_done)
        self.source = make_source(cfg.source)
        if hasattr(self.source, "max_buffered_bytes"):
            self.source.max_buffered_bytes = cfg.pipeline.max_buffered_bytes
        self.source.fast_submit = self.submit_nowait
        self.source.fast_submit_many = self.submit_many_nowait
        self._check_npy_source()
        await self.source.start(self.submit, m, cfg.pipeline.max_frame_bytes)
        self.addresses["source"] = self.source.name
        if self._install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if cfg.model.watch:
            self._tasks.append(loop.create_task(self._watch()))
        if self.notifier.watchdog_interval:
            self._tasks.append(loop.create_task(self._watchdog()))
        if getattr(cfg.source, "exit_at_end", False):
            self._tasks.append(loop.create_task(self._stop_at_end()))
        log.info("ready: %s", json.dumps({
            "source": self.source.name, "health": self.addresses.get("health"),
            "model": m.model_path, "model_version": m.model_version, "backend": m.backend,
            "max_batch_size": self.max_batch, "batching": self.batching,
            "memory_estimate": self.memory.describe()}))
        self.notifier.notify(f"READY=1\nSTATUS=serving {m.model_version}\nMAINPID={_pid()}")
        self.ready.set()
        await self._stop.wait()
        return await self._drain()

    def _check_npy_source(self) -> None:
        """A .npy file source must hold samples of the model input's size (without preprocessing)."""
        src = self.cfg.source
        if src.type != "file" or not src.path.endswith(".npy") or self.preprocessor is not None:
            return
        try:
            arr = np.load(src.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return  # the source reports it when it opens the file
        if arr.ndim < 1:
            return
        per = int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
        shape, dtype, _ = self._in_specs[0]
        if per != self._in_bytes or (len(self._in_specs) == 1 and arr.dtype.newbyteorder("=") != dtype):
            raise ConfigError(f"source file:{src.path}: samples of shape {list(arr.shape[1:])} {arr.dtype} "
                              f"({per} bytes), but the model input takes {dtype.name}{list(shape)} "
                              f"({self._in_bytes} bytes)")

    def _core_done(self, task: asyncio.Task) -> None:
        """The batcher or the dispatcher ended: fine when draining, fatal otherwise."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._failed = exc
            log.error("the pipeline failed: %s: %s; stopping", type(exc).__name__, exc)
            self.request_stop()

    async def _stop_at_end(self) -> None:
        assert self.source is not None
        await self.source.finished.wait()
        self.request_stop()

    async def _drain(self) -> int:
        """Stop reading, answer everything queued, flush the sinks."""
        self.notifier.notify("STOPPING=1")
        log.info("draining: %d request(s) queued", self.q.qsize())
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        if self.source is not None:
            await self.source.stop()
        rc = 0
        try:
            if self._batcher_task is not None and not self._batcher_task.done():
                await asyncio.wait_for(self.q.put(None), max(0.1, deadline - time.monotonic()))
            await asyncio.wait_for(asyncio.gather(self._batcher_task, self._dispatch_task, return_exceptions=True),
                                   max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            log.error("drain timed out after %.1f s with %d request(s) unanswered", self.cfg.drain_timeout_s, self.q.qsize())
            rc = 1
        if self._failed is not None:
            rc = 1
        loop = asyncio.get_running_loop()
        for s in self.sinks:
            # the inference worker is idle now: drain there instead of starting another thread
            ok = await loop.run_in_executor(self.executor, s.drain, max(0.1, deadline - time.monotonic()))
            if not ok:
                log.error("sink %s could not deliver everything before the drain timeout", type(s).__name__)
                rc = 1
        log.info("stopped: %s", json.dumps(self.metrics.snapshot()))
        return rc

    async def _teardown(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in (self._batcher_task, self._dispatch_task):
            if t is not None and not t.done():
                t.cancel()
        if self.source is not None:
            await self.source.stop()
            await self.source.close()
        for s in getattr(self, "sinks", []):
            try:
                s.close()
            except Exception:  # noqa: BLE001 - closing must not hide the exit status
                pass
        if self.health is not None:
            await self.health.close()
        if hasattr(self, "executor"):
            self.executor.shutdown(wait=True)
        if self._reload_executor is not None:
            self._reload_executor.shutdown(wait=True)
        if self.slot is not None and self.slot.current is not None:
            self.slot.current.model.close()
        if getattr(self, "streams", None) is not None:
            self.streams.close_all()
        if hasattr(self, "_old_switch"):
            sys.setswitchinterval(self._old_switch)
        if hasattr(self, "_old_stack"):
            threading.stack_size(self._old_stack)
        self.notifier.close()

    # -- health ----------------------------------------------------------------
    def _sinks_down(self) -> Optional[str]:
        """Why /healthz is degraded by sinks: the ones that are not connected."""
        down = [getattr(s, "name", type(s).__name__) for s in self.sinks if not getattr(s, "connected", True)]
        return f"sink(s) not connected: {', '.join(down)}" if down else None

    def _shedding(self) -> Optional[str]:
        """Why /healthz is degraded by load: samples dropped by the overload policy in the last 10 s."""
        c = self.metrics.counters
        dropped = c["dropped_newest"] + c["dropped_oldest"]
        now = time.monotonic()
        last_n, last_t, last_drop = getattr(self, "_shed_mark", (0, 0.0, -1e9))
        if dropped != last_n:
            self._shed_mark = (dropped, now, now)
            return "shedding load: the request queue is full and samples are being dropped"
        if now - last_drop < 10.0:
            return "shedding load: samples were dropped in the last 10 s"
        return None

    # -- admission -----------------------------------------------------------
    def _decode(self, link: Link, payload: bytes, seq: int = 0) -> list[list[np.ndarray]]:
        """The model inputs one sample payload makes (a stream may make zero or several)."""
        if self.preprocessor is not None:
            try:
                return [[x] for x in self.preprocessor(link.name, payload)]
            except (EdgeRuntimeError, ValueError) as exc:
                self.metrics.inc("samples_bad")
                log.debug("preprocessing refused a sample from %s: %s", link.name, exc)
                link.nack(seq, framing.NACK_BAD_SAMPLE, f"preprocessing refused the sample: {exc}")
                return []
        if len(payload) != self._in_bytes:
            self.metrics.inc("samples_bad")
            now = time.monotonic()
            if now - getattr(self, "_bad_size_logged", -1e9) >= 10.0:  # at most one line per 10 s
                self._bad_size_logged = now
                log.warning("a %d-byte sample from %s does not fit the model input (%d bytes); dropped, answered "
                            "with a NACK (%d such samples so far, counter samples_bad)", len(payload), link.name,
                            self._in_bytes, self.metrics.counters["samples_bad"])
            link.nack(seq, framing.NACK_BAD_SIZE, f"{len(payload)} bytes; the model input takes {self._in_bytes}")
            return []
        if len(self._in_specs) == 1:
            shape, dtype, _ = self._in_specs[0]
            return [[np.frombuffer(payload, dtype=dtype).reshape(shape)]]
        arrays, off = [], 0
        for shape, dtype, n in self._in_specs:
            arrays.append(np.frombuffer(payload, dtype=dtype, count=n // dtype.itemsize, offset=off).reshape(shape))
            off += n
        return [arrays]

    def submit_nowait(self, link: Link, seq: int, payload: bytes) -> bool:
        """Admit one sample without waiting; False when the caller must ``await submit`` instead.

        The fast path covers a model with one input, no preprocessing, a payload of the
        input's size and room in the queue; everything else (bad sizes, a full queue and
        its overload policy) goes through :meth:`submit`.
        """
        q = self.q
        if self._fast is None or len(payload) != self._in_bytes or q.full():
            return False
        link.inflight += 1
        # the payload goes to the worker as is: a full batch joins the payloads into its input tensor,
        # one request at a time they are copied into the interpreter's input (LiteRT) or viewed as an array
        q.put_nowait(Request(seq, link, None, time.perf_counter(), payload))
        self.metrics.counters["requests"] += 1
        return True

    def submit_many_nowait(self, link: Link, samples: list[tuple[int, bytes]], start: int = 0) -> int:
        """Admit ``samples[start:]`` in one go, up to the first that :meth:`submit_nowait` would refuse; how many.

        The samples of one read share their arrival time. The caller submits the next one with
        :meth:`submit` (which applies the overload policy) and calls this again for the rest.
        """
        q = self.q
        if self._fast is None or not isinstance(q, RequestQueue):
            return 0
        end = len(samples)
        if q.maxsize > 0:
            end = min(end, start + q.maxsize - q.qsize())
        if end <= start:
            return 0
        samples = samples[start:end]
        size = self._in_bytes
        t0 = time.perf_counter()
        new, R = _new_tuple, Request
        sizes = [len(p) for _, p in samples]
        k = len(sizes)
        if sizes.count(size) != k:  # admit up to the first sample of another size
            k = next(i for i, v in enumerate(sizes) if v != size)
            if not k:
                return 0
            samples = samples[:k]
        # payloads as they are (see submit_nowait): no array per request on the loop
        reqs = [new(R, (seq, link, None, t0, payload)) for seq, payload in samples]
        n = len(reqs)
        if n:
            link.inflight += n
            q.put_many_nowait(reqs)
            self.metrics.counters["requests"] += n
        return n

    async def submit(self, link: Link, seq: int, payload: bytes) -> None:
        """Admit the input(s) of one sample under the overload policy."""
        t0 = time.perf_counter()
        for arrays in self._decode(link, payload, seq):
            await self._admit(Request(seq, link, arrays, t0))

    async def _admit(self, req: Request) -> None:
        q, m = self.q, self.metrics
        link = req.link
        if q.full():
            if self.policy == "drop_newest":
                m.inc("dropped_newest")
                link.nack(req.seq, framing.NACK_OVERLOAD, "queue full (overload policy drop_newest)")
                return
            if self.policy == "drop_oldest":
                old = q.get_nowait()
                old.link.inflight -= 1
                m.inc("dropped_oldest")
                old.link.nack(old.seq, framing.NACK_OVERLOAD, "queue full (overload policy drop_oldest)")
            else:
                m.inc("blocked")
                link.inflight += 1
                await q.put(req)
                m.inc("requests")
                return
        link.inflight += 1
        q.put_nowait(req)
        m.inc("requests")

    # -- batching and inference ----------------------------------------------
    async def _batcher(self) -> None:
        q = self.q
        loop = asyncio.get_running_loop()
        delay = self.cfg.pipeline.max_queue_delay_ms / 1e3
        while True:
            ahead = _AHEAD_REQUESTS if self.max_batch == 1 else 0  # see _AHEAD_REQUESTS
            while ahead and self._ahead >= ahead:
                self._room.clear()
                await self._room.wait()
            first = await q.get()
            if first is None:
                break
            batch = [first]
            stop = False
            limit = self.max_batch
            while len(batch) < limit:
                try:
                    item = q.get_nowait()
                except asyncio.QueueEmpty:
                    rem = first.t0 + delay - time.perf_counter()
                    if rem <= 0:
                        break
                    await asyncio.sleep(min(rem, _POLL_S))
                    continue
                if item is None:
                    stop = True
                    break
                batch.append(item)
            batches = [batch]
            if not stop:
                stop = self._more_batches(batches, delay)
            job = self._submit_job(loop, batches)
            self._ahead += sum(map(len, batches))
            await self.inflight.put((batches, job))
            if stop:
                break
        await self.inflight.put(None)

    def _submit_job(self, loop: asyncio.AbstractEventLoop, batches: list[list[Request]]) -> asyncio.Future:
        """Run one job on the inference worker; a future of its segments, resolved on the loop.

        As ``loop.run_in_executor`` does, with one thread hop per job and no chaining of a
        concurrent future into an asyncio one (its callbacks cost the loop a few microseconds per job).
        """
        fut = loop.create_future()
        infer = self._infer_job

        def run() -> None:
            try:
                result = infer(batches)
            except BaseException as exc:  # noqa: BLE001 - handed to the dispatcher, as run_in_executor would
                _resolve_threadsafe(loop, fut, None, exc)
                return
            _resolve_threadsafe(loop, fut, result, None)

        self.executor.submit(run)
        return fut

    def _more_batches(self, batches: list[list[Request]], delay: float) -> bool:
        """Add further batches from requests already queued to one worker job; True at the end marker.

        Each batch is formed exactly as Triton's dynamic batcher would form it at this
        moment: a full one of ``max_batch_size``, or a partial one only when the queue
        delay allows it (0, or its oldest request has waited that long already). Handing
        the worker several batches at once (up to ``max(max_batch_size, _JOB_REQUESTS)``
        requests) saves a thread hand-off, a future and a socket write per batch; it never
        waits for requests that have not arrived.
        """
        q, limit = self.q, self.max_batch
        total = len(batches[0])
        cap = max(limit, _JOB_REQUESTS)
        if limit == 1:  # one request per batch: no partial batches, no queue delay to respect
            take = getattr(q, "get_many_nowait", None)
            items = take(cap - total) if take is not None else [q.get_nowait() for _ in range(min(cap - total, q.qsize()))]
            if None in items:  # the end marker: what follows it is never served
                batches += [[it] for it in items[:items.index(None)]]
                return True
            batches += [[it] for it in items]
            return False
        while total < cap and not q.empty():
            n = q.qsize()
            if n < limit and delay > 0 and q._queue[0] is not None and (  # type: ignore[attr-defined]
                    q._queue[0].t0 + delay > time.perf_counter()):  # type: ignore[attr-defined]
                break  # a partial batch still inside its queue delay: the batcher waits for it
            batch: list[Request] = []
            while len(batch) < limit:
                try:
                    item = q.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    if batch:
                        batches.append(batch)
                    return True
                batch.append(item)
            if not batch:
                break
            batches.append(batch)
            total += len(batch)
        return False

    def _infer_job(self, batches: list[list[Request]]) -> list[Segment]:
        """Worker thread: run the batches of one job back to back on the current model.

        The result is a list of :class:`Segment`, covering the job's batches in order. Counters
        are left to the dispatcher (one update per job).
        """
        assert self.slot is not None and self.slot.current is not None
        loaded = self.slot.current  # a swapped-out model is closed only after this job (same worker)
        version, runner, streams = loaded.version, loaded.batch, self.streams
        # inputs were built from the model's own specs at admission, so the per-call
        # validation of Model.run is skipped here
        model = loaded.model
        invoke = model._invoke
        #: runs many requests one invocation each, straight into one output array (LiteRT; None: no such path)
        rows = getattr(model, "_invoke_rows", None) if streams is None else None
        fast = self._fast
        perf = time.perf_counter
        done: list[Segment] = []
        singles: list[Request] = []  # consecutive one-request batches, not yet run

        def inputs_of(reqs: list[Request]) -> list[list[np.ndarray]]:
            return [r.arrays if r.arrays is not None else [np.ndarray(fast[1], fast[0], r.payload)]  # type: ignore[index]
                    for r in reqs]

        def entries_of(reqs: list[Request]) -> list[Any]:
            """What ``_invoke_rows`` takes: a request's arrays, or its payload as is (fast path)."""
            return [r.payload if r.arrays is None else r.arrays for r in reqs]

        def run_each(reqs: list[Request], times: list[float]) -> list[np.ndarray]:
            """Invoke once per request: each output stacked over ``reqs``; each request's worker time to ``times``.

            Raises :class:`_StoppedAt` at the first request that fails, with the outputs of those before it.
            """
            if rows is not None:
                try:
                    outs = rows(entries_of(reqs), times)
                except Exception as exc:  # noqa: BLE001 - handed on with what ran
                    k = getattr(exc, "done", None)
                    raise _StoppedAt(k or 0, exc.outputs if k else None, exc) from None  # type: ignore[attr-defined]
                if outs is not None:
                    return outs
            t = perf()
            per: list[list[np.ndarray]] = []
            try:
                for arrays in inputs_of(reqs):
                    per.append(invoke(arrays))
                    now = perf()
                    times.append(now - t)
                    t = now
            except Exception as exc:  # noqa: BLE001 - handed on with what ran
                raise _StoppedAt(len(per), [np.array(o) for o in zip(*per)] if per else None, exc) from None
            # np.array stacks the outputs as np.stack does, in one call
            return [np.array(o) for o in zip(*per)]

        def run_singles() -> None:
            """Run the pending one-request batches; a request that fails is dropped alone."""
            reqs = singles[:]
            singles.clear()
            while reqs:
                times: list[float] = []
                try:
                    outs = run_each(reqs, times)
                except _StoppedAt as stop:
                    k = stop.done
                    if k:
                        done.append(Segment(version, k, stop.outputs, times[:k]))
                    log.error("inference failed on a batch of 1: %s", stop.error)
                    done.append(Segment(version, 1, None, []))
                    reqs = reqs[k + 1:]
                    continue
                done.append(Segment(version, len(reqs), outs, times))
                return

        for batch in batches:
            if streams is None and len(batch) == 1 and (runner is None or runner.size != 1):
                singles.append(batch[0])
                continue
            run_singles()
            t = perf()
            try:
                if streams is not None:  # a stateful model: each request runs on its own stream's instance
                    per = [streams.model_for(r.link.name)._invoke(
                        r.arrays if r.arrays is not None
                        else [np.ndarray(fast[1], fast[0], r.payload)])  # type: ignore[index]
                        for r in batch]
                    outs = [np.stack(o) for o in zip(*per)]
                elif runner is not None and len(batch) == runner.size:
                    outs = runner.run_stacked(batch)
                else:
                    outs = run_each(batch, [])
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the daemon
                log.error("inference failed on a batch of %d: %s", len(batch),
                          exc.error if isinstance(exc, _StoppedAt) else exc)
                done.append(Segment(version, 1, None, []))
                continue
            done.append(Segment(version, 1, outs, [(perf() - t) / len(batch)]))
        run_singles()
        return done

    async def _dispatcher(self) -> None:
        m = self.metrics
        perf = time.perf_counter
        while True:
            item = await self.inflight.get()
            if item is None:
                break
            sinks, post, want_json = self.sinks, self.post, self.want_json  # a config reload may swap them
            batches, job = item
            try:
                done = await job
            finally:  # the job's requests no longer count as queued on the worker, even if it failed
                self._ahead -= sum(map(len, batches))
                self._room.set()
            # every request of the job is answered (or dropped, on an inference error) at once:
            # one postprocessing pass and one write per link for all of its batches
            reqs: list[Request] = []
            stacks: list[list[np.ndarray]] = []
            versions: list[tuple[str, int]] = []
            times: list[float] = []
            failed = 0
            at = 0
            for seg in done:
                part = batches[at:at + seg.batches]
                at += seg.batches
                if seg.outputs is None:
                    failed += seg.batches
                    for batch in part:
                        for req in batch:
                            req.link.inflight -= 1
                    continue
                k = len(reqs)
                reqs += _chain(part)
                stacks.append(seg.outputs)
                versions.append((seg.version, len(reqs) - k))
                times += seg.seconds
            c = m.counters
            if failed:
                c["inference_errors"] += failed
            c["batches"] += len(times)
            c["inferences"] += len(reqs)
            m.inference_time.add_many(times)
            if not reqs:
                continue
            links = list(map(_link_of, reqs))
            first = links[0]
            if links.count(first) == len(links):  # the usual case: one device
                first.inflight -= len(links)
            else:
                for link in links:
                    link.inflight -= 1
            outs_all = stacks[0] if len(stacks) == 1 else [np.concatenate(parts) for parts in zip(*stacks)]
            now = perf()
            if post.label_only and all(type(s) is ReplySink for s in sinks):
                self._reply(reqs, links, outs_all[0], sinks, post)
            else:
                self._emit(reqs, outs_all, versions, now, sinks, post, want_json)
            m.latency.add_many([now - t0 for t0 in map(_t0_of, reqs)])
            c["results"] += len(reqs)
            # no yield here: the next ``await job`` yields unless that job is done already, and at most
            # _IN_FLIGHT + 1 done jobs can be dispatched back to back

    def _reply(self, reqs: list[Request], links: list[Link], raw: np.ndarray, sinks: list[Any],
               post: PostChain) -> None:
        """Answer a job's requests with RESULT frames only: encoded together, no per-result objects."""
        n = len(reqs)
        index, score = post.label_scores(raw)
        rows = np.ascontiguousarray(raw).reshape(n, -1).view(np.uint8)
        seqs = list(map(_seq_of, reqs))
        frames = framing.encode_results_fixed(seqs, index, score, rows)
        starts: Optional[list[int]] = None  # where each frame begins (None: all frames one size)
        if frames is None:  # long outputs: frame by frame
            each = [framing.encode_frame(framing.RESULT, seqs[i], framing.encode_result_payload(
                None if index[i] < 0 else int(index[i]), float(score[i]), rows[i].tobytes())) for i in range(n)]
            starts = [0]
            for f in each:
                starts.append(starts[-1] + len(f))
            frames = b"".join(each)
        for s in sinks:
            self._guard_sink(s, n, lambda: s.emit_frames(links, frames, starts))  # type: ignore[arg-type]

    def _emit(self, reqs: list[Request], outs_all: list[np.ndarray], versions: list[tuple[str, int]], now: float,
              sinks: list[Any], post: PostChain, want_json: bool) -> None:
        """Answer a job's requests through Result objects (JSON sinks, stateful or richer postprocessing)."""
        per = [[o[i] for o in outs_all] for i in range(len(reqs))]
        posts = post.apply_batch([outs[0] for outs in per], [req.link.name for req in reqs])
        vs = [v for v, k in versions for _ in range(k)]
        results = [Result(req.seq, req.link, outs, p, now - req.t0, v) for req, outs, p, v in zip(reqs, per, posts, vs)]
        lines = [to_json_line(r) for r in results] if want_json else None
        for s in sinks:
            self._guard_sink(s, len(results), lambda: s.emit_batch(results, lines))

    def _guard_sink(self, sink: Any, n: int, emit: Callable[[], None]) -> None:
        """Run one sink's emit; a failing sink is counted and logged once, the others still get the results."""
        try:
            emit()
        except Exception as exc:  # noqa: BLE001 - a failing sink is counted, others still get it
            m = self.metrics
            if not m.counters["sink_errors"]:  # log the first failure; the counter tells the rest
                log.warning("sink %s failed: %s (further failures are only counted)", type(sink).__name__, exc)
            m.inc("sink_errors", n)

    # -- reload and timers ---------------------------------------------------
    async def reload(self, reason: str) -> bool:
        """Load, check and swap in the configured model file; keep the old one on failure."""
        if self._reloading or self.slot is None:
            return False
        self._reloading = True
        self.notifier.notify("RELOADING=1")
        loop = asyncio.get_running_loop()
        def prepare() -> Loaded:
            assert self.slot is not None
            c = self.slot.prepare_reload()
            self._attach_batch(c)
            return c

        try:
            if self._reload_executor is None:
                self._reload_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reload")
            cand = await loop.run_in_executor(self._reload_executor, prepare)
        except (EdgeRuntimeError, RuntimeError, MemoryError) as exc:
            self.metrics.inc("reload_failures")
            self.metrics.last_reload_error = str(exc)
            log.error("%s (triggered by %s); still serving version %s", exc, reason, self.metrics.model_version)
            return False
        finally:
            self._reloading = False
            self.notifier.notify("READY=1")
        old = self.slot.swap(cand)
        self.executor.submit(old.model.close)  # runs after the batches already queued on the worker
        self._restart_streams()
        self._note_model(cand)
        self.metrics.inc("reloads")
        self.metrics.last_reload_error = ""
        log.info("reloaded %s (triggered by %s): version %s", cand.path, reason, cand.version)
        return True

    async def _watch(self) -> None:
        path = self.cfg.model.path
        last = watched_stat(path)
        pending = None
        while True:
            await asyncio.sleep(self.cfg.model.watch_interval_s)
            now = watched_stat(path)
            if now is None or now == last:
                pending = None
                continue
            if now != pending:  # wait one more interval so a file being written settles
                pending = now
                continue
            last, pending = now, None
            await self.reload("file change")

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        while True:
            if self._batcher_task is not None and not self._batcher_task.done():
                self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


class _StoppedAt(Exception):
    """A run of requests stopped at request ``done``: ``outputs`` (None when ``done`` is 0) holds those before it."""

    def __init__(self, done: int, outputs: Optional[list[np.ndarray]], error: BaseException) -> None:
        super().__init__(str(error))
        self.done = done
        self.outputs = outputs
        self.error = error


def _resolve(fut: asyncio.Future, result: Any, exc: Optional[BaseException]) -> None:
    """On the loop: settle a job's future (unless it was cancelled meanwhile)."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _resolve_threadsafe(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, result: Any,
                        exc: Optional[BaseException]) -> None:
    """From the worker: settle ``fut`` on its loop; nothing when the loop has closed (shutdown)."""
    try:
        loop.call_soon_threadsafe(_resolve, fut, result, exc)
    except RuntimeError:
        pass


class _RateLimitedLoopErrors:
    """The event loop's exception handler: the same kind of error is logged at most once per 10 s.

    Under file-descriptor exhaustion asyncio reports every failed ``accept()`` with a traceback;
    one line and a count of the suppressed repeats keeps the log readable and small.
    """

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        key = f"{context.get('message', '')}|{type(exc).__name__ if exc else ''}"
        now = time.monotonic()
        last, suppressed = self._last.get(key, (-1e9, 0))
        if now - last < self.period:
            self._last[key] = (last, suppressed + 1)
            return
        self._last[key] = (now, 0)
        more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
        log.error("%s%s%s", context.get("message", "event loop error"), f": {exc}" if exc else "", more)


def _pid() -> int:
    import os

    return os.getpid()
