"""The Dagster code location: assets, checks, jobs, the schedule, the sensors and the resources, wired in one place."""

from __future__ import annotations

import os

import dagster as dg

from adapters.national_system import TOKEN_ENV
from adapters.national_system.client import NationalSystemClient
from adapters.resources import ExportResource, FeeCapsResource, InboxResource, RegistryResource, WarehouseResource
from etl.alerts import failure_notice
from etl.jobs import ASSETS, nightly_job, year_job
from etl.schedules import nightly
from etl.sensors import inbox_sensor
from etl.waiver_jobs import after_waiver, record_waiver_job, revoke_waiver_job


def build_resources(
    *, inbox: str | None = None, exports: str | None = None, database_url: str | None = None, registry: str | None = None
) -> dict[str, dg.ConfigurableResource]:
    """Resources from explicit values (the CLI) or the environment (the UI, the daemon)."""
    return {
        "inbox": InboxResource(path=inbox or os.environ.get("ETL_INBOX", "inbox")),
        "exports": ExportResource(path=exports or os.environ.get("ETL_EXPORT_DIR", "exports")),
        "warehouse": WarehouseResource(database_url=database_url or os.environ.get("ETL_DATABASE_URL", "")),
        "registry": RegistryResource(path=registry or os.environ.get("ETL_REGISTRY_DIR", "")),
        "fee_caps": FeeCapsResource(path=os.environ.get("ETL_FEE_CAPS", "")),
        "national_system": national_system_client(),
    }


def national_system_client() -> NationalSystemClient:
    """The national system from the environment: NATIONAL_SYSTEM_URL and NATIONAL_SYSTEM_TOKEN.
    Without both (or with NATIONAL_SYSTEM_DRY_RUN=1) reports are built and queued, never sent."""
    url = os.environ.get("NATIONAL_SYSTEM_URL", "")
    has_token = bool(os.environ.get(TOKEN_ENV))
    dry_run = not (url and has_token) or os.environ.get("NATIONAL_SYSTEM_DRY_RUN", "") == "1"
    return NationalSystemClient(base_url=url, token=dg.EnvVar(TOKEN_ENV) if has_token else "", dry_run=dry_run)


def build_definitions(**resource_values: str | None) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        jobs=[year_job, nightly_job, record_waiver_job, revoke_waiver_job],
        schedules=[nightly],
        sensors=[inbox_sensor, failure_notice, after_waiver],
        resources=build_resources(**resource_values),
    )


defs = build_definitions()
