"""Required materials: the work summary, the audit report and the photos the sheets list must be
in the package and non-empty (M001–M003). Whether each file is what its extension says (M005) is
judged at intake, where its bytes are at hand.
"""

from __future__ import annotations

from adapters.inbox import Member, OpenedPackage
from assets.sheets import ParsedSheet
from schemas.findings import Finding, make_finding
from schemas.layout import BASIC_INFO, PHOTOS

_DOCUMENTS = {"work_summary_file": "M001", "audit_report_file": "M002"}


def materials_findings(sheets: dict[str, ParsedSheet], files: list[dict]) -> list[Finding]:
    listing = PackageListing(files)
    return [*_documents(sheets.get(BASIC_INFO.name), listing), *_photos(sheets.get(PHOTOS.name), listing)]


class PackageListing(OpenedPackage):
    """A package's stored file list, resolved the same way as a package opened from the inbox."""

    def __init__(self, files: list[dict]):
        super().__init__([Member(f["path"], f["size"]) for f in files])
        self._hashes = {f["path"]: f.get("sha256", "") for f in files}

    def sha256_of(self, path: str) -> str:
        return self._hashes[path]


def _documents(basic: ParsedSheet | None, listing: PackageListing) -> list[Finding]:
    if basic is None:
        return []
    findings = []
    values = basic.first_row()
    for field, rule_id in _DOCUMENTS.items():
        column = BASIC_INFO.column(field)
        typed = str(values.get(field, "") or "").strip()
        place = dict(sheet=basic.typed_name, row=basic.rows.get(field), column=basic.headers.get(field, column.header), value=typed)
        member = listing.find(typed) if typed else None
        if not typed:
            findings.append(make_finding(rule_id, **place, detail="未填写"))
        elif member is None:
            findings.append(make_finding(rule_id, **place, detail=f"“{typed}”在材料包中找不到"))
        elif member.size == 0:
            findings.append(make_finding(rule_id, **place, detail=f"“{member.path}”是空文件"))
    return findings


def _photos(photos: ParsedSheet | None, listing: PackageListing) -> list[Finding]:
    if photos is None:
        return []
    names = photos.cells.get("file_name")
    if names is None:
        return []  # S001 already reports the missing column
    listed = [(row, name) for row, name in zip(photos.excel_rows, names) if name.strip()]
    if not listed:
        return [make_finding("M003", sheet=photos.typed_name, detail="影像资料表没有登记任何照片")]
    header = photos.headers.get("file_name", PHOTOS.column("file_name").header)
    findings = []
    for row, name in listed:
        member = listing.find(name)
        if member is None or member.size == 0:
            detail = f"照片“{name}”在材料包中找不到" if member is None else f"照片“{name}”是空文件"
            findings.append(make_finding("M003", sheet=photos.typed_name, row=row, column=header, value=name,
                                         detail=detail))
    return findings
