"""The jobs. Launched over a range of project partitions a job is a single run (the stage assets
have a single-run backfill policy), whatever the number of projects."""

import dagster as dg

from assets.evidence import photo_evidence
from assets.exports import year_exports
from assets.indicators import service_indicators
from assets.intake import package_intake
from assets.national import national_report, national_sync
from assets.reconciliation import reconciliation
from assets.templates import unit_templates
from assets.validation import package_validation

ASSETS = [package_intake, package_validation, photo_evidence, reconciliation, service_indicators, national_report,
          national_sync, year_exports, unit_templates]

# The year's whole pipeline, for the CLI, the inbox sensor, the UI and backfills.
year_job = dg.define_asset_job(
    "year_job",
    selection=ASSETS,
    executor_def=dg.in_process_executor,
    description="年度流水线：收件 → 校验 → 照片佐证 → 对账 → 服务成效指标 → 国家系统报告与同步 → 导出。",
)

# What the night refreshes without re-reading any package: money and time rules (T003 once the
# deadline has passed), the national reports, pending filings retried and their status polled, exports.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=[reconciliation, service_indicators, national_report, national_sync, year_exports],
    executor_def=dg.in_process_executor,
    description="夜间刷新：对账与时间规则、国家系统报告、重试待发送报告并查询回执、导出文件。",
)
