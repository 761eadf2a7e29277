"""What a file really is, judged from its first bytes rather than its name (rule M005)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath

# (prefix, kind), tried in order; formats whose signature is not at offset 0 are handled in sniff().
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty archive
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
    (b"MZ", "exe"),
    (b"\x7fELF", "elf"),
    (b"Rar!\x1a\x07", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x1f\x8b", "gzip"),
    (b"BM", "bmp"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}

_LABELS = {
    "jpeg": "JPEG 图片", "png": "PNG 图片", "gif": "GIF 图片", "bmp": "BMP 图片",
    "webp": "WebP 图片", "tiff": "TIFF 图片", "heic": "HEIC 图片", "mp4": "MP4/MOV 视频",
    "pdf": "PDF 文档", "zip": "ZIP 压缩包或 Office 文档", "ole": "Office 97-2003 文档",
    "exe": "可执行程序", "elf": "可执行程序", "rar": "RAR 压缩包", "7z": "7z 压缩包",
    "gzip": "GZIP 压缩包",
}
_IMAGES = frozenset({"jpeg", "png", "gif", "bmp", "webp", "tiff", "heic"})

# extension -> (kinds accepted, what the unit should have handed in). Any image is accepted under
# any image extension: a PNG saved as .jpg is still the photo asked for, an .exe is not.
_EXPECTED: dict[str, tuple[frozenset[str], str]] = {
    ".jpg": (_IMAGES, "JPEG 图片"), ".jpeg": (_IMAGES, "JPEG 图片"),
    ".png": (_IMAGES, "PNG 图片"), ".gif": (_IMAGES, "GIF 图片"), ".bmp": (_IMAGES, "BMP 图片"),
    ".webp": (_IMAGES, "WebP 图片"), ".tif": (_IMAGES, "TIFF 图片"), ".tiff": (_IMAGES, "TIFF 图片"),
    ".heic": (_IMAGES, "HEIC 图片"),
    ".pdf": (frozenset({"pdf"}), "PDF 文档"),
    ".docx": (frozenset({"zip"}), "Word 文档"),
    ".xlsx": (frozenset({"zip"}), "Excel 工作簿"),
    ".pptx": (frozenset({"zip"}), "PowerPoint 演示文稿"),
    ".doc": (frozenset({"ole"}), "Word 97-2003 文档"),
    ".xls": (frozenset({"ole"}), "Excel 97-2003 工作簿"),
}


@dataclass(frozen=True)
class ExtensionCheck:
    ok: bool
    actual_zh: str
    expected_zh: str  # "" when the extension is not one we judge


def sniff(head: bytes) -> str | None:
    """The file type from its first bytes (64 are enough), or None when unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "heic" if head[8:12] in _HEIF_BRANDS else "mp4"
    # Readers accept a PDF header anywhere in the first KiB (some generators prepend junk).
    if b"%PDF-" in head[:1024]:
        return "pdf"
    return next((kind for prefix, kind in _SIGNATURES if head.startswith(prefix)), None)


def check_extension(name: str, head: bytes) -> ExtensionCheck:
    """Does the content match the extension? Unknown extensions are not judged (ok)."""
    suffix = PurePosixPath(unicodedata.normalize("NFKC", name).replace("\\", "/")).suffix.lower()
    kind = sniff(head)
    actual = "空文件" if not head else _LABELS.get(kind or "", "未知格式")
    if suffix not in _EXPECTED:
        return ExtensionCheck(True, actual, "")
    accepted, expected = _EXPECTED[suffix]
    return ExtensionCheck(bool(head) and kind in accepted, actual, expected)
