"""The QBus master's asyncio.Protocol: framing, line timing and request/reply matching."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from devices.qbus.frames import (
    MASTER,
    MAX_DEVICE_ADDRESS,
    MIN_DEVICE_ADDRESS,
    REPLY_FLAG,
    SOF,
    DecoderStats,
    Frame,
    FrameDecoder,
)
from qcall.errors import DeviceTimeout, DeviceUnavailable

_LOGGER = logging.getLogger(__name__)

# An incomplete frame is abandoned after this much silence at the least. The protocol asks for
# 3.5 character times (3.6 ms at 9600), but USB adapters and the OS deliver bytes in bursts up
# to ~16 ms apart (FTDI latency timer), so a shorter gap would cut healthy frames in two.
MIN_GAP_S: Final = 0.020
# Modbus RTU's idle time between frames, in character times.
INTER_FRAME_CHARS: Final = 3.5
# How many of our own frames an echoing adapter may still give back: the master waits for each
# reply (or its timeout) before the next frame, so an echo is never more than a few frames late.
ECHO_MEMORY: Final = 8


def char_time(baud: int, parity: str = "N") -> float:
    """Return the time one character takes on the line (start + 8 data [+ parity] + stop)."""
    return (10 if parity == "N" else 11) / baud


class StreamFramer:
    """Feed bytes to a FrameDecoder; abandon an incomplete frame when the line goes idle."""

    def __init__(
        self,
        decoder: FrameDecoder,
        gap_s: float,
        on_frame: Callable[[Frame], None],
    ) -> None:
        self._decoder = decoder
        self._gap_s = gap_s
        self._on_frame = on_frame
        self._timer: asyncio.TimerHandle | None = None

    def feed(self, data: bytes) -> None:
        """Decode ``data`` and hand every complete frame on."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for frame in self._decoder.feed(data):
            self._on_frame(frame)
        if self._decoder.pending:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._gap_s, self._gap_expired)

    @property
    def pending(self) -> int:
        """Return how many bytes of an incomplete frame are buffered."""
        return self._decoder.pending

    def close(self) -> None:
        """Stop the idle timer and forget any partial frame."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._decoder.reset()

    def _gap_expired(self) -> None:
        self._timer = None
        for frame in self._decoder.flush():
            self._on_frame(frame)


@dataclass(slots=True)
class LinkStats:
    """Frame counters of the master's link (shared across reconnects)."""

    frames_tx: int = 0
    frames_rx: int = 0
    stray_frames: int = 0
    echo_frames: int = 0
    foreign_frames: int = 0
    attention_bytes: int = 0


