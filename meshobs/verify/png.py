"""A small line-chart PNG writer on stdlib zlib: enough for one chart per panel in the report,
with no plotting library to install in CI."""

from __future__ import annotations

import struct
import zlib

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
_BACKGROUND = (255, 255, 255)
_GRID = (225, 225, 225)
_AXIS = (120, 120, 120)


def color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


class Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(_BACKGROUND) * (width * height))

    def dot(self, x: int, y: int, rgb: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at:at + 3] = bytes(rgb)

    def line(self, x0: int, y0: int, x1: int, y1: int, rgb: tuple[int, int, int]) -> None:
        # Bresenham; two pixels thick vertically so thin charts stay readable
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            self.dot(x0, y0, rgb)
            self.dot(x0, y0 + 1, rgb)
            if x0 == x1 and y0 == y1:
                return
            double = 2 * error
            if double >= dy:
                error += dy
                x0 += sx
            if double <= dx:
                error += dx
                y0 += sy

    def png(self) -> bytes:
        rows = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                        for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


Line = list[tuple[float, float]]


def bounds(lines: list[Line]) -> tuple[float, float, float, float]:
    """(t0, t1, low, high) over every point; the value range always includes 0."""
    points = [p for line in lines for p in line]
    times = [t for t, _ in points] or [0.0, 1.0]
    values = [v for _, v in points if v == v and abs(v) != float("inf")] or [0.0]
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    if high == low:
        high = low + 1.0
    return min(times), max(times), low, high


def chart(lines: list[Line], width: int = 360, height: int = 140, pad: int = 6) -> bytes:
    """PNG of `lines` ([(t, v), ...] each, colour by index): grid, zero axis, one polyline per series."""
    canvas = Canvas(width, height)
    t0, t1, low, high = bounds(lines)
    span_t = (t1 - t0) or 1.0

    def xy(t: float, v: float) -> tuple[int, int]:
        x = pad + round((t - t0) / span_t * (width - 2 * pad - 1))
        y = height - pad - 1 - round((v - low) / (high - low) * (height - 2 * pad - 2))
        return x, y

    for step in range(5):
        y = pad + round(step * (height - 2 * pad - 1) / 4)
        canvas.line(pad, y, width - pad - 1, y, _GRID)
    zero = xy(t0, 0.0)[1]
    canvas.line(pad, zero, width - pad - 1, zero, _AXIS)
    for index, line in enumerate(lines):
        points = [xy(t, v) for t, v in line if v == v and abs(v) != float("inf")]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            canvas.line(x0, y0, x1, y1, color(index))
        if len(points) == 1:
            canvas.line(points[0][0] - 1, points[0][1], points[0][0] + 1, points[0][1], color(index))
    return canvas.png()
