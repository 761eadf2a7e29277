"""Warehouse tables. Every stage writes what it learned here; the next stage reads it from here.

Money is stored as integer fen (BigInteger), never as a float. Times are stored in UTC.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ProgramYear(Base):
    """One year's programme rules: the deadline and the teams' completion date (registry data)."""

    __tablename__ = "program_year"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice: Mapped[str] = mapped_column(String(200), default="")
    deadline: Mapped[date] = mapped_column(Date)
    team_completion_date: Mapped[date] = mapped_column(Date)


class GrantRule(Base):
    """What one project of a level and type is granted from one funding source in a year."""

    __tablename__ = "grant_rule"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(16), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    funding_source: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class Project(Base):
    """A funded project as registered for a reporting year."""

    __tablename__ = "project"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    host_unit: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[str] = mapped_column(Text, default="")  # newline-separated
    project_name: Mapped[str] = mapped_column(String(300))
    uscc: Mapped[str] = mapped_column(String(18), default="")


class Package(Base):
    """One version of one package as found in <inbox>/<year>/ (a name with a content hash).

    Rows are never deleted: a package replaced in the inbox keeps its row, its parsed rows and its
    findings, so a unit's history stays visible and every exported figure can be traced back.
    """

    __tablename__ = "package"
    __table_args__ = (UniqueConstraint("year", "name", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    modified_at: Mapped[datetime] = mapped_column(DateTime)  # UTC, from the inbox file
    mtime_ns: Mapped[int] = mapped_column(BigInteger)  # with name and size: skip re-hashing unchanged files
    received_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # operator override, UTC
    ingested_at: Mapped[datetime] = mapped_column(DateTime)
    # What the workbook says (as typed, normalised); the project is assigned from the registry each run.
    declared_code: Mapped[str] = mapped_column(String(64), default="")  # 项目编号 as typed
    declared_code_row: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its 基本信息 row
    declared_code_header: Mapped[str] = mapped_column(String(64), default="项目编号")  # the key as typed
    declared_unit: Mapped[str] = mapped_column(String(300), default="")
    project_code: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # "refused": intake found a fatal package-level problem; "readable": the sheets can be validated.
    intake_status: Mapped[str] = mapped_column(String(16))
    workbook_member: Mapped[str] = mapped_column(String(500), default="")  # its bytes: PackageBlob
    expenses_csv_member: Mapped[str] = mapped_column(String(500), default="")
    # What the version was last validated against (assets.validation.validation_key): a run validates
    # only versions whose key changed, so a year of thousands of packages is not read again each night.
    validated_key: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PackageBlob(Base):
    """A package version's workbook (and 经费支出.csv beside it) as the unit handed them in, kept so figures
    stay traceable even if the inbox file is later replaced, and so the feedback copy can be made from it.

    Written once and never updated, apart from the package row: routing and validation update that row
    every run, and SQLite rewrites a whole record on each update, blobs inline in it included."""

    __tablename__ = "package_blob"
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), primary_key=True)
    workbook: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # as handed in (already a zip)
    expenses_csv_zlib: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # store.deflate_csv


class PackageFile(Base):
    """A regular file inside a package, with the type its content shows (not its extension)."""

    __tablename__ = "package_file"
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    content_type: Mapped[str] = mapped_column(String(16), default="")


class PackageReading(Base):
    """A package version's workbook as read once, at intake, in a package worker (assets.sheets.dump_reading,
    dump_grids): validation and the feedback's copy work from it and never open the unit's file again, unless
    the reading code has changed since (`reader_key`); validation then reads the file afresh and keeps the
    new reading here."""

    __tablename__ = "package_reading"
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), primary_key=True)
    reader_key: Mapped[str] = mapped_column(String(64))
    sheets: Mapped[bytes] = mapped_column(LargeBinary)
    grids: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # for the feedback's copy (small workbooks)
    rows: Mapped[int] = mapped_column(Integer)  # the rows its sheets hold: what validating it holds in memory


class PackageSheet(Base):
    """A template sheet as found in a package: its name and headers as typed, and where they are,
    so findings quote the unit's own words and the feedback copy can mark the unit's own cells."""

    __tablename__ = "package_sheet"
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), primary_key=True)
    sheet: Mapped[str] = mapped_column(String(64), primary_key=True)  # the template's name
    typed_name: Mapped[str] = mapped_column(String(200))
    header_row: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None for key-value sheets
    headers: Mapped[str] = mapped_column(Text)  # JSON: field -> [header as typed, 0-based column]


class SheetRow(Base):
    """A parsed row of any sheet but 经费支出, as typed (canonical field -> text), for traceability."""

    __tablename__ = "sheet_row"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), index=True)
    sheet: Mapped[str] = mapped_column(String(64))
    excel_row: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)  # JSON object


class ExpenseLine(Base):
    """One expense line of a package's 经费支出, typed. Amount in integer fen; NULL when unreadable."""

    __tablename__ = "expense_line"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), index=True)
    excel_row: Mapped[int] = mapped_column(Integer)
    spent_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    category: Mapped[str] = mapped_column(String(64))
    funding_source: Mapped[str] = mapped_column(String(32))
    amount_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_typed: Mapped[str] = mapped_column(String(64))
    payee: Mapped[str] = mapped_column(String(300))
    voucher_no: Mapped[str] = mapped_column(String(100))  # no index: see migration 0005
    summary: Mapped[str] = mapped_column(Text)


class ExpenseTotal(Base):
    """A package's expense lines counted by funding source and category, as expense_line holds them: how
    many, how many with their amount read, and those amounts' fen. Made with the lines, by the worker that
    validated them (assets.validation.expense_totals), and replaced with them; reconciliation and the
    service indicators read it instead of a pass over a year's million lines (migration 0008)."""

    __tablename__ = "expense_total"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), index=True)
    funding_source: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(64))
    lines: Mapped[int] = mapped_column(Integer)
    amounts: Mapped[int] = mapped_column(Integer)  # lines whose amount was read
    fen: Mapped[int] = mapped_column(BigInteger)  # their sum


