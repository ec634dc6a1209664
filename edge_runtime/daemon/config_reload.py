"""SIGHUP re-reads the whole configuration and applies it, or keeps the old one and says why.

What a reload applies: the model (a new path, backend, options or labels, or the same file
changed on disk), the sinks (new topics, brokers, files), the postprocessing and
preprocessing chains, and the source (a new port or serial device: the new one is opened
before the old one is closed). What needs a restart (the pipeline's queue and batch sizes,
the health listener, the profile, the memory budget, the drain timeout) is kept at its old
value, with one log line naming the sections.

Everything new is built and started first; only when all of it works is it swapped in, in
one step on the event loop. A config that fails to parse or validate, a model that fails
its check, a sink or source that cannot start: the old configuration keeps serving, and
the reason goes to the log and to ``/metrics`` (``last_reload_error_info``).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Optional

from edge_runtime.daemon.config import ArgmaxPost, DaemonConfig
from edge_runtime.daemon.model_slot import ModelSlot, sample_shape
from edge_runtime.daemon.postprocess import PostChain
from edge_runtime.daemon.sinks import make_sink
from edge_runtime.daemon.sources import make_source
from edge_runtime.errors import ConfigError, EdgeRuntimeError

if TYPE_CHECKING:
    from edge_runtime.daemon.pipeline import Daemon

log = logging.getLogger("edge_runtime.daemon")

#: Sections a running daemon can take over; the others need a restart.
LIVE_SECTIONS = ("model", "source", "sinks", "postprocess", "preprocess")
RESTART_SECTIONS = ("pipeline", "health", "profile", "memory_budget_bytes", "drain_timeout_s")


def changed_sections(old: DaemonConfig, new: DaemonConfig) -> list[str]:
    """The top-level sections whose values differ."""
    return [s for s in LIVE_SECTIONS + RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]


class ConfigReloader:
    """Re-reads the config with ``reread`` and applies it to ``daemon``."""

    def __init__(self, daemon: "Daemon", reread: Callable[[], DaemonConfig]) -> None:
        self.daemon = daemon
        self.reread = reread

    async def reload(self, reason: str) -> bool:
        """Apply the re-read configuration; False (old one kept, reason recorded) on any failure."""
        d = self.daemon
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(d.reload_executor(), self.reread)
        except EdgeRuntimeError as exc:
            return d.reload_failed(f"config reload refused: {exc}", reason)
        changes = changed_sections(d.cfg, new)
        if "source" in changes and self._same_listener(new):
            changes.remove("source")  # e.g. port 0 in the old config, the port it got in the new one
        frozen = [s for s in changes if s in RESTART_SECTIONS]
        if "source" in changes and self._same_address(new):
            frozen.append("source")  # the same listener with other limits: it cannot be opened twice
        if frozen:
            log.warning("config sections %s change only at restart; they keep their running values",
                        ", ".join(frozen))
            new = new.model_copy(update={s: getattr(d.cfg, s) for s in frozen})
        new_sinks: list[Any] = []
        new_source = None
        try:
            cand = await loop.run_in_executor(d.reload_executor(), self._prepare_model, new)
            model = (cand or d.slot.current).model
            post, pre = self._chains(new, model)
            if "sinks" in changes:
                new_sinks = [make_sink(s, d.metrics) for s in new.sinks]
                for s in new_sinks:
                    await s.start()
            if "source" in changes:
                new_source = make_source(new.source)
                if hasattr(new_source, "max_buffered_bytes"):
                    new_source.max_buffered_bytes = new.pipeline.max_buffered_bytes
                new_source.fast_submit = d.submit_nowait
                new_source.fast_submit_many = d.submit_many_nowait  # a read's samples admitted at once, as at start-up
                await new_source.start(d.submit, d.metrics, new.pipeline.max_frame_bytes)
        except (EdgeRuntimeError, OSError, ValueError, TypeError) as exc:
            for s in new_sinks:
                s.close()
            if new_source is not None:
                await new_source.stop()
                await new_source.close()
            if "cand" in locals() and cand is not None:
                cand.model.close()
            return d.reload_failed(f"config reload refused: {exc}", reason)
        # everything new works: switch in one step
        d.cfg = new
        d.post, d.preprocessor = post, pre
        if cand is not None:
            d.swap_model(cand)
        if new_sinks:
            old_sinks, d.sinks = d.sinks, new_sinks
            d.want_json = any(s.wants_json for s in new_sinks)
            for s in old_sinks:
                s.close()
        if new_source is not None:
            old, d.source = d.source, new_source
            d.addresses["source"] = new_source.name
            if old is not None:
                await old.stop()
                await old.close()
        d.reload_succeeded()
        log.info("reloaded the configuration (triggered by %s): %s", reason,
                 ", ".join(s for s in changes if s not in frozen) or "no changes that apply while running")
        return True

    def _same_listener(self, new: DaemonConfig) -> bool:
        """True when the new source is the TCP listener already open (same host, same bound port)."""
        old, src = self.daemon.cfg.source, self.daemon.source
        if old.type != "tcp" or new.source.type != "tcp" or src is None:
            return False
        bound = int(src.name.rsplit(":", 1)[1]) if ":" in getattr(src, "name", "") else -1
        return new.source == old.model_copy(update={"port": new.source.port}) and new.source.port in (old.port, bound)

    def _same_address(self, new: DaemonConfig) -> bool:
        """True when the new TCP source listens where the running one does (only its limits differ)."""
        old, src = self.daemon.cfg.source, self.daemon.source
        if old.type != "tcp" or new.source.type != "tcp" or src is None or new.source.host != old.host:
            return False
        bound = int(src.name.rsplit(":", 1)[1]) if ":" in getattr(src, "name", "") else -1
        return new.source.port in (old.port, bound)

    def _prepare_model(self, new: DaemonConfig) -> Optional[Any]:
        """A checked candidate model when the model section or file changed, else None."""
        d = self.daemon
        assert d.slot is not None
        if new.model == d.cfg.model and not d.model_file_changed():
            return None
        slot = ModelSlot(new.model, d.slot.profile, d.slot._loader)
        slot.current = d.slot.current
        cand = slot.prepare_reload()
        d.attach_batch(cand)
        return cand

    def _chains(self, new: DaemonConfig, model: Any) -> tuple[PostChain, Any]:
        steps = list(new.postprocess) or [ArgmaxPost(type="argmax")]
        out = model.outputs[0]
        out = replace(out, shape=sample_shape(out.shape, f"output '{out.name}'"))
        try:
            post = PostChain(steps, out, new.model.labels)
        except ValueError as exc:
            raise ConfigError(f"model.labels / postprocess: {exc}") from None
        pre = None
        if new.preprocess is not None:
            from edge_runtime.daemon.preprocessing import LinkPreprocessor

            pre = LinkPreprocessor(new.preprocess, model.inputs[0], new.pipeline.payload_dtype)
        if (pre is None) != (self.daemon.preprocessor is None):
            raise ConfigError("adding or removing the preprocess section changes what frames carry; restart the "
                              "daemon for that")
        return post, pre
