"""The bureau's registry: funded projects, grants, deadlines per year, kept as editable YAML data.

One file per reporting year (`data/registry/<year>.yaml`). Money is written there as strings of
yuan and read into integer fen, so no float ever touches it.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml

REGISTRY_DIR_ENV = "ETL_REGISTRY_DIR"
DEFAULT_REGISTRY_DIR = Path(__file__).resolve().parents[1] / "data" / "registry"

LEVELS = ("national", "municipal")
TYPES = ("team", "base")
FUNDING_SOURCES = ("部拨经费", "市级配套", "市级经费")
# 退回对象 of each funding source (notice §三: 结余经费退回市人力资源社会保障局或人力资源社会保障部).
REFUND_TO = {"部拨经费": "人力资源社会保障部", "市级配套": "市人力资源社会保障局", "市级经费": "市人力资源社会保障局"}
LEVEL_ZH = {"national": "国家级", "municipal": "市级"}
SAMPLE_LABEL = "示例"
# After the year in every title of a sample year's exports (summary, feedback, 服务成效).
SAMPLE_NOTE = f"（{SAMPLE_LABEL}，非真实数据）"
TYPE_ZH = {"team": "服务团", "base": "服务基地"}


@dataclass(frozen=True)
class RegisteredProject:
    code: str
    level: str
    type: str
    host_unit: str
    project_name: str
    aliases: tuple[str, ...] = ()
    uscc: str = ""
    continues: str = ""  # the code of last year's project this one carries on (post-evaluation, 后评估)

    def unit_names(self) -> tuple[str, ...]:
        return (self.host_unit, *self.aliases)


@dataclass(frozen=True)
class YearRegistry:
    year: int
    notice: str
    deadline: date
    team_completion_date: date
    # (level, type) -> funding source -> fen
    grants: dict[tuple[str, str], dict[str, int]]
    projects: tuple[RegisteredProject, ...]
    sample: bool = False  # a made-up year for demonstration (示例): every export of it says so
    _by_code: dict[str, RegisteredProject] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_code.update({p.code: p for p in self.projects})

    def project(self, code: str) -> RegisteredProject | None:
        return self._by_code.get(normalize_code(code))

    def grants_for(self, project: RegisteredProject) -> dict[str, int]:
        return self.grants[(project.level, project.type)]

    def match_unit(self, typed_name: str) -> RegisteredProject | None:
        """The single project whose host unit (or an alias) matches the typed name, if exactly one."""
        key = normalize_name(typed_name)
        hits = [p for p in self.projects if key in {normalize_name(n) for n in p.unit_names()}]
        return hits[0] if len(hits) == 1 else None


def yuan_to_fen(text: str | int | Decimal) -> int:
    amount = Decimal(str(text))
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"amount {text!r} has more than 2 decimals")
    return int(fen)


_DASHES = re.compile(r"[‐‑‒–—―－—_]")


def normalize_code(text: object) -> str:
    """`２０２３－st－01 ` -> `2023-ST-01`: units type codes with full-width forms, odd dashes, spaces."""
    s = unicodedata.normalize("NFKC", str(text or ""))
    s = re.sub(r"\s+", "", _DASHES.sub("-", s)).upper()
    # `2023-ST-1` and `2023ST01` are the same project as `2023-ST-01`.
    shaped = _CODE_SHAPE.match(s)
    return f"{shaped['year']}-{shaped['kind']}-{int(shaped['nn']):02d}" if shaped else s


_CODE_SHAPE = re.compile(r"^(?P<year>\d{4})-?(?P<kind>[GS][TB])-?(?P<nn>\d{1,4})$")
_NAME_NOISE = re.compile(r"[\s\u3000·•]")


def normalize_name(text: object) -> str:
    """Unit names compared without spaces, full-width forms or bracket style: （） == ()."""
    s = unicodedata.normalize("NFKC", str(text or ""))
    return _NAME_NOISE.sub("", s)


def registry_dir(explicit: Path | str | None = None) -> Path:
    return Path(explicit or os.environ.get(REGISTRY_DIR_ENV) or DEFAULT_REGISTRY_DIR)


def load_year(year: int, directory: Path | str | None = None) -> YearRegistry:
    path = registry_dir(directory) / f"{year}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no registry for {year}: {path} is missing")
    stat = path.stat()
    return _parsed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parsed(path: Path, _mtime_ns: int, _size: int) -> YearRegistry:
    # Every stage reads the registry; a national year's file holds thousands of projects. Keyed by
    # the file's time and size, an edit by the bureau is read at the next call.
    # libyaml's safe loader parses a 5,000-project year ~10x faster than the pure-Python one.
    return parse_registry(yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER))


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def available_years(directory: Path | str | None = None) -> list[int]:
    return sorted(int(p.stem) for p in registry_dir(directory).glob("*.yaml") if p.stem.isdigit())


def parse_registry(doc: dict) -> YearRegistry:
    grants = {
        (level, kind): {source: yuan_to_fen(amount) for source, amount in by_source.items()}
        for level, by_type in doc["grants"].items()
        for kind, by_source in by_type.items()
    }
    projects = tuple(
        RegisteredProject(
            code=normalize_code(p["code"]),
            level=p["level"],
            type=p["type"],
            host_unit=p["host_unit"],
            project_name=p["project_name"],
            aliases=tuple(p.get("aliases") or ()),
            uscc=str(p.get("uscc") or ""),
            continues=normalize_code(p["continues"]) if p.get("continues") else "",
        )
        for p in doc["projects"]
    )
    for p in projects:
        if p.level not in LEVELS or p.type not in TYPES or (p.level, p.type) not in grants:
            raise ValueError(f"registry project {p.code}: unknown level/type {p.level}/{p.type}")
    return YearRegistry(
        year=int(doc["year"]),
        notice=str(doc.get("notice", "")),
        deadline=_as_date(doc["deadline"]),
        team_completion_date=_as_date(doc["team_completion_date"]),
        grants=grants,
        projects=projects,
        sample=bool(doc.get("sample", False)),
    )


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