class FindingRow(Base):
    """A finding, stored by the stage that made it (each stage replaces its own on re-run)."""

    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_year_project", "year", "project_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    year: Mapped[int] = mapped_column(Integer)
    package_id: Mapped[int | None] = mapped_column(ForeignKey("package.id"), nullable=True, index=True)
    project_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    stage: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(8))
    sheet: Mapped[str] = mapped_column(String(64), default="")
    row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    column: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text)


class NationalFiling(Base):
    """The outbox of the national system: one row per project, year and report version.

    Written before anything is sent (so a crash loses nothing), then advanced by the sync step:
    pending -> filed (receipt held) -> accepted | returned; or refused (4xx, reason kept); or
    dry_run (built, never sent). A changed report is a new version sent as a correction of the
    previous version's filing, never a second filing.
    """

    __tablename__ = "national_filing"
    # Versions, not contents, are unique: a unit may go back to an earlier report (A → B → A),
    # and that third report must be filed as a correction too.
    __table_args__ = (UniqueConstraint("year", "project_code", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    year: Mapped[int] = mapped_column(Integer)
    project_code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # the report as JSON (UTF-8, Chinese as is)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    receipt_no: Mapped[str] = mapped_column(String(64), default="")
    corrects_receipt_no: Mapped[str] = mapped_column(String(64), default="")
    server_time: Mapped[str] = mapped_column(String(64), default="")
    raw_response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class ReconciliationRow(Base):
    """Granted against spent for one project, year and funding source (reconciliation.csv)."""

    __tablename__ = "reconciliation"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    funding_source: Mapped[str] = mapped_column(String(16), primary_key=True)
    package_id: Mapped[int | None] = mapped_column(ForeignKey("package.id"), nullable=True)
    granted_fen: Mapped[int] = mapped_column(BigInteger)
    spent_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # NULL: unreconciled
    balance_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    refund_to: Mapped[str] = mapped_column(String(32), default="")
    refund_declared_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_to_declared: Mapped[str] = mapped_column(String(64), default="")
    declared_total_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    audited_total_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16))


class ExportFingerprint(Base):
    """What an export file was last written from, so an unchanged file is not written again."""

    __tablename__ = "export_fingerprint"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # path under <export>/<year>/
    fingerprint: Mapped[str] = mapped_column(String(64))


class Waiver(Base):
    """An operator's decision that a finding of a project does not count against it (issue 13).

    Append-only, like a register: a waiver is never updated or deleted; revoking it adds a
    WaiverRevocation. It matches findings by year, project and rule, narrowed when given to one
    package (by name; empty: the project's package in use when the rules are applied), one sheet
    (as the unit typed it, as issues.csv shows it) and one Excel row.
    """

    __tablename__ = "waiver"
    __table_args__ = (Index("ix_waiver_year_project", "year", "project_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    year: Mapped[int] = mapped_column(Integer)
    project_code: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(8))
    package: Mapped[str] = mapped_column(String(500), default="")
    sheet: Mapped[str] = mapped_column(String(200), default="")
    row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    until: Mapped[date | None] = mapped_column(Date, nullable=True)  # last day it holds, Asia/Shanghai
    recorded_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)  # UTC


class WaiverRevocation(Base):
    """The revocation of a waiver: who, why and when (append-only; a waiver is revoked at most once)."""

    __tablename__ = "waiver_revocation"
    waiver_id: Mapped[int] = mapped_column(ForeignKey("waiver.id"), primary_key=True)
    revoked_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime] = mapped_column(DateTime)  # UTC


class ExportedProjectState(Base):
    """A project as the last export showed it (status, money and what they were made from), so the
    next export can list the projects whose status or money changed, and why."""

    __tablename__ = "exported_project_state"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(Text)  # JSON object (assets/manifest.py project_states)


class PhotoFactsRow(Base):
    """What a photo shows, keyed by its content: decoded once, whichever packages and years hold it.

    `phash` is the 64-bit DCT perceptual hash (16 hex digits) that finds a photo used again after
    re-encoding or resizing; empty with `error` set when the bytes are not a picture Pillow decodes.
    """

    __tablename__ = "photo_facts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # EXIF, camera's local time
    phash: Mapped[str] = mapped_column(String(16), default="")
    error: Mapped[str] = mapped_column(Text, default="")


class ServiceIndicator(Base):
    """A project's service figures for a year, from its package in use (indicators.csv).

    Counts as summed from the unit's 服务活动, 专家名单 and 影像资料 rows; spending in integer fen by
    支出科目 (JSON). `provisional`: the package in use has a fatal finding, so the figures may change.
    """

    __tablename__ = "service_indicator"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"))
    provisional: Mapped[bool] = mapped_column(Boolean)
    activities: Mapped[int] = mapped_column(Integer)
    service_days: Mapped[int] = mapped_column(Integer)
    experts: Mapped[int] = mapped_column(Integer)
    expert_days: Mapped[int] = mapped_column(Integer)
    people_served: Mapped[int] = mapped_column(Integer)
    trainees: Mapped[int] = mapped_column(Integer)
    problems_solved: Mapped[int] = mapped_column(Integer)
    districts: Mapped[int] = mapped_column(Integer)
    photos: Mapped[int] = mapped_column(Integer)
    photos_without_exif: Mapped[int] = mapped_column(Integer)
    spent_fen: Mapped[int] = mapped_column(BigInteger)
    spent_by_category: Mapped[str] = mapped_column(Text)  # JSON: 支出科目 -> fen
