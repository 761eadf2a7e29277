"""Telling the operator, in Chinese, what failed when a run fails."""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from adapters.resources import ExportResource

FAILURES_LOG = "运行失败记录.txt"


def failure_message(job_name: str, run_id: str, failed_steps: list[str], error: str) -> str:
    steps = "、".join(failed_steps) or "（未知步骤）"
    return (f"流水线 {job_name} 的运行 {run_id[:8]} 失败：步骤 {steps} 出错。错误摘要：{error or '无'}。"
            "材料包本身的问题不会导致运行失败，请在 Dagster 界面打开该运行查看日志，排除故障后重新运行或补跑。")


@dg.run_failure_sensor(description="运行失败时，用中文记录失败的步骤和原因，供专技处值班人员查看。",
                       default_status=dg.DefaultSensorStatus.RUNNING)
def failure_notice(context: dg.RunFailureSensorContext, exports: ExportResource) -> None:
    failed = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    error = context.failure_event.message or ""
    message = failure_message(context.dagster_run.job_name, context.dagster_run.run_id, failed, error)
    context.log.error(message)
    log = Path(exports.path) / FAILURES_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {message}\n")
