"""The bureau's workbook template: sheets, their columns as the template names them, and the
variants units type instead. Canonical field names are English; headers stay as the unit sees them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


# Only 元 is stripped: a header in 万元 means another unit and must not match silently.
_UNIT_SUFFIX = re.compile(r"\((?:人民币)?元\)$|(?<!万)元$")


def header_key(text: object) -> str:
    """`金额 （元）`, `金额\\n(元)`, `金额（元）` and `金额` compare equal."""
    s = unicodedata.normalize("NFKC", str(text or ""))
    s = re.sub(r"\s+", "", s)
    return _UNIT_SUFFIX.sub("", s)


@dataclass(frozen=True)
class Column:
    field: str  # canonical English name
    header: str  # header as the template writes it
    aliases: tuple[str, ...] = ()
    required: bool = True  # the column (or 基本信息 field) must be present: S001 otherwise

    def keys(self) -> frozenset[str]:
        return frozenset(header_key(h) for h in (self.header, *self.aliases))


@dataclass(frozen=True)
class SheetLayout:
    name: str
    columns: tuple[Column, ...]
    key_value: bool = False  # 基本信息: column A the field, column B the value
    required: bool = True  # the sheet itself must be present: P003 otherwise

    def __post_init__(self) -> None:
        # Header variants -> column, built once (matching runs for every header cell of every sheet).
        index: dict[str, Column] = {}
        for column in self.columns:
            for key in column.keys():
                index.setdefault(key, column)
        object.__setattr__(self, "_index", index)

    def column(self, field: str) -> Column:
        return next(c for c in self.columns if c.field == field)

    def match(self, typed_header: object) -> Column | None:
        key = header_key(typed_header)
        return self._index.get(key) if key else None


SEQ = Column("seq", "序号", ("编号", "行号"), required=False)

BASIC_INFO = SheetLayout(
    "基本信息",
    (
        Column("year", "年度", ("项目年度",)),
        Column("project_code", "项目编号", ("项目代码", "编号")),
        Column("project_name", "项目名称"),
        Column("host_unit", "依托单位", ("依托单位名称", "单位名称")),
        Column("uscc", "统一社会信用代码", ("社会信用代码", "信用代码")),
        Column("contact", "联系人"),
        Column("phone", "联系电话", ("电话", "手机")),
        Column("service_start", "服务开始日期", ("开始日期",)),
        Column("service_end", "服务结束日期", ("结束日期",)),
        Column("work_summary_file", "工作总结文件", ("工作成效总结", "工作总结", "工作成效总结文件"), required=False),
        Column("audit_report_file", "审计报告文件", ("审计报告", "第三方审计报告"), required=False),
        Column("audit_firm", "审计机构", ("审计单位", "会计师事务所")),
        Column("audited_total", "审计确认支出金额（元）", ("审计确认支出金额", "审计确认金额", "审计金额")),
        Column("filled_on", "填报日期", required=False),
    ),
    key_value=True,
)

EXPENSES = SheetLayout(
    "经费支出",
    (
        SEQ,
        Column("spent_on", "支出日期", ("日期", "付款日期")),
        Column("category", "支出科目", ("科目", "费用类别", "支出类别")),
        Column("funding_source", "经费来源", ("资金来源", "来源")),
        Column("amount", "金额（元）", ("支出金额", "金额(元)", "支出金额（元）")),
        Column("payee", "收款方", ("收款单位", "收款人"), required=False),
        Column("voucher_no", "凭证号", ("凭证编号", "记账凭证号", "凭证号码")),
        Column("summary", "摘要", ("用途", "支出摘要", "说明"), required=False),
    ),
)

ACTIVITIES = SheetLayout(
    "服务活动",
    (
        SEQ,
        Column("start_date", "开始日期", ("活动日期", "日期")),
        Column("end_date", "结束日期", required=False),
        Column("place", "服务地点", ("地点", "活动地点")),
        Column("region_code", "行政区划代码", ("区划代码",), required=False),
        Column("form", "活动形式", ("形式",), required=False),
        Column("experts", "参与专家人数", ("专家人数",), required=False),
        Column("people_served", "服务人次", required=False),
        Column("trainees", "培训人次", required=False),
        Column("problems_solved", "解决问题数", ("解决难题数",), required=False),
        Column("content", "内容摘要", ("活动内容", "内容"), required=False),
    ),
)

EXPERTS = SheetLayout(
    "专家名单",
    (
        SEQ,
        Column("name", "姓名"),
        Column("employer", "工作单位", ("单位",), required=False),
        Column("title", "职称", required=False),
        Column("speciality", "专业领域", ("专业",), required=False),
        Column("service_days", "服务天数", ("天数",), required=False),
    ),
    required=False,
)

PHOTOS = SheetLayout(
    "影像资料",
    (
        SEQ,
        Column("file_name", "文件名", ("照片文件名", "文件名称", "照片")),
        Column("taken_on", "拍摄日期", ("日期",), required=False),
        Column("place", "拍摄地点", ("地点",), required=False),
        Column("caption", "说明", ("照片说明", "图片说明", "内容说明")),
    ),
)

LEFTOVER = SheetLayout(
    "结余说明",
    (
        Column("funding_source", "经费来源", ("资金来源", "来源")),
        Column("amount", "结余金额（元）", ("结余金额", "金额")),
        Column("reason", "原因说明", ("原因", "专项说明", "说明")),
        Column("refund_to", "退回对象", ("退回单位",)),
        Column("refunded_on", "退回日期", required=False),
        Column("refund_voucher", "退回凭证号", required=False),
    ),
    required=False,
)

PUBLICITY = SheetLayout(
    "宣传报道",
    (
        SEQ,
        Column("media", "媒体名称", ("媒体",)),
        Column("media_level", "媒体级别", required=False),
        Column("title", "标题", ("报道标题",), required=False),
        Column("published_on", "发布日期", ("日期",), required=False),
        Column("link", "链接", ("网址",), required=False),
    ),
    required=False,
)

LAYOUTS: tuple[SheetLayout, ...] = (BASIC_INFO, EXPENSES, ACTIVITIES, EXPERTS, PHOTOS, LEFTOVER, PUBLICITY)
REQUIRED_SHEETS = tuple(layout.name for layout in LAYOUTS if layout.required)

# 支出科目 (submission-package.md). The refused ones, and anything meaning the same, are S004.
ALLOWED_CATEGORIES = frozenset(
    "专家咨询费 讲课费 劳务费 差旅费 住宿费 伙食费 会议费 培训费 场地租赁费 资料印刷费 宣传费 交通费 其他".split()
)
REFUSED_CATEGORIES = frozenset("设备购置费 设备费 工资福利 工资 奖金 招待费 业务招待费 礼品费 旅游费 固定资产".split())
# Which funding sources each level may charge (S005).
SOURCES_BY_LEVEL = {"national": ("部拨经费", "市级配套"), "municipal": ("市级经费",)}
