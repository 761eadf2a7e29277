"""Write real submission packages (a .zip or a folder) from a plain spec.

A spec holds the workbook's sheets as the rows a unit typed and the other members as bytes; this module
turns it into what a unit's PC produces: an .xlsx (xlsxwriter), optionally 经费支出.csv in a Chinese
encoding, a zip whose member names may be GBK without the UTF-8 flag (Chinese Windows), or a folder, and
the package's modification time. The same spec always gives the same bytes, so tests can compare them.

`clean_package` makes a complete package that breaks no rule of ../shared/spec/rules.md, for one
registered project; tests and the sample inbox plant their defects into a copy of it. Its workbook is
the project's generated template (assets/templates.py) with the rows typed into it, as a unit fills it
in a spreadsheet program (`fill_template`), so the template and the sample can never drift apart.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import openpyxl
import xlsxwriter
from PIL import Image, ImageDraw

from schemas.layout import LAYOUTS

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Sheet and column names of the bureau's template (../shared/spec/submission-package.md).
BASIC_INFO, EXPENSES, ACTIVITIES, EXPERTS, PHOTOS, LEFTOVER, PUBLICITY = (
    "基本信息", "经费支出", "服务活动", "专家名单", "影像资料", "结余说明", "宣传报道",
)
BASIC_FIELDS = [
    "年度", "项目编号", "项目名称", "依托单位", "统一社会信用代码", "联系人", "联系电话", "服务开始日期",
    "服务结束日期", "工作总结文件", "审计报告文件", "审计机构", "审计确认支出金额（元）", "填报日期",
]
EXPENSE_HEADER = ["序号", "支出日期", "支出科目", "经费来源", "金额（元）", "收款方", "凭证号", "摘要"]
ACTIVITY_HEADER = [
    "序号", "开始日期", "结束日期", "服务地点", "行政区划代码", "活动形式", "参与专家人数", "服务人次",
    "培训人次", "解决问题数", "内容摘要",
]
EXPERT_HEADER = ["序号", "姓名", "工作单位", "职称", "专业领域", "服务天数"]
PHOTO_HEADER = ["序号", "文件名", "拍摄日期", "拍摄地点", "说明"]
LEFTOVER_HEADER = ["经费来源", "结余金额（元）", "原因说明", "退回对象", "退回日期", "退回凭证号"]
PUBLICITY_HEADER = ["序号", "媒体名称", "媒体级别", "标题", "发布日期", "链接"]
TOTAL_LABEL = "合计"
EXPENSES_CSV = "经费支出.csv"
REFUND_TO = {"部拨经费": "人力资源社会保障部", "市级配套": "市人力资源社会保障局", "市级经费": "市人力资源社会保障局"}

Cell = str | int | Decimal | date | None
Sheets = dict[str, list[list[Cell]]]


@dataclass
class PackageSpec:
    """One package as a unit hands it in; see write_package."""

    name: str  # file name (".zip") or folder name in the inbox year dir
    sheets: Sheets  # sheet name -> rows as typed (row 0 = header; 基本信息 is key-value rows)
    files: dict[str, bytes] = field(default_factory=dict)  # other members: relative path -> bytes
    workbook_name: str = "专家服务基层材料.xlsx"
    as_zip: bool = True
    gbk_names: bool = False  # member names in GBK without the UTF-8 flag, as Chinese Windows writes them
    expenses_csv: str | None = None  # an encoding: 经费支出 then goes to 经费支出.csv beside the workbook
    modified_at: datetime | None = None  # naive means Asia/Shanghai; None leaves the file's mtime alone
    extra_workbooks: int = 0  # copies of the workbook ("… - 副本.xlsx"), for P002
    no_workbook: bool = False  # neither workbook nor 经费支出.csv, for P002
    raw: bytes | None = None  # the package file's bytes as they are (a corrupt zip, for P001): all else unused
    template: bytes | None = None  # the project's generated template: the sheets are typed into it


# Before any modified_at is known: zip timestamps and the workbook's creation time must not be "now",
# or two builds of one spec would differ.
_FIXED_MOMENT = datetime(2023, 11, 1, 9, 0)


def write_package(spec: PackageSpec, year_dir: Path) -> Path:
    """Write the package into year_dir (created if needed), replacing an earlier build of it."""
    year_dir.mkdir(parents=True, exist_ok=True)
    path = year_dir / spec.name
    local_time = _shanghai(spec.modified_at).replace(tzinfo=None) if spec.modified_at else _FIXED_MOMENT
    if spec.raw is not None:
        path.write_bytes(spec.raw)
    elif spec.as_zip:
        path.write_bytes(zip_bytes(_members(spec, local_time), local_time, gbk_names=spec.gbk_names))
    else:
        if path.exists():
            shutil.rmtree(path)
        for member, data in _members(spec, local_time):
            target = path / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    if spec.modified_at:
        _set_mtime(path, spec.modified_at)
    return path


def write_workbook(sheets: Sheets, target: Path | str | BinaryIO, *, created: datetime | None = None) -> None:
    """Write sheets as an .xlsx: str as text (even "１２３４．５０"), int and Decimal as numbers, dates as
    real Excel dates, None as a blank cell."""
    workbook = xlsxwriter.Workbook(str(target) if isinstance(target, Path) else target, {"in_memory": True})
    workbook.set_properties({"created": created or _FIXED_MOMENT})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    amount_format = workbook.add_format({"num_format": "#,##0.00"})
    for sheet_name, rows in sheets.items():
        sheet = workbook.add_worksheet(sheet_name)
        sheet.set_column(0, max((len(row) for row in rows), default=1) - 1, 16)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, str):
                    sheet.write_string(r, c, value)
                elif isinstance(value, date):
                    sheet.write_datetime(r, c, value, date_format)
                elif isinstance(value, Decimal):
                    sheet.write_number(r, c, float(value), amount_format)
                elif isinstance(value, int):
                    sheet.write_number(r, c, value)
                else:
                    raise TypeError(f"{sheet_name}!{r + 1}: cannot write {type(value).__name__}")
    workbook.close()


_REQUIRED = {layout.name for layout in LAYOUTS if layout.required}
_KEY_VALUE = {layout.name for layout in LAYOUTS if layout.key_value}
_MODIFIED = re.compile(rb"<dcterms:modified[^>]*>[^<]*</dcterms:modified>")


def fill_template(template: bytes, sheets: Sheets, moment: datetime = _FIXED_MOMENT) -> bytes:
    """Type the sheets' rows into the template as a unit does in a spreadsheet program (openpyxl here):
    基本信息's fields and values over its column A and B, each table from its header down, over the
    example row (a unit that keeps it types below; the pipeline ignores it either way). A required
    sheet the rows leave out is deleted, as a unit deletes it; an optional one stays, empty.
    The template's validation, input messages and protection stay as generated."""
    book = openpyxl.load_workbook(io.BytesIO(template))
    for name in list(book.sheetnames):
        if name not in sheets and name in _REQUIRED:
            del book[name]
    for name, rows in sheets.items():
        sheet = book[name] if name in book.sheetnames else book.create_sheet(name)
        if name not in _KEY_VALUE:
            for row in sheet.iter_rows():
                for cell in row:
                    cell.value = None
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                _type_into(sheet.cell(r, c), value)
    book.properties.created = moment
    buffer = io.BytesIO()
    book.save(buffer)
    return _stable(buffer.getvalue(), moment)


