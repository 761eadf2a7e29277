"""The nightly run at 02:00 Asia/Shanghai, for every registered year. Idempotent: a second run the
same night finds nothing new to send and rewrites the same exports."""

import dagster as dg

from adapters.registry import available_years
from adapters.resources import RegistryResource
from etl.jobs import nightly_job


@dg.schedule(job=nightly_job, cron_schedule="0 2 * * *", execution_timezone="Asia/Shanghai",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="每晚 02:00（北京时间）刷新各年度的对账、截止时间检查、国家系统报送与导出文件。")
def nightly(context: dg.ScheduleEvaluationContext, registry: RegistryResource) -> list[dg.RunRequest]:
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(run_key=f"nightly-{year}-{night}", partition_key=str(year))
        for year in available_years(registry.path or None)
    ]
