"""Image bytes with every metadata block removed, for the blind vote page (stdlib only, no re-encode).

``lora-audit compare`` writes A1111's ``parameters`` text chunk into each PNG: it names the LoRA and its strength,
so serving the file as is would unblind the vote to anyone who saves the image or opens the network tab. The
files on disk keep their metadata; only the served copy is stripped. Pixels are never decoded: the chunk or segment
stream is rewritten keeping only what a browser needs to draw the image."""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a browser needs to draw a still PNG, and chunks that carry only numbers. Everything else goes: tEXt, zTXt,
# iTXt, eXIf, iCCP (its profile has a free-text name), tIME, APNG chunks, private chunks.
PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs"}
# WebP chunks that hold image data; ICCP, EXIF, "XMP " and unknown chunks go.
WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}
_VP8X_METADATA_FLAGS = 0x20 | 0x08 | 0x04  # ICC profile, EXIF, XMP


class NotAnImage(ValueError):
    """Not a PNG, JPEG or WebP, or not a well-formed one."""


def media_type(data: bytes) -> str | None:
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def strip_metadata(data: bytes) -> tuple[bytes, str]:
    """(the image without metadata, its media type); NotAnImage for anything else or a malformed file."""
    kind = media_type(data)
    if kind == "image/png":
        return _png(data), kind
    if kind == "image/jpeg":
        return _jpeg(data), kind
    if kind == "image/webp":
        return _webp(data), kind
    raise NotAnImage("not a PNG, JPEG or WebP image")


def _png(data: bytes) -> bytes:
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise NotAnImage("PNG cut short (no IEND)")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 2**31 - 1 or end > len(data):
            raise NotAnImage(f"PNG chunk {tag!r} runs past the end of the file")
        if tag in PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if tag == b"IEND":
            return b"".join(out)  # anything after IEND is dropped too


def _jpeg(data: bytes) -> bytes:
    """Drop APP1..APP15 (EXIF, XMP, ICC, maker notes, Photoshop IRB) except Adobe APP14 (colour transform), an APP0
    that is not JFIF, COM, and anything after EOI. Entropy-coded data is copied as is."""
    out = [b"\xff\xd8"]
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise NotAnImage("JPEG marker expected")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # RSTn, TEM: no length
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > n:
            raise NotAnImage("JPEG cut short")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        end = pos + length
        if length < 2 or end > n:
            raise NotAnImage("JPEG segment runs past the end of the file")
        body = data[pos + 2:end]
        drop = (0xE1 <= marker <= 0xEF and not (marker == 0xEE and body.startswith(b"Adobe"))) or marker == 0xFE \
            or (marker == 0xE0 and not body.startswith((b"JFIF\x00", b"JFXX\x00")))
        if not drop:
            out.append(bytes((0xFF, marker)) + data[pos:end])
        pos = end
        if marker == 0xDA:  # SOS: entropy-coded data up to the next marker that is not a stuffed 0xFF00 or RSTn
            start = pos
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    raise NotAnImage("JPEG cut short (no EOI)")
                nxt = data[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    pos += 1 if nxt == 0xFF else 2
                    continue
                break
            out.append(data[start:pos])
    raise NotAnImage("JPEG cut short (no EOI)")


def _webp(data: bytes) -> bytes:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + riff_size)
    chunks = []
    pos = 12
    while pos + 8 <= end:
        tag = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        stop = pos + 8 + size + (size & 1)
        if pos + 8 + size > end:
            raise NotAnImage(f"WebP chunk {tag!r} runs past the end of the file")
        if tag in WEBP_KEEP:
            chunk = bytearray(data[pos:min(stop, end)])
            if len(chunk) < 8 + size + (size & 1):
                chunk += b"\x00"
            if tag == b"VP8X" and size >= 1:
                chunk[8] &= ~_VP8X_METADATA_FLAGS & 0xFF
            chunks.append(bytes(chunk))
        pos = stop
    if not chunks:
        raise NotAnImage("WebP without image data")
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
