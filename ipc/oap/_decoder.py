"""``FrameDecoder``: the incremental (sans-IO) OAP/1 decoder for byte streams split anywhere."""

from __future__ import annotations

from ._codec import Buffer, Header, build_frame, check_max_frame, frame_total, parse_header
from ._constants import HEADER_LEN, MAX_FRAME
from ._errors import OapError
from ._frame import Frame


class FrameDecoder:
    """Feed it bytes as they arrive; get back the frames they complete.

    Guarantees:

    * Memory is bounded: it holds at most the unfinished tail of one frame, never more than
      ``max_frame`` bytes (``buffered``). A header that announces a frame larger than
      ``max_frame`` is refused (413) as soon as its ``len`` field has been fed.
    * Splitting does not matter: any split of the same bytes yields the same frames, and the
      same error, as ``decode`` would for each frame.
    * Errors are final, like h11: after an ``OapError`` the decoder is poisoned and every later
      ``feed`` raises that same error. The error is raised at once, so frames completed earlier
      in the same ``feed`` call are dropped with it (the connection is going away anyway).
    """

    __slots__ = ("_buf", "_error", "_hdr", "_max_frame", "_total")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._max_frame = check_max_frame(max_frame)
        self._buf = bytearray()  # the unfinished frame, if any
        self._total = 0  # its size once its len field is in _buf, else 0
        self._hdr: Header | None = None  # its checked header once 37 bytes are in _buf
        self._error: OapError | None = None

    @property
    def max_frame(self) -> int:
        """The frame size bound this decoder enforces."""
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes currently held (the start of an unfinished frame); always <= max_frame."""
        return len(self._buf)

    @property
    def error(self) -> OapError | None:
        """The error that poisoned this decoder, or None."""
        return self._error

    def feed(self, data: Buffer) -> list[Frame]:
        """Consume ``data``; return the frames it completes, in order (possibly none).

        Raises ``OapError`` on malformed input, and forever after.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except OapError as exc:
            self._error = exc
            self._buf = bytearray()
            self._total, self._hdr = 0, None
            raise

    def _feed(self, data: Buffer) -> list[Frame]:
        frames: list[Frame] = []
        # Parse straight out of the caller's bytes (slicing bytes is the cheapest copy); other
        # buffers go through a view that is released before returning.
        src: bytes | memoryview = data if type(data) is bytes else memoryview(data)
        try:
            size = len(src)
            pos = self._fill(src, frames) if self._buf else 0
            if self._buf:
                return frames  # everything went into the unfinished frame
            max_frame = self._max_frame
            while size - pos >= 4:
                total = frame_total(src, pos, max_frame)
                if size - pos < HEADER_LEN:
                    break
                hdr = parse_header(src, pos, total)
                if size - pos < total:
                    self._total, self._hdr = total, hdr
                    break
                frames.append(build_frame(src, pos, total, hdr, max_frame))
                pos += total
            if pos < size:
                if not self._total and size - pos >= 4:
                    self._total = frame_total(src, pos, max_frame)
                with memoryview(src) as rest:
                    self._buf += rest[pos:]
            return frames
        finally:
            if type(src) is memoryview:
                src.release()

    def _fill(self, src: bytes | memoryview, frames: list[Frame]) -> int:
        """Move bytes from ``src`` into the unfinished frame; return how many were taken."""
        buf, size, pos = self._buf, len(src), 0
        while True:
            have = len(buf)
            if have < 4:
                need = 4
            elif have < HEADER_LEN:
                need = HEADER_LEN
            else:
                need = self._total
            take = min(need - have, size - pos)
            # Appending the caller's whole chunk (the usual case for big frames) is one copy.
            buf += src if take == size else memoryview(src)[pos : pos + take]
            pos += take
            if len(buf) < need:
                return pos
            if need == 4:
                self._total = frame_total(buf, 0, self._max_frame)
                continue
            if self._hdr is None:
                self._hdr = parse_header(buf, 0, self._total)
            if len(buf) < self._total:
                continue
            frame = build_frame(buf, 0, self._total, self._hdr, self._max_frame)
            self._buf = bytearray()
            self._total, self._hdr = 0, None
            frames.append(frame)
            return pos
