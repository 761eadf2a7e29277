"""How the work is partitioned: one partition per reporting year.

A year is one run of one step per stage, whatever the number of projects: per-project partitions
would make Dagster record an event per project and stage (about 9 ms each on the SQLite instance,
minutes for a national year of thousands of projects). The stages are incremental instead: intake
keys packages by content, validation re-reads only package versions whose inputs changed (see
assets.validation), so re-running a year after a late package costs about that package.

A run may name projects in the `etl/projects` tag (comma-separated codes, as `python -m etl
backfill --project` does): those are re-validated even when nothing about them changed.
"""

from __future__ import annotations

import warnings

import dagster as dg

from adapters.registry import available_years

PROJECTS_TAG = "etl/projects"
year_partitions = dg.StaticPartitionsDefinition([str(y) for y in available_years()])
# A backfill of several years is one run too; Dagster still calls the parameter beta, which would
# otherwise be printed at every import.
single_run = dg.BackfillPolicy.single_run()
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def years_of_run(context: dg.AssetExecutionContext) -> list[int]:
    return sorted(int(key) for key in context.partition_keys)


def forced_projects(context: dg.AssetExecutionContext) -> set[str]:
    """Projects the run was asked to re-process even if unchanged (the `etl/projects` tag)."""
    return {code.strip() for code in context.run.tags.get(PROJECTS_TAG, "").split(",") if code.strip()}


def projects_tags(codes: list[str]) -> dict[str, str]:
    return {PROJECTS_TAG: ",".join(codes)} if codes else {}
