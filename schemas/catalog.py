"""The rule catalog of ../shared/spec/rules.md: every rule id, its severity and its Chinese message.

The ids are a public contract (exports, feedback workbooks and tests use them). Every user-facing
sentence about a finding is written here and nowhere else; callers pass the figures to fill in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    FATAL = "fatal"
    WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str  # short Chinese name, used in summaries and asset metadata
    template: str  # Chinese sentence the unit can act on; {placeholders} filled by the caller


_F, _W = Severity.FATAL, Severity.WARNING

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in [
        # P — the package
        Rule("P001", _F, "材料包无法读取", "材料包无法打开（{detail}），请重新打包（不要加密码）后再次报送。"),
        Rule("P002", _F, "工作簿缺失或多于一个", "材料包中应有且只有一个 Excel 工作簿，实际{detail}，请只保留填报模板工作簿后重新报送。"),
        Rule("P003", _F, "缺少必填工作表", "工作簿缺少必填工作表“{sheet}”，请使用局发模板补齐该表后重新报送。"),
        Rule("P004", _F, "材料包不安全", "材料包存在不安全内容（{detail}），已拒收，请直接压缩材料文件夹后重新报送。"),
        Rule("P005", _F, "项目编号不在登记名单", "项目编号“{value}”不在 {year} 年立项名单中，请按立项通知填写正确的项目编号（格式如 2023-ST-01）。"),
        Rule("P006", _F, "依托单位与登记不符", "{column}“{value}”与立项登记的“{expected}”不一致，请核对后按登记信息填写。"),
        Rule("P007", _W, "已被新版本替代", "该材料包已被 {newer} 替代，以最新版本为准；如需以本版本为准请联系市人社局。"),
        Rule("P008", _F, "材料包超出处理限制", "材料包超出处理限制（{limit}），请检查工作簿是否含有大量空白区域或超大图片后重新报送。"),
        # M — required materials
        Rule("M001", _F, "工作总结缺失", "工作成效总结文件{detail}，请在基本信息表“工作总结文件”填写文件名并将文件放入材料包。"),
        Rule("M002", _F, "审计报告缺失", "第三方审计报告文件{detail}，请在基本信息表“审计报告文件”填写文件名并将文件放入材料包。"),
        Rule("M003", _F, "影像资料缺失", "{detail}，请补充服务现场照片并在影像资料表逐张登记。"),
        Rule("M004", _W, "照片缺少说明", "照片“{photo}”没有填写说明，请补充拍摄内容说明。"),
        Rule("M005", _F, "文件内容与扩展名不符", "文件“{value}”的内容是{actual}，与扩展名不符，请提供真实的{expected}文件。"),
        # M006–M010: what the photos prove (assets.evidence); warnings, the office judges them
        Rule("M006", _W, "照片拍摄时间不在服务期内", "照片“{photo}”的拍摄时间（相机记录）为 {taken}，不在{window}内，请核对是否为本项目本年度的服务现场照片。"),
        Rule("M007", _W, "照片拍摄时间与登记不符", "照片“{photo}”的拍摄时间（相机记录）为 {taken}，与影像资料表填写的拍摄日期 {typed} 相差 {days} 天，请核对。"),
        Rule("M008", _W, "照片与其他项目重复", "照片“{photo}”与{other}的照片“{other_photo}”相同或高度相似，请核对是否重复使用照片。"),
        Rule("M009", _W, "同一材料包内照片重复", "照片“{photo}”与本材料包中的照片“{other_photo}”相同或高度相似，请核对是否重复登记。"),
        Rule("M010", _W, "照片过小", "照片“{photo}”仅 {width}×{height} 像素，无法看清服务现场，请提供长边不小于 {min_side} 像素的原图。"),
        # S — sheet contents
        Rule("S001", _F, "缺少必填列", "工作表“{sheet}”缺少必填列“{column}”，请使用局发模板的表头。"),
        Rule("S002", _F, "数据格式无法识别", "“{column}”的值“{value}”无法识别为{kind}，请按{example}的格式填写。"),
        Rule("S003", _F, "必填项为空", "“{column}”为必填项，请补充填写。"),
        Rule("S004", _F, "支出科目不允许", "支出科目“{value}”{detail}，请改为允许的科目（专家咨询费、讲课费、劳务费、差旅费等）或从专项经费中剔除。"),
        Rule("S005", _F, "经费来源与项目级别不符", "经费来源“{value}”不适用于{level}项目，{level}项目只能填写{allowed}。"),
        Rule("S006", _F, "金额不合规", "金额“{value}”{detail}，请填写大于 0 且最多两位小数的金额。"),
        Rule("S007", _F, "凭证号重复", "凭证号“{value}”在本表第 {other_rows} 行重复出现，请核对是否重复报销。"),
        Rule("S008", _W, "日期不在项目年度内", "{column}“{value}”不在 {year} 年度内，请核对日期是否填错。"),
        Rule("S009", _F, "统一社会信用代码校验失败", "统一社会信用代码“{value}”{detail}，请核对后重新填写（如确属早期合法代码，请联系市人社局豁免）。"),
        Rule("S010", _W, "行政区划代码无效", "行政区划代码“{value}”不是有效的 6 位区划代码，请按 GB/T 2260 填写（上海市各区为 3101 开头）。"),
        Rule("S011", _F, "公式没有计算结果", "单元格含公式但没有计算结果，请在 Excel/WPS 中打开后保存，或直接填写数值。"),
        # R — reconciliation (money); filled by the reconciliation stage
        Rule("R001", _F, "超支", "{source}超支 {amount} 元（拨付 {granted} 元，支出 {spent} 元），请核减支出或说明资金来源。"),
        Rule("R002", _F, "支出与审计金额不符", "经费支出明细合计 {spent} 元与审计确认支出金额 {audited} 元相差 {amount} 元，请核对。"),
        Rule("R003", _F, "支出与合计行不符", "经费支出明细合计 {spent} 元与表中合计行 {declared} 元相差 {amount} 元，请核对。"),
        Rule("R004", _F, "结余未作说明", "{source}结余 {amount} 元，但结余说明表没有该来源的说明，请补充专项说明并退回结余。"),
        Rule("R005", _F, "结余说明与实际不符", "{source}{detail}，请按实际结余和退回对象更正结余说明。"),
        Rule("R006", _W, "经费有结余", "{source}结余 {amount} 元，通知要求经费应使用完毕，结余须专项说明并退回{refund_to}。"),
        Rule("R007", _W, "凭证号跨项目重复", "凭证号“{value}”同时出现在项目 {other} 的支出中，请核对是否重复报销。"),
        Rule("R008", _W, "咨询费或讲课费超标", "{detail}，超过规定标准，请核对。"),
        # T — time
        Rule("T001", _W, "逾期报送", "材料包于 {received} 收到，晚于报送截止时间 {deadline}。"),
        Rule("T002", _W, "服务团完成时间后仍有活动或支出", "{column}“{value}”晚于服务团完成时间 {deadline}，请核对。"),
        Rule("T003", _W, "未报送材料", "截至 {deadline} 未收到该项目的材料包，请尽快报送。"),
        # N — national report
        Rule("N001", _F, "国家系统报告不完整", "国家系统报告缺少必填项“{column}”，请补充后重新报送。"),
        Rule("N002", _F, "国家系统拒收", "全国专家服务基层工作信息管理系统拒收报告：{detail}"),
        Rule("N003", _W, "国家系统尚未确认", "报告已提交全国专家服务基层工作信息管理系统，尚未确认（{detail}），系统将自动重试。"),
    ]
}


SEVERITY_ZH = {"fatal": "致命", "warning": "警告"}
# A project's status in projects.csv, as the bureau and the units read it.
PROJECT_STATUS_ZH = {"accepted": "通过", "rejected": "退回", "missing": "未报送", "synced": "已报送国家系统"}


# A reconciliation row's status (reconciliation.csv), and a national filing's (the outbox).
RECONCILIATION_STATUS_ZH = {"balanced": "已平衡", "refund_due": "有结余应退回", "overspent": "超支", "unreconciled": "未对账"}
NATIONAL_STATUS_ZH = {
    "pending": "待发送", "dry_run": "已生成（未发送）", "filed": "已报送，待确认", "accepted": "已确认",
    "returned": "被退回", "refused": "被拒收", "corrected": "已被新版本更正",
}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
