"""Reader for the primitives of dlib's binary serialisation format (``dlib/serialize.h``).

Written from the format's definition, not from dlib's code:

- integers: one control byte, then ``size`` little-endian magnitude bytes. The low nibble of the
  control byte is ``size`` (1..8); bit 0x80 marks a negative value (signed types only). Zero is
  written with one magnitude byte: ``01 00``.
- floating-point scalars (``float``, ``double``): a portable pair, the integer ``mantissa``
  (int64) then the integer ``exponent`` (int16), value ``mantissa * 2**exponent``; exponents
  32000, 32001, 32002 stand for +inf, -inf and NaN.
- ``bool``: one ASCII byte, ``'0'`` or ``'1'``.
- strings (``std::string`` and C string literals): an unsigned integer length, then the bytes.
- tensors (``resizable_tensor``): int version (2), then num_samples, k, nr, nc as integers, then
  ``num_samples*k*nr*nc`` little-endian IEEE float32 values (row-major, NCHW).
- alias tensors (views into a layer's parameter tensor): int version (1) then the 4 dimensions.
"""

from __future__ import annotations

import math

import numpy as np

_FLOAT_INF = 32000
_FLOAT_NINF = 32001
_FLOAT_NAN = 32002


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialisation format where the reader expected them to."""


class DlibReader:
    """A cursor over serialised bytes; each ``read_*`` consumes one value."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self._data)

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, signed: bool = True) -> int:
        start = self.pos
        control = self._take(1)[0]
        negative = bool(control & 0x80)
        if control & 0x70 or (negative and not signed):
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at byte {start}")
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise DlibFormatError(f"bad integer size {size} at byte {start}")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def read_uint(self) -> int:
        return self.read_int(signed=False)

    def read_float(self) -> float:
        start = self.pos
        if self.pos < len(self._data) and self._data[self.pos] & 0x70:
            raise DlibFormatError(f"old ASCII float encoding at byte {start} is not supported")
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self) -> bool:
        start = self.pos
        byte = self._take(1)[0]
        if byte not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{byte:02x} at byte {start}")
        return byte == ord("1")

    def read_string(self) -> str:
        length = self.read_uint()
        return bytes(self._take(length)).decode("latin-1")

    def peek_string(self, max_length: int = 256) -> str | None:
        """The string at the cursor if the bytes there look like one, without consuming it."""
        saved = self.pos
        try:
            length = self.read_uint()
            if length > max_length:
                return None
            text = bytes(self._take(length))
            if not all(32 <= ch < 127 for ch in text):
                return None
            return text.decode("ascii")
        except DlibFormatError:
            return None
        finally:
            self.pos = saved

    def read_tensor(self) -> np.ndarray:
        start = self.pos
        version = self.read_int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at byte {start}, expected 2")
        shape = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"negative tensor dimension {shape} at byte {start}")
        count = math.prod(shape)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        start = self.pos
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"alias tensor version {version} at byte {start}, expected 1")
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return n, k, nr, nc
