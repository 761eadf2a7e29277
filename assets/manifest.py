"""What produced a year's exports: `manifest.json` (run, time, code, rule-set and registry versions,
a hash of each export file), and what changed since the previous export, per project, and why.

Rule-set version: the code of the rules (validation, money and time, national report) and the rule
data (data/rules/*.yaml). Registry version: the year's registry file. Both are shown on the covers
of summary.xlsx and of each feedback workbook, so two printouts of one year can be told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd

from adapters.fee_caps import DEFAULT_FEE_CAPS, FEE_CAPS_ENV
from adapters.registry import YearRegistry, registry_dir
from assets import national, reconciliation, validation
from assets.incremental import digest
from assets.summary_workbook import records

MANIFEST = "manifest.json"
_CODE_PACKAGES = ("adapters", "assets", "etl", "schemas")
_REPO = Path(__file__).resolve().parents[1]
# Why a project's status or money changed since the previous export, in the bureau's words.
REASON_ZH = {"package": "新材料包", "waivers": "豁免", "rules": "规则", "registry": "登记册"}
_SHORT = 12  # hex digits shown on covers: enough to tell versions apart


def _hash_files(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.name.encode("utf-8") + b"\0" + path.read_bytes())
    return sha.hexdigest()


def rule_data_files() -> list[Path]:
    """The rule data: data/rules/*.yaml, and the fee caps file the run reads if it lives elsewhere."""
    files = sorted((_REPO / "data" / "rules").glob("*.yaml"))
    caps = Path(os.environ.get(FEE_CAPS_ENV) or DEFAULT_FEE_CAPS).resolve()
    return files if caps in files or not caps.exists() else [*files, caps]


def rules_version() -> str:
    """A hash of the rule code (the same digests the stages key their results by) and the rule data."""
    return digest(validation._RULES_CODE, reconciliation._MONEY_CODE, national._REPORT_CODE,
                  _hash_files(rule_data_files()))


def registry_version(year: int, directory: str | Path | None = None) -> str:
    """A hash of the year's registry file."""
    return _hash_files([registry_dir(directory) / f"{year}.yaml"])


def code_version() -> str:
    """A hash of the pipeline's source (every module of its four packages)."""
    return _hash_files(sorted(p for package in _CODE_PACKAGES for p in (_REPO / package).rglob("*.py")))


def short(version: str) -> str:
    return version[:_SHORT]


def versions_line(rules: str, registry: str) -> str:
    """The line the covers show."""
    return f"规则版本 {short(rules)}，登记册版本 {short(registry)}"


def file_hashes(out_dir: Path, *, but: Path | None = None, only: Path | None = None) -> dict[str, str]:
    """The SHA-256 of every file under the year's export folder (but one, or only one), by its path
    relative to the folder; a partial file (being written) and the manifest itself are left out."""
    paths = [only] if only is not None else (p for p in out_dir.rglob("*") if p != but)
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in paths if p.is_file() and p.name != MANIFEST and ".partial" not in p.name}


def write_manifest(out_dir: Path, hashes: dict[str, str], *, run_id: str, rules: str, registry: str,
                   now: datetime | None = None) -> Path:
    """manifest.json: every file under the year's export folder with its SHA-256 (`hashes`, from
    file_hashes once every file is written: the manifest is written last, so it vouches for what the
    run left there)."""
    files = dict(sorted(hashes.items(), key=lambda item: item[0].split("/")))  # in the folder's order
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    manifest = {"run_id": run_id, "time": moment.isoformat(timespec="seconds"), "code_version": code_version(),
                "rules_version": rules, "registry_version": registry, "files": files}
    target = out_dir / MANIFEST
    partial = target.with_name(MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


# --- What changed since the previous export ----------------------------------------------------------

def project_states(projects: pd.DataFrame, money: pd.DataFrame, registry: YearRegistry,
                   waivers: dict[str, list[int]], rules: str) -> dict[str, dict]:
    """Each project as this export shows it (status, spent per source) and what that was made from
    (package, active waivers, rule set, its registry entry and grants)."""
    spent: dict[str, dict[str, str]] = {}
    for line in records(money):
        spent.setdefault(line["project_code"], {})[line["funding_source"]] = str(line["spent"])
    states = {}
    for p in records(projects):
        project = registry.project(p["project_code"])
        states[p["project_code"]] = dict(
            status=p["status"], spent=spent.get(p["project_code"], {}), package=p["package"],
            waivers=sorted(waivers.get(p["project_code"], [])), rules=rules,
            registry=digest(project, registry.grants_for(project)) if project else "")
    return states


def changed_projects(previous: dict[str, dict], current: dict[str, dict]) -> list[dict]:
    """Projects whose status or money differ from the previous export, with why (empty on the first
    export: there is nothing to compare with)."""
    out = []
    for code, now in sorted(current.items()):
        before = previous.get(code)
        if before is None or (before["status"], before["spent"]) == (now["status"], now["spent"]):
            continue
        reasons = [zh for key, zh in REASON_ZH.items() if before.get(key) != now.get(key)]
        out.append(dict(project_code=code, status_before=before["status"], status_now=now["status"],
                        spent_before=_total(before["spent"]), spent_now=_total(now["spent"]),
                        reasons="、".join(reasons) or "其他（如报送时间规则、国家系统回执）"))
    return out


def _total(spent: dict[str, str]) -> str:
    """Spent over the sources as the export showed it (Decimal strings; blank while unreconciled)."""
    known = [Decimal(v) for v in spent.values() if v]
    return f"{sum(known, Decimal(0)):.2f}" if known else ""
