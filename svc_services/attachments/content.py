"""What an uploaded file is, read from its bytes (never its name or declared type), and what is kept of it.

- Images (JPEG, PNG, WebP) are decoded by Pillow with a pixel limit (a decompression bomb is refused before its
  pixels are made), turned upright, and re-encoded as JPEG: EXIF (with GPS), XMP, comments and every other
  metadata block are left behind, so a photo cannot publish where a resident lives. A 320 px thumbnail goes with it.
- PDFs are kept as they are, once scanned: a PDF with JavaScript, a launch action, embedded files, XFA forms or form
  submission is refused. Names are read with their `#xx` escapes undone, and every Flate stream (object streams
  too) is inflated within a budget, so neither spelling nor compression hides them; a stream that inflates past
  the budget is a zip bomb and refused.
- Anything else (executables, archives, HTML, SVG) is refused, whatever its name says.
These run in a worker thread (CPU-bound); each refusal is a `Refusal` with a problem code and a message.
"""
from __future__ import annotations

import io
import re
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000          # 40 MP: more than any phone camera; a bomb is far past it
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MAX_SIDE = 4096                  # kept photos are at most this wide/high
THUMB_SIDE = 320
INFLATE_BUDGET = 32 * 1024 * 1024
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
KINDS_TYPES = {"photo": ("image",), "material": ("image", "pdf")}
# names a PDF must not carry (after #xx escapes are undone)
PDF_ACTIVE = {b"JavaScript", b"JS", b"Launch", b"EmbeddedFile", b"EmbeddedFiles", b"RichMedia", b"XFA",
              b"SubmitForm", b"ImportData"}
_NAME = re.compile(rb"/([^\s/<>\[\]()%{}]+)")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"stream\r?\n")


class Refusal(Exception):
    def __init__(self, status: int, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.code, self.zh, self.en = status, code, zh, en


@dataclass(frozen=True)
class Kept:
    """What is stored: the bytes, their type, and for images a thumbnail and the size in pixels."""

    data: bytes
    media_type: str
    thumbnail: bytes | None = None
    width: int | None = None
    height: int | None = None


def sniff(head: bytes) -> str | None:
    """"image" or "pdf" from the first bytes, or None."""
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[:5] == b"%PDF-":
        return "pdf"
    return None


def unsupported(kind: str) -> Refusal:
    allowed = "JPEG、PNG、WebP 图片" + ("或 PDF" if kind == "material" else "")
    allowed_en = "JPEG, PNG or WebP images" + (" or PDF" if kind == "material" else "")
    return Refusal(415, "attachment.unsupported_type", f"文件内容不是{allowed}（按内容识别，不看扩展名）",
                   f"The file is not one of {allowed_en} (judged by its content, not its name)")


def examine(kind: str, data: bytes) -> Kept:
    what = sniff(data[:16])
    if what is None or what not in KINDS_TYPES[kind]:
        raise unsupported(kind)
    return image(data) if what == "image" else pdf(data)


def _corrupt() -> Refusal:
    return Refusal(422, "attachment.corrupt", "图片已损坏或不完整，无法读取", "The image is corrupt or incomplete")


def _bomb() -> Refusal:
    return Refusal(422, "attachment.decompression_bomb", f"图片像素过多（上限 {MAX_PIXELS // 1_000_000} 百万像素）",
                   f"The image has too many pixels (limit {MAX_PIXELS // 1_000_000} MP)")


def image(data: bytes) -> Kept:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in IMAGE_FORMATS:
                    raise unsupported("photo")
                if img.width * img.height > MAX_PIXELS:
                    raise _bomb()
                img.load()
                upright = ImageOps.exif_transpose(img)
                frame = _flatten(upright)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb() from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error):
            raise _corrupt() from None
    frame.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=85, optimize=True)  # no exif=, no icc_profile=: nothing but pixels
    thumb = frame.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    t = io.BytesIO()
    thumb.save(t, "JPEG", quality=80)
    return Kept(out.getvalue(), "image/jpeg", t.getvalue(), frame.width, frame.height)


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def _names(data: bytes) -> set[bytes]:
    return {_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), n) for n in _NAME.findall(data)}


def _streams(data: bytes):
    pos = 0
    while (m := _STREAM.search(data, pos)) is not None:
        end = data.find(b"endstream", m.end())
        if end < 0:
            return
        yield data[m.end():end]
        pos = end + 9


def pdf(data: bytes) -> Kept:
    if b"%%EOF" not in data[-2048:]:
        raise Refusal(422, "attachment.corrupt", "PDF 文件不完整或已损坏", "The PDF is incomplete or corrupt")
    texts = [data]
    budget = INFLATE_BUDGET
    for raw in _streams(data):
        d = zlib.decompressobj()
        try:
            text = d.decompress(raw, budget)
        except zlib.error:
            continue  # not Flate (images, other filters): its bytes were scanned as they are
        budget -= len(text)
        if d.unconsumed_tail or budget <= 0:
            raise Refusal(422, "attachment.decompression_bomb", "PDF 中的压缩数据解压后过大（疑似压缩炸弹）",
                          "A compressed stream in the PDF inflates too far (a zip bomb)")
        texts.append(text)
    active = set().union(*(_names(t) for t in texts)) & PDF_ACTIVE
    if active:
        names = "、".join(sorted(n.decode() for n in active))
        raise Refusal(422, "attachment.active_content", f"PDF 含有脚本或自动执行的动作（{names}），不予接收",
                      f"The PDF carries scripts or actions ({', '.join(sorted(n.decode() for n in active))}); refused")
    return Kept(data, "application/pdf")
