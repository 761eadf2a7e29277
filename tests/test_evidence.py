"""Photo evidence (M006–M010): the camera's date, the same photo used twice, a photo too small.

The hash threshold is chosen on generated look-alikes: copies re-encoded and resized must match,
distinct shots of one scene must not. The pipeline tests run the real job on SQLite and PostgreSQL.
"""

import io
import itertools
import random
from datetime import datetime
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from sqlalchemy import create_engine, func, select

from adapters.photos import hamming, photo_facts
from adapters.registry import load_year
from adapters.warehouse.models import PhotoFactsRow
from assets.evidence import SAME_PHOTO_DISTANCE, evidence_year
from etl.cli import main as cli_main
from etl.sample.builder import PHOTOS, clean_package, write_package
from etl.sample.year_2024 import reencoded
from etl.sample.year_sample import project_spec
from tests.conftest import put

PHOTO_RULES = {"M006", "M007", "M008", "M009", "M010"}


def scene(kind: int, shot: int, size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """One shot of a scene: the same room for a kind (wall, floor, window, table), other people and a
    moved camera for each shot — what units send for a series of activities of one type."""
    room, moment = random.Random(f"room{kind}"), random.Random(f"shot{kind}/{shot}")
    w, h = size
    image = Image.new("RGB", size, tuple(room.randrange(60, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(h * 0.6), w, h), fill=tuple(room.randrange(40, 160) for _ in range(3)))
    draw.rectangle((int(w * 0.1), int(h * 0.1), int(w * 0.35), int(h * 0.4)), fill=(220, 230, 240))
    draw.rectangle((int(w * 0.2), int(h * 0.55), int(w * 0.8), int(h * 0.7)), fill=(120, 80, 40))
    for _ in range(moment.randint(4, 8)):
        x, y = moment.randrange(0, w - 100), moment.randrange(int(h * 0.3), int(h * 0.7))
        draw.ellipse((x, y, x + 60, y + 60), fill=(230, 190, 160))
        draw.rectangle((x - 8, y + 60, x + 68, y + 230), fill=tuple(moment.randrange(256) for _ in range(3)))
    dx, dy = moment.randrange(-60, 60), moment.randrange(-45, 45)
    return image.transform(size, Image.AFFINE, (1, 0, dx, 0, 1, dy)).filter(ImageFilter.GaussianBlur(1))


def jpeg(image: Image.Image, quality: int = 85, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


def test_copies_match_and_lookalike_shots_do_not():
    copies, lookalikes = [], []
    for kind in range(3):
        shots = [jpeg(scene(kind, shot)) for shot in range(4)]
        hashes = [photo_facts(data).phash for data in shots]
        lookalikes += [hamming(a, b) for a, b in itertools.combinations(hashes, 2)]
        for data, original in zip(shots, hashes):
            copies.append(hamming(original, photo_facts(reencoded(data, 0.93)).phash))  # quality 60, -7%
    assert max(copies) <= SAME_PHOTO_DISTANCE
    assert min(lookalikes) > SAME_PHOTO_DISTANCE


def test_camera_date_size_and_fallback():
    image = scene(0, 0)
    original = Image.Exif()
    original[306] = "2023:01:02 03:04:05"  # DateTime, overridden by DateTimeOriginal
    original.get_ifd(0x8769)[36867] = "2023:06:07 08:09:10"
    assert photo_facts(jpeg(image, exif=original)).taken_at == datetime(2023, 6, 7, 8, 9, 10)
    only_datetime = Image.Exif()
    only_datetime[306] = "2022:12:31 23:59:00"
    assert photo_facts(jpeg(image, exif=only_datetime)).taken_at == datetime(2022, 12, 31, 23, 59)
    facts = photo_facts(jpeg(image))
    assert (facts.width, facts.height, facts.taken_at) == (1200, 900, None)


def run_year(year: int, inbox: Path, database_url: str, export: Path) -> pd.DataFrame:
    assert cli_main(["run", "--year", str(year), "--inbox", str(inbox), "--export", str(export),
                     "--database-url", database_url]) == 0
    return pd.read_csv(export / str(year) / "issues.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)


def _photo_rows(spec) -> list[list]:
    return spec.sheets[PHOTOS]


def test_photo_findings_name_the_other_side(database_url, inbox, clean, tmp_path):
    # 2023-ST-01: a photo whose camera says 2022, and a thumbnail.
    st01 = clean("2023-ST-01")
    rows = _photo_rows(st01)
    dated, tiny, shared = rows[1][1], rows[2][1], rows[3][1]
    st01.files[dated] = reencoded(st01.files[dated], 1.0, taken=datetime(2022, 8, 1, 10, 0))
    st01.files[tiny] = jpeg(scene(1, 1, (200, 150)))
    # 2023-ST-02 lists ST-01's third photo, re-encoded and slightly resized: no byte is the same. One of
    # its own photos was taken in the program year, after its service period (2023-06-01 to 10-31).
    st02 = clean("2023-ST-02")
    late = _photo_rows(st02)[1][1]
    st02.files[late] = reencoded(st02.files[late], 1.0, taken=datetime(2023, 12, 5, 9, 0))
    copy = reencoded(st01.files[shared], 1.05)
    assert copy != st01.files[shared]
    st02.files["照片/借用.jpg"] = copy
    _photo_rows(st02).append([len(_photo_rows(st02)), "照片/借用.jpg", _photo_rows(st02)[1][2], "现场", "专家指导"])
    sb01 = clean("2023-SB-01")
    for spec in (st01, st02, sb01):
        put(inbox, spec)
    issues = run_year(2023, inbox, database_url, tmp_path / "exports")
    photo = issues[issues.rule_id.isin(PHOTO_RULES)]
    found = {(r.project_code, r.rule_id, r.value) for r in photo.itertuples()}
    assert found == {
        ("2023-ST-01", "M006", dated), ("2023-ST-01", "M007", dated), ("2023-ST-01", "M010", tiny),
        ("2023-ST-01", "M008", shared), ("2023-ST-02", "M008", "照片/借用.jpg"),
        ("2023-ST-02", "M006", late), ("2023-ST-02", "M007", late),
    }
    by_key = {(r.project_code, r.rule_id): r for r in photo.itertuples()}
    assert "2023-ST-01" in by_key[("2023-ST-02", "M008")].message and shared in by_key[("2023-ST-02", "M008")].message
    assert "2023-ST-02" in by_key[("2023-ST-01", "M008")].message
    assert "2022-08-01" in by_key[("2023-ST-01", "M006")].message
    assert "项目服务期（2023-06-01 至 2023-10-31）" in by_key[("2023-ST-02", "M006")].message
    assert "200×150" in by_key[("2023-ST-01", "M010")].message
    assert set(photo.severity) == {"warning"} and set(photo.sheet) == {"影像资料"}
    projects = pd.read_csv(tmp_path / "exports" / "2023" / "projects.csv", encoding="utf-8-sig", dtype=str)
    assert set(projects.set_index("project_code").loc[["2023-ST-01", "2023-ST-02", "2023-SB-01"], "status"]) == {
        "accepted"}  # warnings never reject a package

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(PhotoFactsRow)).scalar_one()
    # Incremental: a second pass decodes nothing, and finds the same.
    again = evidence_year(engine, inbox / "2023", load_year(2023))
    assert again["decoded"] == 0 and again["photos"] == stored
    assert again["without_exif"] == stored - 2  # only the two re-dated photos carry a camera date

    # 2024 (the sample year's registry): a base hands in one of 2023-SB-01's photos again.
    registry_2024 = load_year(2024)
    sb01_2024 = clean_package(project_spec(registry_2024, registry_2024.project("2024-SB-01")), 2024, seed=3)
    old = _photo_rows(sb01)[1][1]
    sb01_2024.files["照片/旧照.jpg"] = reencoded(sb01.files[old], 1.05)
    _photo_rows(sb01_2024).append([len(_photo_rows(sb01_2024)), "照片/旧照.jpg", _photo_rows(sb01_2024)[1][2],
                                   "现场", "专家指导"])
    write_package(sb01_2024, inbox / "2024")
    issues_2024 = run_year(2024, inbox, database_url, tmp_path / "exports")
    reused = issues_2024[issues_2024.rule_id.isin(PHOTO_RULES)]
    assert [(r.project_code, r.rule_id, r.value) for r in reused.itertuples()] == [
        ("2024-SB-01", "M008", "照片/旧照.jpg")]
    assert "2023 年度项目 2023-SB-01" in reused.iloc[0].message and old in reused.iloc[0].message
    engine.dispose()


def test_the_same_photo_twice_in_one_package(database_url, inbox, clean, tmp_path):
    spec = clean("2023-SB-02")
    first = _photo_rows(spec)[1][1]
    spec.files["照片/重复.jpg"] = reencoded(spec.files[first], 1.03)
    _photo_rows(spec).append([len(_photo_rows(spec)), "照片/重复.jpg", _photo_rows(spec)[1][2], "现场", "专家指导"])
    put(inbox, spec)
    issues = run_year(2023, inbox, database_url, tmp_path / "exports")
    twice = issues[issues.rule_id == "M009"]
    messages = dict(zip(twice.value, twice.message))
    assert sorted(messages) == sorted([first, "照片/重复.jpg"])
    assert "照片/重复.jpg" in messages[first] and f"“{first}（第 2 行）”" in messages["照片/重复.jpg"]
    assert not set(issues.rule_id) & (PHOTO_RULES - {"M009"})
