"""One device connection: framing decoder, sequence tracking and fragment reassembly.

A :class:`Link` turns received bytes into complete samples ``(seq, payload)`` and
adds what it drops to the daemon's counters. Sources own links; sinks use
``link.send`` to answer the device over the same connection.
"""
from __future__ import annotations

from typing import Callable, Optional

from edge_runtime.daemon import framing
from edge_runtime.daemon.metrics import Metrics

SendFn = Callable[[bytes], bool]
_DATA, _WHOLE = framing.DATA, framing.WHOLE


class Link:
    """A framed byte stream from one device."""

    def __init__(self, name: str, metrics: Metrics, max_payload: int, send: Optional[SendFn] = None) -> None:
        self.name = name
        self.metrics = metrics
        self.decoder = framing.FrameDecoder(max_payload)
        self.tracker = framing.SequenceTracker()
        self.reasm = framing.Reassembler(max_payload)
        self._send = send
        self.open = True
        self.data_frames = 0
        self.inflight = 0  #: requests admitted from this link and not yet answered
        self._seen = (0, 0, 0, 0, 0, 0, 0)

    def send(self, data: bytes) -> bool:
        """Queue ``data`` to the device; False when the link cannot take it (counted by the caller)."""
        if self._send is None or not self.open:
            return False
        return self._send(data)

    def nack(self, seq: int, reason: int, text: str) -> None:
        """Tell the device that sample ``seq`` was not run, and why (counted in ``nacks_sent``)."""
        if self._send is not None and self.open:
            if self.send(framing.encode_frame(framing.NACK, seq, framing.encode_nack_payload(reason, text))):
                self.metrics.inc("nacks_sent")

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for unfinished frames and samples (the framing buffer and the reassembly buffer)."""
        return self.decoder.buffered_bytes + self.reasm.buffered_bytes

    def drop_partial(self) -> None:
        """Forget unfinished frames and samples (the link is being closed for memory)."""
        self.decoder.reset()
        self.reasm.clear()
        self._account()

    def samples(self, data: bytes) -> list[tuple[int, bytes]]:
        """Feed received bytes; the samples they complete, as ``(sequence number, payload)``, in order."""
        tracker, reasm = self.tracker, self.reasm
        see, idle = tracker.see, reasm.idle
        out: list[tuple[int, bytes]] = []
        frames = 0
        for frame in self.decoder.decode(data):
            kind, flags, seq, payload = frame
            if kind != _DATA:
                if kind == framing.HELLO and payload == framing.DEVICE_HELLO:
                    tracker.start_at(seq)  # the device's next sequence number
                continue  # our own HELLO/RESULT echoed on a loopback, or a kind from a newer peer
            frames += 1
            if not see(seq):
                continue
            if flags == _WHOLE and idle(frame):
                out.append((seq, payload))  # a whole sample in one frame, nothing pending
                continue
            sample = reasm.add(frame)
            if sample is not None:
                out.append(sample)
        self.data_frames += frames
        self._account()
        return out

    def reset(self) -> None:
        """The peer went away mid-stream (reconnect): drop a partial frame."""
        self.decoder.reset()
        self._account()

    def _account(self) -> None:
        st, tr = self.decoder.stats, self.tracker
        now = (self.data_frames, st.corrupt, st.oversize, st.bytes_dropped, tr.lost, tr.duplicates, self.reasm.incomplete)
        if now == self._seen:
            return
        names = ("frames_received", "frames_corrupt", "frames_oversize", "bytes_dropped", "frames_lost",
                 "frames_duplicate", "samples_incomplete")
        for name, a, b in zip(names, now, self._seen):
            if a != b:
                self.metrics.inc(name, a - b)
        restarts = tr.restarts
        self._seen = now
        if restarts != getattr(self, "_restarts", 0):
            self.metrics.inc("sequence_restarts", restarts - getattr(self, "_restarts", 0))
            self._restarts = restarts
