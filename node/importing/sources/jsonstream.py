"""Stream the top-level ``entry`` array of a big JSON object without loading the whole file."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.errors import InputError

__all__ = ["CHUNK", "JSONStreamError", "stream_object"]

CHUNK = 1 << 16
_STRUCT = re.compile(r'[\[\]{}"]')
_STR_END = re.compile(r'["\\]')
_SCALAR = re.compile(r"[^,\]}\s]*")
_WS = re.compile(r"\s*")


class JSONStreamError(InputError):
    """The file is not JSON (or ends early); ``entry`` counts the entries read before."""

    def __init__(self, message: str, entry: int) -> None:
        super().__init__(message)
        self.entry = entry


class _Reader:
    def __init__(self, path: Path) -> None:
        self.fh = path.open("rb")
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.offset = 0  # bytes read so far, for messages
        self.eof = False
        self.entries = 0

    def more(self) -> None:
        if self.eof:
            raise JSONStreamError("file ends in the middle of the JSON (truncated?)", self.entries)
        data = self.fh.read(CHUNK)
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise JSONStreamError(
                f"not valid UTF-8 near byte {self.offset + exc.start}", self.entries
            ) from exc
        self.offset += len(data)
        if not data:
            self.eof = True
        if self.pos > CHUNK:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += text

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            self.more()

    def expect(self, chars: str) -> str:
        c = self.peek()
        if c not in chars:
            raise JSONStreamError(
                f"expected one of {chars!r} but found {c!r} near byte "
                f"{self.offset - len(self.buf) + self.pos}",
                self.entries,
            )
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        start = self.pos
        while True:
            end = self._end(start)
            if end is not None:
                break
            self.more()
            start = self.pos  # ``more`` may have moved the buffer; pos still marks the start
        text = self.buf[start:end]
        self.pos = end
        try:
            return json.loads(text)
        except ValueError as exc:
            raise JSONStreamError(f"invalid JSON value: {exc}", self.entries) from exc

    def _end(self, i: int) -> int | None:
        buf = self.buf
        c = buf[i]
        if c == '"':
            return self._string_end(i)
        if c in "[{":
            depth = 0
            j = i
            while True:
                m = _STRUCT.search(buf, j)
                if m is None:
                    return None
                ch = m.group()
                if ch == '"':
                    end = self._string_end(m.start())
                    if end is None:
                        return None
                    j = end
                    continue
                depth += 1 if ch in "[{" else -1
                j = m.end()
                if depth == 0:
                    return j
        m = _SCALAR.match(buf, i)
        assert m is not None
        return m.end() if m.end() < len(buf) or self.eof else None

    def peek_end(self) -> bool:
        """True when only whitespace is left; trailing data is an error."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                raise JSONStreamError(
                    "unexpected data after the end of the JSON object", self.entries
                )
            if self.eof:
                return True
            try:
                self.more()
            except JSONStreamError:
                return True

    def _string_end(self, i: int) -> int | None:
        j = i + 1
        while True:
            m = _STR_END.search(self.buf, j)
            if m is None:
                return None
            if m.group() == "\\":
                j = m.end() + 1
                if j > len(self.buf):
                    return None
                continue
            return m.end()


def stream_object(path: Path, array_key: str = "entry") -> Iterator[tuple[str, Any]]:
    """Yield ``("item", element)`` for each element of ``array_key`` and ``(key, value)``
    for every other top-level member, in file order. Raises :class:`JSONStreamError`."""
    reader = _Reader(path)
    try:
        reader.expect("{")
        if reader.peek() == "}":
            return
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise JSONStreamError("object key is not a string", reader.entries)
            reader.expect(":")
            if key == array_key and reader.peek() == "[":
                reader.pos += 1
                if reader.peek() == "]":
                    reader.pos += 1
                else:
                    while True:
                        item = reader.value()
                        reader.entries += 1
                        yield "item", item
                        if reader.expect(",]") == "]":
                            break
            else:
                yield key, reader.value()
            if reader.expect(",}") == "}":
                break
        if reader.peek_end():
            return
    finally:
        reader.fh.close()
