"""Best-effort image token estimates (reference/openai-usage.md section 3.2, "Content arrays").

Image costs are set per model by rules OpenAI changes; offline they are estimates at best, and the
proxy always prefers upstream usage. The rules used here:

- tile rule (gpt-4o and the default): ``detail: low`` costs ``base``; otherwise the image is fitted
  into 2048×2048, its short side is scaled down to 768, and it costs ``base + tile × n`` for the
  ``n`` 512-px tiles covering it. gpt-4o and unknown models: 85 + 170 per tile; gpt-4o-mini: 2833
  + 5667 per tile (its images cost about 33× more tokens).
- patch rule (gpt-4.1-mini, gpt-4.1-nano, o4-mini): 32-px patches, capped at 1536 (scaling the
  image down to fit), times a per-model multiplier; ``detail`` does not matter.

``detail: auto`` (and a missing detail) is treated as **high**: the API picks high for all but
small images, and for a billing fallback an undercount is the worse error (LiteLLM's "auto = low"
undercounts every large image by up to 10×).

Dimensions come from the image header when the URL is a base64 ``data:`` URL (PNG, GIF, JPEG,
WebP). Remote URLs are never fetched (no network); they are assumed 1024×1024, which costs
765 tokens under the gpt-4o tile rule.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct

__all__ = ["ASSUMED_SIZE", "image_size", "image_tokens"]

#: The size assumed when the image cannot be measured (a remote URL, a file id, an odd format).
ASSUMED_SIZE = (1024, 1024)

# JPEG puts its size in a SOF segment after any EXIF/ICC data; 256 KiB of base64 covers almost all.
_HEADER_B64_CHARS = 256 * 1024
_DATA_URL = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
# (base, per tile) of the tile rule, by model-name prefix; first match wins.
_TILE_COSTS = (("gpt-4o-mini", 2833, 5667),)
_DEFAULT_TILE_COST = (85, 170)
# Multiplier of the patch rule, by model-name prefix.
_PATCH_MULTIPLIERS = (("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46), ("o4-mini", 1.72))
_MAX_PATCHES = 1536


def _png(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


def image_size(url: str) -> tuple[int, int] | None:
    """Width and height of a base64 ``data:`` URL image, ``None`` if unknown (never fetches)."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    encoded = url[match.end() : match.end() + _HEADER_B64_CHARS]
    encoded = encoded[: len(encoded) // 4 * 4]
    try:
        data = base64.b64decode(encoded)
    except (binascii.Error, ValueError):
        return None
    for parse in (_png, _gif, _jpeg, _webp):
        size = parse(data)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    return None


def _tile_tokens(width: int, height: int, detail: str, base: int, tile: int) -> int:
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def _patch_tokens(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > _MAX_PATCHES:
        # Shrink so that whole patches fit the budget (OpenAI's published procedure).
        ratio = math.sqrt(32 * 32 * _MAX_PATCHES / (width * height))
        ratio *= min(
            math.floor(width * ratio / 32) / (width * ratio / 32),
            math.floor(height * ratio / 32) / (height * ratio / 32),
        )
        patches = min(_MAX_PATCHES, math.ceil(width * ratio / 32) * math.ceil(height * ratio / 32))
    return math.ceil(patches * multiplier)


def image_tokens(size: tuple[int, int] | None, detail: str | None, model: str) -> int:
    """Estimated prompt tokens of one image of ``size`` (``None``: ``ASSUMED_SIZE``).

    ``model`` is a normalised model id (``proxy.tokens.models.normalize_model``).
    """
    width, height = size or ASSUMED_SIZE
    for prefix, multiplier in _PATCH_MULTIPLIERS:
        if model.startswith(prefix):
            return _patch_tokens(width, height, multiplier)
    base, tile = _DEFAULT_TILE_COST
    for prefix, prefix_base, prefix_tile in _TILE_COSTS:
        if model.startswith(prefix):
            base, tile = prefix_base, prefix_tile
    return _tile_tokens(width, height, detail or "auto", base, tile)
