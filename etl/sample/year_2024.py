"""The sample inbox of 2024 (示例): a made-up second year, so that `make run` shows the post-evaluation
(后评估) of bases and teams against 2023 and the photo rules at work.

Every project of data/registry/2024.yaml (labelled `sample: true`) hands in a clean package built by
etl.sample.builder, with two planted photo problems:
- 2024-SB-02 lists, among its own photos, one of its 2023 sample package's photos, re-encoded and
  slightly resized (M008 naming the 2023 project: a byte hash would miss it);
- 2024-ST-05 lists a photo whose camera date lies in 2023 (M006).
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

from PIL import Image

from etl.sample.builder import BASIC_INFO, PHOTOS, PackageSpec, clean_package, jpeg_bytes, write_package
from etl.sample.year_sample import REGISTRY_DIR, load_projects, sample_inbox

SAMPLE_2024 = 2024
REUSED_FROM_2023 = "2023-SB-02"


def sample_2024_inbox(registry_dir: Path = REGISTRY_DIR) -> list[PackageSpec]:
    registry, projects = load_projects(registry_dir / f"{SAMPLE_2024}.yaml")
    # Other seeds than 2023's, so the figures differ from last year's.
    specs = [clean_package(project, SAMPLE_2024, seed=seed + 40) for seed, project in enumerate(projects)]
    by_code = {_code(spec): spec for spec in specs}
    _add_photo(by_code["2024-SB-02"], "照片/去年活动照片.jpg", reencoded(_photo_of_2023(registry_dir), 1.06))
    _add_photo(by_code["2024-ST-05"], "照片/活动合影.jpg",
               reencoded(jpeg_bytes("2024-ST-05 group photo", 99), 1.0, taken=datetime(2023, 5, 20, 9, 30)))
    return specs


def build_2024_inbox(out_dir: Path, registry_dir: Path = REGISTRY_DIR) -> list[Path]:
    return [write_package(spec, out_dir / str(SAMPLE_2024)) for spec in sample_2024_inbox(registry_dir)]


def reencoded(jpeg: bytes, scale: float, *, taken: datetime | None = None, quality: int = 60) -> bytes:
    """A photo as a unit's phone or chat app passes it on: resized, re-compressed, maybe with a camera date."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)))
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def _code(spec: PackageSpec) -> str:
    return next(value for name, value in spec.sheets[BASIC_INFO] if name == "项目编号")


def _first_photo(spec: PackageSpec) -> bytes:
    return spec.files[sorted(p for p in spec.files if p.lower().endswith((".jpg", ".jpeg")))[0]]


def _photo_of_2023(registry_dir: Path) -> bytes:
    """A photo of the 2023 package in use (the newest) of REUSED_FROM_2023."""
    packages = [spec for spec in sample_inbox(2023, registry_dir / "2023.yaml").packages
                if BASIC_INFO in spec.sheets and _code(spec) == REUSED_FROM_2023 and spec.files]
    return _first_photo(max(packages, key=lambda spec: spec.modified_at))


def _add_photo(spec: PackageSpec, path: str, data: bytes) -> None:
    """List one more photo in 影像资料, under the date and place of the last one listed."""
    rows = spec.sheets[PHOTOS]
    last = rows[-1]
    spec.files[path] = data
    rows.append([len(rows), path, last[2], last[3], "专家现场服务"])
