"""What an uploaded file is, read from its bytes (never its name or declared type), and what is kept of it.

- Images (JPEG, PNG, WebP) are decoded by Pillow with a pixel limit (a decompression bomb is refused before its
  pixels are made), turned upright, and re-encoded as JPEG: EXIF (with GPS), XMP, comments and every other
  metadata block are left behind, so a photo cannot publish where a resident lives. A 320 px thumbnail goes with it.
- PDFs are kept as they are, once scanned: a PDF with JavaScript, a launch action, embedded files, XFA forms or form
  submission is refused. Names are read with their `#xx` escapes undone, and every Flate stream (object streams
  too) is inflated within a budget, so neither spelling nor compression hides them; a stream that inflates past
  the budget is a zip bomb and refused.
- Anything else (executables, archives, HTML, SVG) is refused, whatever its name says.
These run on `EXAMINERS`, two threads of their own (CPU-bound work, and only these threads' heaps hold decoded
pixels), on the upload as a file (the multipart part spooled to disk) read in 64 KiB pieces, so memory is bounded
by the image limit (decoded pixels, at most two images at a time), never by the file's size or the uploads in
flight; each refusal is a `Refusal` with a problem code and a message.
"""
from __future__ import annotations

import ctypes
import io
import re
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000          # 40 MP: more than any phone camera; a bomb is far past it
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MAX_SIDE = 4096                  # kept photos are at most this wide/high
THUMB_SIDE = 320
INFLATE_BUDGET = 32 * 1024 * 1024
PIECE = 64 * 1024                # read and inflate this much at a time
NAME_OVERLAP = 256               # > the longest active name spelt with #xx escapes (13 × 3 + 1)
EXAMINERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="examine")
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
    """What is stored: the bytes (a re-encoded image, held: bounded by `MAX_SIDE`) or the upload's file as it is
    (a PDF, streamed from its spool), their size and type, and for images a thumbnail and the size in pixels."""

    data: bytes | None
    media_type: str
    size: int
    thumbnail: bytes | None = None
    width: int | None = None
    height: int | None = None
    file: BinaryIO | None = None


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


def examine(kind: str, upload: bytes | BinaryIO) -> Kept:
    """`upload`: the file (seekable, read from its start) or its bytes."""
    fh = io.BytesIO(upload) if isinstance(upload, bytes | bytearray) else upload
    fh.seek(0)
    what = sniff(fh.read(16))
    fh.seek(0)
    if what is None or what not in KINDS_TYPES[kind]:
        raise unsupported(kind)
    return pdf(fh) if what == "pdf" else image(fh)


def _corrupt() -> Refusal:
    return Refusal(422, "attachment.corrupt", "图片已损坏或不完整，无法读取", "The image is corrupt or incomplete")


def _bomb() -> Refusal:
    return Refusal(422, "attachment.decompression_bomb", f"图片像素过多（上限 {MAX_PIXELS // 1_000_000} 百万像素）",
                   f"The image has too many pixels (limit {MAX_PIXELS // 1_000_000} MP)")


def image(fh: BinaryIO) -> Kept:
    """Decoded from the file (Pillow reads it as it needs), at a reduced scale when a JPEG is far larger than
    `MAX_SIDE` (`draft`), with one frame of pixels held at a time (no copies kept beside it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)   # not closed here: `fh` is the upload's, and close() would drop the pixels
            if img.format not in IMAGE_FORMATS:
                raise unsupported("photo")
            if img.width * img.height > MAX_PIXELS:
                raise _bomb()
            if img.format == "JPEG":
                img.draft(None, (MAX_SIDE, MAX_SIDE))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            frame = _flatten(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb() from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error):
            raise _corrupt() from None
    try:
        frame.thumbnail((MAX_SIDE, MAX_SIDE))
        out = io.BytesIO()
        frame.save(out, "JPEG", quality=85, optimize=True)  # no exif=, no icc_profile=: nothing but pixels
        thumb = _fit(frame, THUMB_SIDE)
        t = io.BytesIO()
        thumb.save(t, "JPEG", quality=80)
        data = out.getvalue()
        return Kept(data, "image/jpeg", len(data), t.getvalue(), frame.width, frame.height)
    finally:
        del img, frame
        _release_freed_memory()


def _release_freed_memory() -> None:
    """Hand the freed pixel buffers back to the system (glibc keeps large freed blocks in the thread's heap, so
    without this the resident size keeps the high-water mark of every examiner thread)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):   # not glibc: nothing to hand back this way
    _malloc_trim = None


