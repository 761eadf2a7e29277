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
    # What the generated template (assets/templates.py) needs; matching ignores these.
    kind: str = "text"  # data validation: text | date | amount (> 0, 2 decimals) | integer | days | list
    hint: str = ""  # the Chinese input message a unit sees when it selects the cell
    example: str = ""  # the value of the template's example row (list columns take their first choice)

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


def _date(field: str, header: str, aliases: tuple[str, ...] = (), *, required: bool = True, hint: str = "",
          example: str = "2023-06-01") -> Column:
    return Column(field, header, aliases, required, "date", hint or "填写日期，如 2023-06-01。", example)


def _amount(field: str, header: str, aliases: tuple[str, ...] = (), *, hint: str = "",
            example: str = "1234.50") -> Column:
    return Column(field, header, aliases, True, "amount", hint or "填写金额（元），大于 0，最多两位小数，不要带单位。", example)


def _count(field: str, header: str, aliases: tuple[str, ...] = (), *, hint: str, example: str) -> Column:
    return Column(field, header, aliases, False, "integer", hint, example)


SEQ = Column("seq", "序号", ("编号", "行号"), required=False, hint="行号 1、2、3……（可不填）。", example="示例")

BASIC_INFO = SheetLayout(
    "基本信息",
    (
        Column("year", "年度", ("项目年度",), kind="integer", hint="立项年度，已按登记信息填好。"),
        Column("project_code", "项目编号", ("项目代码", "编号"), hint="已按立项通知填好，请勿修改。"),
        Column("project_name", "项目名称", hint="已按立项通知填好，请勿修改。"),
        Column("host_unit", "依托单位", ("依托单位名称", "单位名称"), hint="已按立项登记填好，请勿修改。"),
        Column("uscc", "统一社会信用代码", ("社会信用代码", "信用代码"),
               hint="依托单位的 18 位统一社会信用代码，按营业执照或事业单位法人证书填写。"),
        Column("contact", "联系人", hint="负责本材料的联系人姓名。"),
        Column("phone", "联系电话", ("电话", "手机"), hint="座机请带区号，如 021-12345678，或填手机号。"),
        _date("service_start", "服务开始日期", ("开始日期",), hint="本年度服务开始的日期，如 2023-06-01。"),
        _date("service_end", "服务结束日期", ("结束日期",), hint="本年度服务结束的日期；服务团应在 11 月上旬前完成。"),
        Column("work_summary_file", "工作总结文件", ("工作成效总结", "工作总结", "工作成效总结文件"), required=False,
               hint="材料包中工作成效总结的文件名（pdf 或 docx），如 2023年度工作成效总结.pdf。"),
        Column("audit_report_file", "审计报告文件", ("审计报告", "第三方审计报告"), required=False,
               hint="材料包中第三方审计报告的文件名（pdf），如 2023年度专项经费审计报告.pdf。"),
        Column("audit_firm", "审计机构", ("审计单位", "会计师事务所"), hint="出具审计报告的会计师事务所全称。"),
        _amount("audited_total", "审计确认支出金额（元）", ("审计确认支出金额", "审计确认金额", "审计金额"),
                hint="审计报告确认的专项经费支出总额（元），应等于经费支出表各行金额之和。"),
        _date("filled_on", "填报日期", required=False, hint="填写本表的日期。"),
    ),
    key_value=True,
)

EXPENSES = SheetLayout(
    "经费支出",
    (
        SEQ,
        _date("spent_on", "支出日期", ("日期", "付款日期"), hint="记账凭证上的支出日期，应在项目年度内。"),
        Column("category", "支出科目", ("科目", "费用类别", "支出类别"), kind="list",
               hint="从下拉列表中选择。设备购置费、工资福利、招待费、礼品费等不得从专项经费列支。"),
        Column("funding_source", "经费来源", ("资金来源", "来源"), kind="list",
               hint="从下拉列表中选择本项目的经费来源，每笔支出只能计入一个来源。"),
        _amount("amount", "金额（元）", ("支出金额", "金额(元)", "支出金额（元）")),
        Column("payee", "收款方", ("收款单位", "收款人"), required=False, hint="收款单位或个人。",
               example="中国东方航空股份有限公司"),
        Column("voucher_no", "凭证号", ("凭证编号", "记账凭证号", "凭证号码"),
               hint="记账凭证号，同一凭证号只能出现一次。", example="记-2023-0601-0001"),
        Column("summary", "摘要", ("用途", "支出摘要", "说明"), required=False, hint="支出用途。",
               example="专家赴服务地往返交通"),
    ),
)

