"""What a unit's photo shows, read from its bytes: size, the camera's date, a perceptual hash.

Units send hundreds of 5–10 MB phone photos. A JPEG is decoded once, already downscaled by the
decoder (``Image.draft``: the DCT is done at 1/2–1/8 scale, so a 4000×3000 photo costs ~0.2 MB, not
36 MB) and in grey, which is all the hash needs; PNGs cannot be decoded at a smaller scale, so they are
decoded whole. One photo is decoded at a time and dropped before the next.

``read_package_photos`` is the worker door's function (adapters.workers.map_isolated): it opens one
package read-only and returns plain facts per photo, never bytes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from adapters.inbox import PackageError, describe_package, open_package

# EXIF tags: DateTime in the main directory, DateTimeOriginal in the Exif sub-directory.
_EXIF_IFD, _DATE_TIME, _DATE_TIME_ORIGINAL = 0x8769, 306, 36867
# The hash is taken of a 32×32 grey thumbnail: decoding at >= 256 px keeps the downscale smooth.
_DRAFT_SIZE = (256, 256)
# Pillow refuses more pixels than this (a decompression bomb); a real photo has under 100 megapixels.
_MAX_PIXELS = 120_000_000


@dataclass(frozen=True)
class PhotoFacts:
    width: int
    height: int
    taken_at: datetime | None  # EXIF DateTimeOriginal, else DateTime; None when the photo has neither
    phash: str  # 64-bit DCT perceptual hash, 16 hex digits


@dataclass(frozen=True)
class PhotoBatch:
    """The new photos of one package: its path in the inbox and (member path, content sha256) pairs."""

    package_path: str
    photos: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Unreadable:
    """A photo whose bytes are not a picture Pillow can decode (its reason, for the log)."""

    reason: str


def photo_facts(data: bytes) -> PhotoFacts:
    """Facts of one photo. Raises UnidentifiedImageError / OSError / ValueError when it is not a picture."""
    # imagehash brings scipy (~1.2 s to import): only a worker that decodes photos pays for it, not
    # every process that loads the code location.
    import imagehash

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > _MAX_PIXELS:
                raise ValueError(f"{width}x{height} pixels")
            taken_at = _exif_date(image)
            image.draft("L", _DRAFT_SIZE)  # JPEG only; a no-op for other formats
            return PhotoFacts(width, height, taken_at, str(imagehash.phash(image)))


def _exif_date(image: Image.Image) -> datetime | None:
    exif = image.getexif()
    for typed in (exif.get_ifd(_EXIF_IFD).get(_DATE_TIME_ORIGINAL), exif.get(_DATE_TIME)):
        moment = _exif_datetime(typed)
        if moment is not None:
            return moment
    return None


def _exif_datetime(typed: object) -> datetime | None:
    """'2023:06:01 10:20:30' -> a datetime; cameras also write blanks or zeros when unset."""
    text = str(typed or "").strip().rstrip("\x00")
    for shape in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[:19], shape)
        except ValueError:
            continue
    return None


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def read_package_photos(batch: PhotoBatch) -> dict[str, PhotoFacts | Unreadable | None]:
    """member path -> its facts, Unreadable, or None when the member's content is no longer the one
    stored for it (the package was replaced in the inbox since intake: the next run sees the new one).
    A package that cannot be opened any more gives None for each of its photos."""
    results: dict[str, PhotoFacts | Unreadable | None] = {path: None for path, _ in batch.photos}
    try:
        package = open_package(describe_package(Path(batch.package_path)))
    except (OSError, PackageError):
        return results
    with package:
        for path, sha256 in batch.photos:
            try:
                data = package.read(path)
            except (KeyError, PackageError):
                continue
            if hashlib.sha256(data).hexdigest() != sha256:
                continue
            try:
                results[path] = photo_facts(data)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                    Image.DecompressionBombWarning) as exc:
                results[path] = Unreadable(repr(exc))
            del data  # one photo's bytes at a time
    return results
