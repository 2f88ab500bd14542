"""Best-effort image costs: OpenAI's published examples and header parsing of data URLs."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from proxy.tokens.images import image_size, image_tokens


@pytest.mark.parametrize(
    ("size", "detail", "model", "expected"),
    [
        ((1024, 1024), "high", "gpt-4o", 765),  # 768x768: 4 tiles
        ((2048, 4096), "high", "gpt-4o", 1105),  # 1024x2048 -> 768x1536: 6 tiles
        ((4096, 8192), "low", "gpt-4o", 85),
        ((512, 512), "high", "gpt-4o", 255),  # small images are not scaled up
        ((1024, 1024), "auto", "gpt-4o", 765),  # auto is treated as high
        ((1024, 1024), None, "unknown-model", 765),
        ((1024, 1024), "low", "gpt-4o-mini", 2833),
        ((1024, 1024), "high", "gpt-4o-mini", 2833 + 4 * 5667),
        ((1024, 1024), "low", "gpt-4.1-mini", math.ceil(1024 * 1.62)),  # patches ignore detail
        ((1800, 2400), None, "gpt-4.1-mini", math.ceil(1452 * 1.62)),  # OpenAI's example
        ((1024, 1024), None, "gpt-4.1-nano", math.ceil(1024 * 2.46)),
        ((1024, 1024), None, "o4-mini", math.ceil(1024 * 1.72)),
        (None, None, "gpt-4o", 765),  # unknown size: assumed 1024x1024
    ],
)
def test_image_tokens(
    size: tuple[int, int] | None, detail: str | None, model: str, expected: int
) -> None:
    assert image_tokens(size, detail, model) == expected


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


PNG = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 480)
GIF = b"GIF89a" + struct.pack("<HH", 320, 200) + b"\x00" * 8
JPEG = (
    b"\xff\xd8"
    + b"\xff\xe0"
    + struct.pack(">H", 16)
    + b"JFIF\x00"
    + b"\x00" * 9
    + b"\xff\xc0"
    + struct.pack(">HBHH", 17, 8, 1080, 1920)
    + b"\x00" * 12
)
WEBP_VP8X = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (799).to_bytes(3, "little") * 2
WEBP_VP8L = (
    b"RIFF\x00\x00\x00\x00WEBPVP8L"
    + b"\x00" * 4
    + b"\x2f"
    + ((100 - 1) | ((50 - 1) << 14)).to_bytes(4, "little")
    + b"\x00" * 8
)


@pytest.mark.parametrize(
    ("url", "size"),
    [
        (_data_url(PNG), (640, 480)),
        (_data_url(GIF, "image/gif"), (320, 200)),
        (_data_url(JPEG, "image/jpeg"), (1920, 1080)),
        (_data_url(WEBP_VP8X, "image/webp"), (800, 800)),
        (_data_url(WEBP_VP8L, "image/webp"), (100, 50)),
        ("https://example.com/cat.png", None),  # never fetched
        ("data:image/png;base64,!!!not base64!!!", None),
        (_data_url(b"plain text, not an image"), None),
    ],
)
def test_image_size_from_data_urls(url: str, size: tuple[int, int] | None) -> None:
    assert image_size(url) == size