ACTIVITIES = SheetLayout(
    "服务活动",
    (
        SEQ,
        _date("start_date", "开始日期", ("活动日期", "日期"), hint="活动开始日期。"),
        _date("end_date", "结束日期", required=False, hint="活动结束日期（一天的活动可与开始日期相同）。",
              example="2023-06-02"),
        Column("place", "服务地点", ("地点", "活动地点"), hint="服务所在地，写到区（县）和具体单位。",
               example="上海市浦东新区某社区卫生服务中心"),
        Column("region_code", "行政区划代码", ("区划代码",), required=False,
               hint="服务地点所在区县的 6 位行政区划代码，上海市各区为 3101 开头。", example="310115"),
        Column("form", "活动形式", ("形式",), required=False, hint="如现场指导、专题讲座、培训班、技术咨询。",
               example="现场指导"),
        _count("experts", "参与专家人数", ("专家人数",), hint="参加本次活动的专家人数（整数）。", example="3"),
        _count("people_served", "服务人次", hint="服务对象人次（整数）。", example="120"),
        _count("trainees", "培训人次", hint="培训人次（整数，没有培训填 0）。", example="60"),
        _count("problems_solved", "解决问题数", ("解决难题数",), hint="解决的问题或难题数（整数）。", example="5"),
        Column("content", "内容摘要", ("活动内容", "内容"), required=False, hint="活动内容简述。",
               example="专家赴社区开展慢性病管理现场指导"),
    ),
)

EXPERTS = SheetLayout(
    "专家名单",
    (
        SEQ,
        Column("name", "姓名", hint="专家姓名。", example="张三"),
        Column("employer", "工作单位", ("单位",), required=False, hint="专家的工作单位。", example="上海交通大学"),
        Column("title", "职称", required=False, hint="如正高级、副高级、中级；院士请注明。", example="副高级"),
        Column("speciality", "专业领域", ("专业",), required=False, hint="专家的专业领域。", example="设施农业"),
        Column("service_days", "服务天数", ("天数",), required=False, kind="days",
               hint="本年度服务天数，可为半天（0.5）。", example="2"),
    ),
    required=False,
)

PHOTOS = SheetLayout(
    "影像资料",
    (
        SEQ,
        Column("file_name", "文件名", ("照片文件名", "文件名称", "照片"),
               hint="材料包中照片的文件名（可带文件夹），如 照片/现场照片01.jpg。", example="照片/现场照片01.jpg"),
        _date("taken_on", "拍摄日期", ("日期",), required=False, hint="照片拍摄日期。"),
        Column("place", "拍摄地点", ("地点",), required=False, hint="拍摄地点。", example="上海市浦东新区"),
        Column("caption", "说明", ("照片说明", "图片说明", "内容说明"), hint="照片内容说明，每张照片都要有说明。",
               example="专家在社区卫生服务中心开展现场指导"),
    ),
)

LEFTOVER = SheetLayout(
    "结余说明",
    (
        Column("funding_source", "经费来源", ("资金来源", "来源"), kind="list",
               hint="有结余的经费来源，每个来源填一行。"),
        _amount("amount", "结余金额（元）", ("结余金额", "金额"), hint="该来源的结余金额（元）：拨付减支出。",
                example="3860.00"),
        Column("reason", "原因说明", ("原因", "专项说明", "说明"), hint="结余的原因（专项说明）。",
               example="部分服务活动改为线上开展，差旅费用节约"),
        Column("refund_to", "退回对象", ("退回单位",), kind="list",
               hint="部拨经费退回人力资源社会保障部，市级配套、市级经费退回市人力资源社会保障局。"),
        _date("refunded_on", "退回日期", required=False, hint="结余退回的日期。", example="2023-11-01"),
        Column("refund_voucher", "退回凭证号", required=False, hint="退回的付款凭证号。", example="付-2023-1101-01"),
    ),
    required=False,
)

PUBLICITY = SheetLayout(
    "宣传报道",
    (
        SEQ,
        Column("media", "媒体名称", ("媒体",), hint="刊发报道的媒体。", example="中国组织人事报"),
        Column("media_level", "媒体级别", required=False, hint="如中央媒体、部属媒体、省级媒体。", example="部属媒体"),
        Column("title", "标题", ("报道标题",), required=False, hint="报道标题。", example="专家走进基层送服务"),
        _date("published_on", "发布日期", ("日期",), required=False, hint="报道发布日期。"),
        Column("link", "链接", ("网址",), required=False, hint="报道网址（如有）。",
               example="https://www.example.com/news.html"),
    ),
    required=False,
)

LAYOUTS: tuple[SheetLayout, ...] = (BASIC_INFO, EXPENSES, ACTIVITIES, EXPERTS, PHOTOS, LEFTOVER, PUBLICITY)
REQUIRED_SHEETS = tuple(layout.name for layout in LAYOUTS if layout.required)

# 支出科目 (submission-package.md), in its order (the template's drop-down list). The refused ones, and
# anything meaning the same, are S004.
CATEGORIES = tuple("专家咨询费 讲课费 劳务费 差旅费 住宿费 伙食费 会议费 培训费 场地租赁费 资料印刷费 宣传费 交通费 其他".split())
ALLOWED_CATEGORIES = frozenset(CATEGORIES)
REFUSED_CATEGORIES = frozenset("设备购置费 设备费 工资福利 工资 奖金 招待费 业务招待费 礼品费 旅游费 固定资产".split())
# Which funding sources each level may charge (S005).
SOURCES_BY_LEVEL = {"national": ("部拨经费", "市级配套"), "municipal": ("市级经费",)}
