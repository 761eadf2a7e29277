"""Peak memory of decoding a 2,000-photo package (issue 14: it must stay under 1 GiB).

Writes a folder package of 2,000 distinct 4000×3000 JPEGs (one encoded picture, each copy made
distinct by a JPEG comment, so every photo is hashed and decoded like a new one), then decodes them
all through the worker door in this process and prints the peak resident memory and the time.

    .venv/bin/python scripts/photo_memory.py [--photos 2000] [--dir /tmp/photo-memory]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import resource
import shutil
import time
from pathlib import Path

from PIL import Image, ImageDraw

from adapters.photos import PhotoBatch, PhotoFacts, read_package_photos
from adapters.workers import map_isolated


def phone_photo(size: tuple[int, int] = (4000, 3000)) -> bytes:
    rng = random.Random(14)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.ellipse((x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 300)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--dir", default="/tmp/photo-memory")
    args = parser.parse_args()
    package = Path(args.dir) / "2000张照片的材料包"
    shutil.rmtree(package, ignore_errors=True)
    (package / "照片").mkdir(parents=True)
    photo = phone_photo()
    members = []
    for n in range(args.photos):
        comment = f"photo {n}".encode()
        data = photo[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + photo[2:]
        path = f"照片/IMG_{n:04d}.jpg"
        (package / path).write_bytes(data)
        members.append((path, hashlib.sha256(data).hexdigest()))
    del photo
    size_mb = sum(p.stat().st_size for p in package.rglob("*.jpg")) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    [(_, facts)] = list(map_isolated(read_package_photos, [PhotoBatch(str(package), tuple(members))]))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decoded = sum(isinstance(f, PhotoFacts) for f in facts.values())
    print(f"{decoded}/{args.photos} photos of 4000x3000 ({size_mb:.0f} MB) decoded in {seconds:.1f} s; "
          f"peak RSS {peak:.0f} MiB (before decoding: {before:.0f} MiB)")
    shutil.rmtree(Path(args.dir), ignore_errors=True)


if __name__ == "__main__":
    main()