def _type_into(cell, value: Cell) -> None:
    if isinstance(value, str):
        cell.value = value
        cell.data_type = "s"  # text stays text, even "=…"
    elif isinstance(value, date):
        cell.value, cell.number_format = value, "yyyy-mm-dd"
    elif isinstance(value, (int, Decimal)) or value is None:
        cell.value = value
    else:
        raise TypeError(f"cannot type {type(value).__name__} into {cell.coordinate}")


def _stable(xlsx: bytes, moment: datetime) -> bytes:
    """The same bytes for the same rows: openpyxl stamps the save time into the file and its members."""
    with zipfile.ZipFile(io.BytesIO(xlsx)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    stamp = f"<dcterms:modified xsi:type=\"dcterms:W3CDTF\">{moment:%Y-%m-%dT%H:%M:%SZ}</dcterms:modified>".encode()
    members = [(name, _MODIFIED.sub(stamp, data) if name == "docProps/core.xml" else data) for name, data in members]
    return zip_bytes(members, moment)


def zip_bytes(members: list[tuple[str, bytes]], date_time: datetime, *, gbk_names: bool = False) -> bytes:
    """A deflated zip of members, every one stamped with date_time (local time, as zip stores it)."""
    buffer = io.BytesIO()
    gbk_by_placeholder: dict[bytes, bytes] = {}
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (name, data) in enumerate(members):
            if gbk_names and not name.isascii():
                # zipfile flags every non-ASCII name as UTF-8; write an ASCII stand-in of the same byte
                # length and patch the GBK bytes in afterwards, so no header offset moves.
                gbk = name.encode("gbk")
                name = f"~{index}".ljust(len(gbk), "~")
                if len(name) != len(gbk):
                    raise ValueError(f"member name too short to patch in place: {gbk!r}")
                gbk_by_placeholder[name.encode("ascii")] = gbk
            info = zipfile.ZipInfo(name, date_time.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            if gbk_names:
                info.create_system, info.external_attr = 0, 0x20  # MS-DOS host, "archive" attribute
            else:
                info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    data = bytearray(buffer.getvalue())
    if gbk_by_placeholder:
        _patch_member_names(data, gbk_by_placeholder)
    return bytes(data)


def _patch_member_names(data: bytearray, names: dict[bytes, bytes]) -> None:
    # Walk the central directory (the zip has no comment, so the end record is the last 22 bytes); each
    # entry points at its local header, which repeats the name at offset 30.
    entries, _, position = struct.unpack_from("<HII", data, len(data) - 22 + 10)
    for _ in range(entries):
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        (local_header,) = struct.unpack_from("<I", data, position + 42)
        old = bytes(data[position + 46 : position + 46 + name_length])
        if old in names:
            data[position + 46 : position + 46 + name_length] = names[old]
            data[local_header + 30 : local_header + 30 + name_length] = names[old]
        position += 46 + name_length + extra_length + comment_length


def _members(spec: PackageSpec, local_time: datetime) -> list[tuple[str, bytes]]:
    members: list[tuple[str, bytes]] = []
    if not spec.no_workbook:
        workbook_path = PurePosixPath(spec.workbook_name)
        sheets = spec.sheets
        if spec.expenses_csv:
            sheets = {name: rows for name, rows in sheets.items() if name != EXPENSES}
            csv_path = str(workbook_path.with_name(EXPENSES_CSV))
            members.append((csv_path, csv_bytes(spec.sheets[EXPENSES], spec.expenses_csv)))
        if spec.template is not None:
            workbook = fill_template(spec.template, sheets, local_time)
        else:
            buffer = io.BytesIO()
            write_workbook(sheets, buffer, created=local_time)
            workbook = buffer.getvalue()
        members.append((spec.workbook_name, workbook))
        for copy in range(1, spec.extra_workbooks + 1):
            suffix = " - 副本" if copy == 1 else f" - 副本 ({copy})"  # how Windows names a copied file
            copy_name = workbook_path.with_name(f"{workbook_path.stem}{suffix}{workbook_path.suffix}")
            members.append((str(copy_name), workbook))
    members.extend(spec.files.items())
    return members


def csv_bytes(rows: list[list[Cell]], encoding: str) -> bytes:
    """Rows as a unit's accounting system exports them: CRLF lines, dates ISO, amounts as typed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if value is None else value.isoformat() if isinstance(value, date) else str(value)
                         for value in row])
    return text.getvalue().encode(encoding)


def _shanghai(moment: datetime) -> datetime:
    return moment.replace(tzinfo=SHANGHAI) if moment.tzinfo is None else moment.astimezone(SHANGHAI)


def _set_mtime(path: Path, moment: datetime) -> None:
    stamp = _shanghai(moment).timestamp()
    # A folder's own mtime is set last, after everything inside it.
    for target in [*sorted(path.rglob("*"), reverse=True), path] if path.is_dir() else [path]:
        os.utime(target, (stamp, stamp))


# --- attachments: small but real files ------------------------------------------------------------


def _picture(text: str, seed: int) -> Image.Image:
    rng = random.Random(f"{text}/{seed}")
    image = Image.new("RGB", (320, 240), tuple(rng.randrange(40, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y = rng.randrange(300), rng.randrange(220)
        box = (x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 90))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    draw.text((10, 10), text, fill="white")  # the default font has no CJK glyphs: callers pass ASCII
    return image


def jpeg_bytes(text: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    _picture(text, seed).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def png_bytes(text: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    _picture(text, seed).save(buffer, "PNG")
    return buffer.getvalue()


def pdf_bytes(title: str, lines: tuple[str, ...] = ()) -> bytes:
    """A one-page PDF with a correct xref table. Text is ASCII: the standard Helvetica has no CJK."""
    text = [f"BT /F1 18 Tf 72 770 Td ({_pdf_string(title)}) Tj ET"]
    text += [f"BT /F1 11 Tf 72 {740 - 16 * i} Td ({_pdf_string(line)}) Tj ET" for i, line in enumerate(lines)]
    content = "\n".join(text).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _pdf_string(text: str) -> str:
    if not text.isascii():
        raise ValueError(f"pdf_bytes writes ASCII only: {text!r}")
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def docx_bytes(text: str) -> bytes:
    """A minimal Word document (the three parts Word needs), one paragraph per line of text."""
    paragraphs = "".join(f"<w:p><w:r><w:t>{escape(line)}</w:t></w:r></w:p>" for line in text.split("\n"))
    members = [
        ("[Content_Types].xml",
         '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
         '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
         '<Default Extension="xml" ContentType="application/xml"/>'
         '<Override PartName="/word/document.xml" ContentType="application/'
         'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'),
        ("_rels/.rels",
         '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats.org/'
         'officeDocument/2006/relationships/officeDocument"/></Relationships>'),
        ("word/document.xml",
         '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
         f"<w:body>{paragraphs}</w:body></w:document>"),
    ]
    return zip_bytes([(name, xml.encode("utf-8")) for name, xml in members], _FIXED_MOMENT)


# --- 统一社会信用代码 (GB 32100-2015) ---------------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc_check_char(first17: str) -> str:
    """The 18th character: weights 3^(i-1) mod 31, check = 31 - (sum mod 31), 31 -> 0."""
    total = sum(USCC_ALPHABET.index(char) * pow(3, i, 31) for i, char in enumerate(first17))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_for(host_unit: str) -> str:
    """A valid code, always the same for one unit (so every version of its packages agrees)."""
    rng = random.Random(host_unit)
    # 登记管理部门 + 机构类别: 91 company, 93 farmers' cooperative, 12 public institution (事业单位)
    kind = "91" if "公司" in host_unit else "93" if "合作社" in host_unit else "12"
    region = rng.choice(["310000", "310104", "310106", "310115"])
    subject = "".join(rng.choice("0123456789") for _ in range(8)) + rng.choice(USCC_ALPHABET)
    first17 = kind + region + subject
    return first17 + uscc_check_char(first17)


# --- a clean package --------------------------------------------------------------------------------

SHANGHAI_DISTRICTS = {
    "310101": "黄浦区", "310104": "徐汇区", "310105": "长宁区", "310106": "静安区", "310107": "普陀区",
    "310109": "虹口区", "310110": "杨浦区", "310112": "闵行区", "310113": "宝山区", "310114": "嘉定区",
    "310115": "浦东新区", "310116": "金山区", "310117": "松江区", "310118": "青浦区", "310120": "奉贤区",
    "310151": "崇明区",
}
YUNNAN_PLACES = {
    "533422": "云南省迪庆藏族自治州德钦县", "533401": "云南省迪庆藏族自治州香格里拉市",
    "533423": "云南省迪庆藏族自治州维西傈僳族自治县",
}
_VENUES = ["社区卫生服务中心", "镇人民政府", "村民委员会", "街道党群服务中心", "中心小学", "企业服务中心"]
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟陆汪范金顾"
_GIVEN = "伟芳敏静丽强磊军洋勇艳杰涛明超秀霞平刚华玉萍红玲燕彬鑫斌宇浩凯健俊帆旭宁婷雪琳晨辉清文建志"
_TITLES = ["正高级", "副高级", "副高级", "中级"]
# 专业领域 follows the project's subject; the first keyword found in the project name wins.
_FIELDS_BY_KEYWORD = [
    ("乳腺", ["乳腺外科", "肿瘤内科", "放射治疗", "肿瘤护理"]),
    ("规划", ["城乡规划", "建筑设计", "景观设计", "乡村振兴"]),
    ("教育", ["中学语文", "中学数学", "英语教学", "教育管理"]),
    ("航海", ["航海史", "博物馆学", "科普教育", "船舶技术"]),
    ("生态", ["环境监测", "水质分析", "大气环境", "生态保护"]),
    ("算力", ["高性能计算", "人工智能", "云计算", "数据安全"]),
    ("蔬菜", ["蔬菜栽培", "西甜瓜育种", "植物保护", "设施农业"]),
    ("西红花", ["药用植物栽培", "植物保护", "农产品加工", "合作社管理"]),
    ("水", ["水文预报", "水利工程", "数字孪生", "水资源调度"]),
    ("金融", ["金融风险管理", "跨境金融", "金融科技", "财务管理"]),
    ("科技", ["技术转移", "知识产权", "创业投资", "国际科技合作"]),
]
_ACTIVITY_FORMS = ["现场指导", "专题讲座", "培训班", "技术咨询", "座谈交流"]
_AUDIT_FIRMS = ["上海申诚会计师事务所有限公司", "上海华信达会计师事务所（普通合伙）", "上海正勤会计师事务所有限公司"]
# Categories paid to a named expert, with what one expert gets per service day at most: far under the
# caps (R008) however the pipeline adds them up: consultation's lowest cap is 750 a day from day 3 on,
# lectures are 1-hour lines (副高 cap 500 an hour) by senior experts only, meals 100 a day.
EXPERT_PAID_LIMITS = {"专家咨询费": Decimal(700), "讲课费": Decimal(500), "伙食费": Decimal(100)}
_MEDIA = [("中国组织人事报", "部属媒体"), ("解放日报", "省级媒体"), ("文汇报", "省级媒体"),
          ("新华网", "中央媒体"), ("上海人社（微信公众号）", "行业媒体")]
# Big-ticket categories absorb the grant; their payees are the kind of firm a unit pays for them.
_BIG_EXPENSES = {
    "差旅费": (["中国东方航空股份有限公司", "中国铁路上海局集团有限公司"], "专家赴{place}往返交通"),
    "住宿费": (["锦江之星旅馆有限公司", "如家酒店连锁（中国）有限公司"], "专家赴{place}服务期间住宿"),
    "会议费": (["上海申城会务服务有限公司"], "专家服务工作推进会会务"),
    "培训费": (["上海明德培训中心"], "{place}基层骨干培训班"),
    "场地租赁费": (["上海汇展会展服务有限公司"], "{place}培训场地租赁"),
    "资料印刷费": (["上海启明印务有限公司"], "培训教材及服务手册印制"),
    "宣传费": (["上海光影文化传媒有限公司"], "专家服务成效宣传片制作"),
    "交通费": (["上海众诚汽车租赁有限公司"], "{place}服务用车租赁"),
    "劳务费": (["上海人才服务有限公司"], "活动组织辅助人员劳务"),
}


def clean_package(project: dict, year: int, *, seed: int = 0,
                  leftover: dict[str, Decimal] | None = None) -> PackageSpec:
    """A complete package of one registered project that breaks no rule.

    project is a registry entry (code, level, type, host_unit, project_name, optional aliases and uscc)
    plus grants: funding source -> yuan, and its generated template (bytes) to fill, if any. The expense
    lines of each source add up exactly to its grant
    minus leftover (default: none left), and a leftover gets its 结余说明 row.
    """
    rng = random.Random(f"{project['code']}/{seed}")
    leftover = {source: amount for source, amount in (leftover or {}).items() if amount}
    host_unit, code = project["host_unit"], project["code"]
    modified_at = datetime(year, 11, 2 + seed % 7, 9 + seed % 9, 7 * seed % 60, tzinfo=SHANGHAI)
    # One service window for teams and bases, ending well before a team's completion date (T002).
    service_start, service_end = date(year, 6, 1), date(year, 10, 31)
    uscc = project.get("uscc") or uscc_for(host_unit)

    places = YUNNAN_PLACES if "云南" in project["project_name"] else SHANGHAI_DISTRICTS
    experts = _experts(rng, project)
    activities = _activities(rng, project, places, len(experts), service_start, service_end)
    paid: dict[tuple[str, str], Decimal] = {}
    lines = [
        line
        for source, granted in project["grants"].items()
        for line in _expense_lines(rng, source, granted - leftover.get(source, Decimal(0)), experts, paid,
                                   [row[3] for row in activities[1:]], service_start, service_end)
    ]
    lines.sort(key=lambda line: line[0])
    # A yearly voucher sequence that starts somewhere else for every project, so that two projects'
    # 凭证号 do not meet by chance (that would be R007, double claiming).
    voucher_base = 1000 + zlib.crc32(code.encode()) % 8900
    expense_rows: list[list[Cell]] = [list(EXPENSE_HEADER)]
    for number, (day, category, source, amount, payee, summary) in enumerate(lines, start=1):
        voucher = f"记-{year}-{day:%m%d}-{voucher_base + number:04d}"
        expense_rows.append([number, day, category, source, amount, payee, voucher, summary])
    spent = sum((line[3] for line in lines), Decimal(0))
    expense_rows.append([TOTAL_LABEL, None, None, None, spent, None, None, None])

    summary_file, audit_file = f"{year}年度工作成效总结.pdf", f"{year}年度专项经费审计报告.pdf"
    photo_rows, files = _photos(rng, code, activities)
    files[summary_file] = pdf_bytes(f"{code} work summary {year}", (
        f"Host unit USCC: {uscc}", f"Service activities: {len(activities) - 1}",
        f"Experts: {len(experts) - 1}"))
    files[audit_file] = pdf_bytes(f"{code} audit report {year}", (f"Audited expenditure: {spent:.2f} yuan",))

    sheets: Sheets = {
        BASIC_INFO: [[name, value] for name, value in zip(BASIC_FIELDS, [
            year, code, project["project_name"], host_unit, uscc,
            _person(rng), f"021-{rng.randint(5000, 6999)}{rng.randint(0, 9999):04d}", service_start,
            service_end, summary_file, audit_file, rng.choice(_AUDIT_FIRMS), spent, modified_at.date(),
        ])],
        EXPENSES: expense_rows,
        ACTIVITIES: activities,
        EXPERTS: experts,
        PHOTOS: photo_rows,
    }
    if leftover:
        refund_day = date(year, 11, 1)
        sheets[LEFTOVER] = [list(LEFTOVER_HEADER)] + [
            [source, amount, "部分服务活动改为线上开展，相应差旅及场地费用节约", REFUND_TO[source], refund_day,
             f"付-{year}-{refund_day:%m%d}-{index:02d}"]
            for index, (source, amount) in enumerate(leftover.items(), start=1)
        ]
    if rng.random() < 0.7:
        sheets[PUBLICITY] = [list(PUBLICITY_HEADER)] + [
            [index, media, level, f"{project['project_name']}：专家走进基层送服务",
             service_end - timedelta(days=9 * index), f"https://www.example.com/news/{year}/{code}-{index}.html"]
            for index, (media, level) in enumerate(rng.sample(_MEDIA, 2), start=1)
        ]
    display = (project.get("aliases") or [host_unit])[0]
    return PackageSpec(name=f"{display}-{year}年专家服务基层材料.zip", sheets=sheets, files=files,
                       modified_at=modified_at, template=project.get("template"))


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _experts(rng: random.Random, project: dict) -> list[list[Cell]]:
    fields = next((fields for keyword, fields in _FIELDS_BY_KEYWORD if keyword in project["project_name"]),
                  ["管理咨询", "技术服务", "人才培养"])
    names: list[str] = []
    count = rng.randint(4, 7)
    while len(names) < count:
        name = _person(rng)
        if name not in names:
            names.append(name)
    units = [project["host_unit"], project["host_unit"], "同济大学", "上海交通大学", "华东师范大学"]
    return [list(EXPERT_HEADER)] + [
        [index, name, rng.choice(units), rng.choice(_TITLES), rng.choice(fields), rng.randint(2, 8)]
        for index, name in enumerate(names, start=1)
    ]


def _activities(rng: random.Random, project: dict, places: dict[str, str], expert_count: int,
                start: date, end: date) -> list[list[Cell]]:
    days = sorted(start + timedelta(days=rng.randrange((end - start).days - 3))
                  for _ in range(rng.randint(3, 6)))
    rows: list[list[Cell]] = [list(ACTIVITY_HEADER)]
    for index, day in enumerate(days, start=1):
        region = rng.choice(sorted(places))
        form = rng.choice(_ACTIVITY_FORMS)
        served = rng.randint(30, 400)
        rows.append([
            index, day, day + timedelta(days=rng.randint(0, 2)), places[region] + rng.choice(_VENUES), region,
            form, rng.randint(2, expert_count), served, rng.randint(0, served), rng.randint(1, 12),
            f"{project['project_name']}专家赴{places[region]}开展{form}",
        ])
    return rows


def _photos(rng: random.Random, code: str,
            activities: list[list[Cell]]) -> tuple[list[list[Cell]], dict[str, bytes]]:
    rows: list[list[Cell]] = [list(PHOTO_HEADER)]
    files: dict[str, bytes] = {}
    for index in range(1, rng.randint(3, 5) + 1):
        activity = rng.choice(activities[1:])
        path = f"照片/现场照片{index:02d}.jpg"
        files[path] = jpeg_bytes(f"{code} photo {index}", index)
        rows.append([index, path, activity[1], activity[3], f"{activity[5]}现场，专家与基层人员交流"])
    return rows, files


def _expense_lines(rng: random.Random, source: str, to_spend: Decimal, experts: list[list[Cell]],
                   paid: dict[tuple[str, str], Decimal], places: list[Cell], start: date,
                   end: date) -> list[tuple[date, str, str, Decimal, str, str]]:
    """Lines (date, category, source, amount, payee, summary) whose amounts add up exactly to to_spend;
    paid holds what each expert got per category so far, across the project's funding sources."""
    if to_spend < 0:
        raise ValueError(f"{source}: leftover exceeds the grant")
    if not to_spend:
        return []

    def day() -> date:
        return start + timedelta(days=rng.randrange(4, (end - start).days + 1))

    lines = []
    small_budget = to_spend / 4 if to_spend >= 5000 else Decimal(0)
    for _ in range(rng.randint(4, 6)):
        _, name, _, title, _, days = rng.choice(experts[1:])
        category, amount, summary = rng.choice([
            ("专家咨询费", Decimal(rng.choice([600, 800, 900])), f"专家{name}现场咨询指导"),
            ("讲课费", Decimal(rng.choice([300, 400, 500])), f"专家{name}专题讲座授课（1学时）"),
            ("伙食费", Decimal(100 * rng.randint(1, 2)), f"专家{name}出差伙食补助"),
        ])
        limit = EXPERT_PAID_LIMITS[category] * days
        so_far = paid.get((category, name), Decimal(0))
        if (category == "讲课费" and title not in ("正高级", "副高级")) or so_far + amount > limit \
                or amount > small_budget:
            continue
        paid[(category, name)] = so_far + amount
        small_budget -= amount
        lines.append((day(), category, source, amount.quantize(Decimal("0.01")), str(name), summary))
    rest = to_spend - sum((line[3] for line in lines), Decimal(0))
    # At least 10 lines a source, unless so little is left that one line is all a unit would type.
    count = max(rng.randint(6, 9), 10 - len(lines)) if rest >= 5000 else 1
    weights = [rng.randint(150, 950) for _ in range(count)]
    for weight in weights:
        category = rng.choice(sorted(_BIG_EXPENSES))
        payees, summary = _BIG_EXPENSES[category]
        share = (rest * weight / sum(weights)).quantize(Decimal("0.01"), ROUND_DOWN)
        lines.append((day(), category, source, share, rng.choice(payees),
                      summary.format(place=rng.choice(places))))
    # Rounding down left a few fen over: the last line takes them, so the source adds up exactly.
    *head, last = lines
    lines[-1] = (*last[:3], to_spend - sum((line[3] for line in head), Decimal(0)), *last[4:])
    return lines