class QBusProtocol(asyncio.Protocol):
    """Send requests after the inter-frame gap; match replies by (SRC, SEQ, CMD | 0x80)."""

    # One request at a time: the bus is half duplex and the master serialises. Late replies
    # and echoes of our own frames are counted and dropped.

    def __init__(
        self,
        *,
        char_time_s: float,
        stats: LinkStats | None = None,
        decoder_stats: DecoderStats | None = None,
        on_foreign: Callable[[Frame], None] | None = None,
    ) -> None:
        self.stats = stats if stats is not None else LinkStats()
        self._on_foreign = on_foreign
        # Our own recent frames: an adapter that echoes what we send gives them back; any other
        # frame from the master address was sent by another master on the same line.
        self._sent: collections.deque[bytes] = collections.deque(maxlen=ECHO_MEMORY)
        self._char_time = char_time_s
        self._inter_frame_s = INTER_FRAME_CHARS * char_time_s
        self._framer = StreamFramer(
            FrameDecoder(decoder_stats), max(self._inter_frame_s, MIN_GAP_S), self._on_frame
        )
        self._transport: asyncio.Transport | None = None
        self._pending: tuple[tuple[int, int, int], asyncio.Future[Frame]] | None = None
        self._line_free_at = 0.0
        # While a POLL_ANY window is open: the attention bytes heard, and whether a 5A is held
        # back until the next byte tells an attention byte from the start of a frame (5A A5).
        self._attention: list[int] | None = None
        self._held_sof = False
        loop = asyncio.get_running_loop()
        self._connected: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()

    @property
    def is_open(self) -> bool:
        """Return whether the connection is up."""
        return (
            self._transport is not None
            and not self._transport.is_closing()
            and not self._closed.done()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        self._transport = cast(asyncio.Transport, transport)
        if not self._connected.done():
            self._connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Feed received bytes to the decoder."""
        self._line_free_at = max(self._line_free_at, asyncio.get_running_loop().time())
        if self._attention is None:
            self._framer.feed(data)
        else:
            self._feed_window(data)

    def eof_received(self) -> bool | None:
        """Close on EOF (the TCP peer went away)."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the pending request and mark the link closed."""
        self._framer.close()
        error = DeviceUnavailable(
            f"bus connection lost: {exc}" if exc else "bus connection closed",
            f"总线连接断开：{exc}" if exc else "总线连接已关闭",
        )
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(error)
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_connected(self) -> None:
        """Wait for ``connection_made`` (serial transports call it on the next loop turn)."""
        await asyncio.shield(self._connected)

    async def wait_closed(self) -> None:
        """Wait until the connection is lost or closed."""
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Close the transport."""
        if self._transport is not None:
            self._transport.close()

    def wire_time(self, size: int) -> float:
        """Return how long ``size`` bytes take on the line."""
        return size * self._char_time

    async def request(self, frame: Frame, reply_timeout: float) -> Frame:
        """Send ``frame`` and return the matching reply; raise DeviceTimeout/DeviceUnavailable."""
        if self._pending is not None:
            raise RuntimeError("QBusProtocol allows one outstanding request")
        await self._wait_line_idle()
        key = (frame.dst, frame.seq, frame.cmd | REPLY_FLAG)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending = (key, future)
        try:
            self._write(frame)
            async with asyncio.timeout(reply_timeout):
                return await future
        except TimeoutError:
            raise DeviceTimeout(
                f"no reply from address {frame.dst} within {reply_timeout * 1000:.0f} ms",
                f"地址 {frame.dst} 在 {reply_timeout * 1000:.0f} 毫秒内无应答",
            ) from None
        finally:
            self._pending = None

    async def send(self, frame: Frame) -> None:
        """Send a frame that gets no reply (broadcast)."""
        await self._wait_line_idle()
        self._write(frame)

    async def poll_any(
        self, frame: Frame, window_s: float, interrupt: asyncio.Event | None = None
    ) -> list[int]:
        """Broadcast POLL_ANY ``frame``; return the attention bytes heard ``window_s`` after it.

        While the window is open, single bytes 01-7F received outside a frame are attention
        bytes (in arrival order, duplicates kept); frames are still decoded as usual. The window
        closes early when ``interrupt`` is set. Raise DeviceUnavailable when the port is or goes
        down.
        """
        if self._pending is not None or self._attention is not None:
            raise RuntimeError("QBusProtocol allows one outstanding request")
        await self._wait_line_idle()
        heard: list[int] = []
        self._attention = heard
        try:
            self._write(frame)
            delay = self._line_free_at + window_s - asyncio.get_running_loop().time()
            if interrupt is None:
                await asyncio.sleep(max(delay, 0.0))
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, 0.0)):
                        await interrupt.wait()
        finally:
            if self._held_sof:
                self._held_sof = False
                self._attend(SOF[0])
            self._attention = None
        if not self.is_open:
            raise DeviceUnavailable("bus connection closed", "总线连接已关闭")
        return heard

    def _feed_window(self, data: bytes) -> None:
        # Byte by byte (a handful of bytes per window): a byte that arrives while no frame is
        # being assembled and is a device address is an attention byte, except that 5A may
        # begin a frame, so it waits for the next byte.
        for byte in data:
            if self._held_sof:
                self._held_sof = False
                if byte == SOF[1]:
                    self._framer.feed(SOF)
                    continue
                self._attend(SOF[0])
            if self._framer.pending:
                self._framer.feed(bytes((byte,)))
            elif byte == SOF[0]:
                self._held_sof = True
            elif MIN_DEVICE_ADDRESS <= byte <= MAX_DEVICE_ADDRESS:
                self._attend(byte)
            else:
                self._framer.feed(bytes((byte,)))

    def _attend(self, address: int) -> None:
        if self._attention is not None:
            self._attention.append(address)
            self.stats.attention_bytes += 1

    async def _wait_line_idle(self) -> None:
        delay = self._line_free_at + self._inter_frame_s - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _write(self, frame: Frame) -> None:
        if not self.is_open:
            raise DeviceUnavailable("bus port is not open", "总线端口未打开")
        assert self._transport is not None
        data = frame.to_bytes()
        now = asyncio.get_running_loop().time()
        self._line_free_at = max(self._line_free_at, now) + self.wire_time(len(data))
        self._transport.write(data)
        self._sent.append(data)
        self.stats.frames_tx += 1

    def _on_frame(self, frame: Frame) -> None:
        self.stats.frames_rx += 1
        if frame.src == MASTER:
            data = frame.to_bytes()
            if data in self._sent:
                self._sent.remove(data)
                self.stats.echo_frames += 1
                return
            self.stats.foreign_frames += 1
            if self._on_foreign is not None:
                self._on_foreign(frame)
            return
        pending = self._pending
        if (
            pending is not None
            and frame.dst == MASTER
            and (frame.src, frame.seq, frame.cmd) == pending[0]
            and not pending[1].done()
        ):
            pending[1].set_result(frame)
            return
        self.stats.stray_frames += 1
        _LOGGER.debug("stray frame from %d seq %d cmd 0x%02X", frame.src, frame.seq, frame.cmd)