def _fit(img: Image.Image, side: int) -> Image.Image:
    """A reduced copy within side × side (never enlarged), made without a full-size copy first."""
    scale = side / max(img.size)
    if scale >= 1:
        return img
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.Resampling.BICUBIC, reducing_gap=2.0)


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def _unescape(name: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), name)


class _ActiveNames:
    """The active names (`PDF_ACTIVE`) in a stream of bytes fed piece by piece. Each window is the last
    `NAME_OVERLAP` bytes of the one before plus the new piece; a name that touches a window's end is left for the
    next window (it might go on), so a name cut by a piece's edge is neither missed nor misread ("/JS" of "/JSx")."""

    def __init__(self, found: set[bytes]) -> None:
        self.found = found
        self._carry = b""

    def feed(self, piece: bytes, *, final: bool = False) -> None:
        window = self._carry + piece
        for m in _NAME.finditer(window):
            if m.end() == len(window) and not final:
                continue
            name = _unescape(m.group(1))
            if name in PDF_ACTIVE:
                self.found.add(name)
        self._carry = window[-NAME_OVERLAP:]


def _pieces(fh: BinaryIO, start: int = 0):
    fh.seek(start)
    while piece := fh.read(PIECE):
        yield piece


class _Inflater:
    """One stream's body inflated piece by piece within what is left of the budget, its text scanned for active
    names. A body that is not Flate (images, other filters) is left as it is (its raw bytes are scanned anyway)."""

    def __init__(self, found: set[bytes], budget: int) -> None:
        self._z: zlib._Decompress | None = zlib.decompressobj()
        self._names = _ActiveNames(found)
        self.budget = budget

    def feed(self, raw: bytes) -> None:
        while raw and self._z is not None and not self._z.eof:
            try:
                text = self._z.decompress(raw, min(PIECE, self.budget + 1))
            except zlib.error:
                self._z = None
                return
            self.budget -= len(text)
            if self.budget < 0:
                raise _pdf_bomb()
            self._names.feed(text)
            raw = self._z.unconsumed_tail

    def finish(self) -> None:
        self._names.feed(b"", final=True)


def _pdf_bomb() -> Refusal:
    return Refusal(422, "attachment.decompression_bomb", "PDF 中的压缩数据解压后过大（疑似压缩炸弹）",
                   "A compressed stream in the PDF inflates too far (a zip bomb)")


def _inflate_streams(fh: BinaryIO, found: set[bytes]) -> None:
    """Every `stream … endstream` body inflated (see `_Inflater`), read from the file a piece at a time."""
    budget = INFLATE_BUDGET
    buf = b""                 # read, not yet looked at
    inflater: _Inflater | None = None
    for piece in _pieces(fh):
        buf += piece
        while True:
            if inflater is None:
                m = _STREAM.search(buf)
                if m is None:
                    keep = min(len(buf), 7)          # "stream\r" may go on in the next piece
                    buf = buf[len(buf) - keep:]
                    break
                inflater = _Inflater(found, budget)
                buf = buf[m.end():]
            end = buf.find(b"endstream")
            if end < 0:
                keep = min(len(buf), 8)              # "endstrea" may go on in the next piece
                inflater.feed(buf[:len(buf) - keep])
                buf = buf[len(buf) - keep:]
                break
            inflater.feed(buf[:end])
            inflater.finish()
            budget, inflater = inflater.budget, None
            buf = buf[end + 9:]
    # a body without its endstream at the end of the file: scanned as far as it goes, as before


def pdf(fh: BinaryIO) -> Kept:
    size = fh.seek(0, io.SEEK_END)
    fh.seek(max(0, size - 2048))
    if b"%%EOF" not in fh.read():
        raise Refusal(422, "attachment.corrupt", "PDF 文件不完整或已损坏", "The PDF is incomplete or corrupt")
    found: set[bytes] = set()
    raw_names = _ActiveNames(found)
    for piece in _pieces(fh):
        raw_names.feed(piece)
    raw_names.feed(b"", final=True)
    _inflate_streams(fh, found)
    if found:
        names = sorted(n.decode() for n in found)
        raise Refusal(422, "attachment.active_content", f"PDF 含有脚本或自动执行的动作（{'、'.join(names)}），不予接收",
                      f"The PDF carries scripts or actions ({', '.join(names)}); refused")
    fh.seek(0)
    return Kept(None, "application/pdf", size, file=fh)
