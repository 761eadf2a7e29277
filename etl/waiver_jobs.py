"""Waivers from the Dagster UI: two jobs an operator launches from the Launchpad with run config
(record, revoke), so no shell is needed, and a sensor that then re-evaluates that project alone.

The follow-up is an ordinary nightly_job run of the year, tagged with the project (`etl/projects`):
a waiver changes only that project's reconciliation key, so reconciliation, its national report and
its feedback file are redone and nothing else; no package is read again.
"""

from datetime import date

import dagster as dg

from adapters.resources import RegistryResource, WarehouseResource
from adapters.warehouse import store
from assets.partitions import projects_tags
from assets.waivers import WaiverError, WaiverRequest, record_waiver, revoke_waiver
from etl.jobs import nightly_job


class WaiverConfig(dg.Config):
    """豁免一个项目的问题：规则必填；材料包、工作表、行号可选（不填材料包即适用于该项目当前在用的材料包）。"""

    year: int
    project: str
    rule: str
    by: str
    reason: str
    package: str = ""
    sheet: str = ""
    row: int | None = None
    until: str = ""  # YYYY-MM-DD, the last day it holds (Asia/Shanghai); empty: no end


class RevokeConfig(dg.Config):
    """撤销一条豁免（按编号；豁免记录保留，标记为已撤销）。"""

    waiver_id: int
    by: str
    reason: str


@dg.op(description="登记豁免：写入仓库（只追加，不修改已有记录），随后自动重新评估该项目。")
def record_waiver_op(context: dg.OpExecutionContext, config: WaiverConfig, warehouse: WarehouseResource,
                     registry: RegistryResource) -> None:
    request = WaiverRequest(year=config.year, project=config.project, rule=config.rule, by=config.by,
                            reason=config.reason, package=config.package, sheet=config.sheet, row=config.row,
                            until=date.fromisoformat(config.until) if config.until else None)
    try:
        waiver_id, new = record_waiver(warehouse.engine(), registry.year(config.year), request)
    except WaiverError as error:
        raise dg.Failure(description=str(error)) from error
    context.log.info(f"waiver {waiver_id} {'recorded' if new else 'already recorded'}")


@dg.op(description="撤销豁免：追加一条撤销记录，随后自动重新评估该项目。")
def revoke_waiver_op(context: dg.OpExecutionContext, config: RevokeConfig, warehouse: WarehouseResource) -> None:
    try:
        waiver = revoke_waiver(warehouse.engine(), config.waiver_id, config.by, config.reason)
    except WaiverError as error:
        raise dg.Failure(description=str(error)) from error
    context.log.info(f"waiver {waiver.id} of {waiver.year} {waiver.project_code} revoked")


@dg.job(description="登记豁免（Launchpad 填写年度、项目编号、规则、豁免人、理由，可选材料包/工作表/行/有效期）。")
def record_waiver_job():
    record_waiver_op()


@dg.job(description="撤销豁免（Launchpad 填写豁免编号、撤销人、理由）。")
def revoke_waiver_job():
    revoke_waiver_op()


def _waived_project(run: dg.DagsterRun, warehouse: WarehouseResource) -> tuple[int, str] | None:
    """(year, project) the run recorded or revoked a waiver of."""
    ops = run.run_config.get("ops", {})
    if "record_waiver_op" in ops:
        config = ops["record_waiver_op"]["config"]
        return config["year"], config["project"]
    waiver_id = ops.get("revoke_waiver_op", {}).get("config", {}).get("waiver_id")
    with warehouse.engine().connect() as conn:
        found = store.waivers(conn, waiver_id=waiver_id) if waiver_id is not None else []
    return (found[0].year, found[0].project_code) if found else None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[record_waiver_job, revoke_waiver_job],
    request_job=nightly_job, default_status=dg.DefaultSensorStatus.RUNNING,
    description="豁免登记或撤销后，只对该项目重新对账、生成国家系统报告并更新导出文件。")
def after_waiver(context: dg.RunStatusSensorContext, warehouse: WarehouseResource,
                 registry: RegistryResource) -> dg.RunRequest | dg.SkipReason:
    found = _waived_project(context.dagster_run, warehouse)
    if found is None:
        return dg.SkipReason("no waiver found for this run")
    year, code = found
    project = registry.year(year).project(code)
    return dg.RunRequest(run_key=context.dagster_run.run_id, partition_key=str(year),
                         tags=projects_tags([project.code if project else code]))
