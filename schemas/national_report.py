"""The national report's required fields (N001): what 全国专家服务基层工作信息管理系统 needs filled.

The report is checked flattened to one row per report; each required field has its Chinese label,
which is what the unit and the operator read in the finding."""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# flattened field -> the label a unit reads
REQUIRED_FIELDS: dict[str, str] = {
    "project_code": "项目编号",
    "project_name": "项目名称",
    "host_unit": "依托单位",
    "uscc": "统一社会信用代码",
    "service_start": "服务开始日期",
    "service_end": "服务结束日期",
    "activity_count": "服务活动",
    "audit_firm": "审计机构",
    "audited_total": "审计确认支出金额",
    "work_summary": "工作成效总结文件",
    "photo_count": "服务现场照片",
}


class NationalReport(pa.DataFrameModel):
    """One row per report; a field is empty when it is "" or a count of 0."""

    project_code: Series[str]
    project_name: Series[str]
    host_unit: Series[str]
    uscc: Series[str]
    service_start: Series[str]
    service_end: Series[str]
    activity_count: Series[int]
    audit_firm: Series[str]
    audited_total: Series[str]
    work_summary: Series[str]
    photo_count: Series[int]

    @pa.check("project_code", "project_name", "host_unit", "uscc", "service_start", "service_end", "audit_firm",
              "audited_total", "work_summary", name="N001")
    def filled(cls, s: pd.Series) -> pd.Series:
        return s.astype(str).str.strip() != ""

    @pa.check("activity_count", "photo_count", name="N001")
    def at_least_one(cls, s: pd.Series) -> pd.Series:
        return s > 0

    class Config:
        strict = False


def flatten(report: dict) -> dict:
    project, service, money = report["project"], report["service"], report["money"]
    attachments = report["attachments"]
    return dict(
        project_code=project["code"], project_name=project["name"], host_unit=project["host_unit"],
        uscc=project["uscc"], service_start=service["start_date"], service_end=service["end_date"],
        activity_count=service["activity_count"], audit_firm=money["audit"]["firm"],
        audited_total=money["audit"]["audited_total"],
        work_summary=next((a["sha256"] for a in attachments if a["kind"] == "work_summary"), ""),
        photo_count=sum(a["kind"] == "photo" for a in attachments),
    )


def missing_fields(reports: list[dict]) -> list[list[str]]:
    """For each report, the Chinese labels of the required fields it leaves empty (one call for all)."""
    missing: list[list[str]] = [[] for _ in reports]
    if not reports:
        return missing
    try:
        NationalReport.validate(pd.DataFrame([flatten(r) for r in reports]), lazy=True)
    except pa.errors.SchemaErrors as errors:
        failed = errors.failure_cases.dropna(subset=["index"])
        for column, index in zip(failed["column"], failed["index"]):
            missing[int(index)].append(column)
    return [[REQUIRED_FIELDS[c] for c in REQUIRED_FIELDS if c in found] for found in missing]
