"""How the work is partitioned: per project and reporting year.

Projects are a dynamic dimension (the registry of each year adds its codes; earlier batches that
still report keep theirs), years a static one from the registry files. Stage assets take a
single-run backfill policy, so a whole year (thousands of projects) is one run, not thousands.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import dagster as dg

from adapters.registry import YearRegistry, available_years

PROJECT = "project"
YEAR = "year"
project_partitions = dg.DynamicPartitionsDefinition(name=PROJECT)
year_partitions = dg.StaticPartitionsDefinition([str(y) for y in available_years()])
project_year = dg.MultiPartitionsDefinition({PROJECT: project_partitions, YEAR: year_partitions})
single_run = dg.BackfillPolicy.single_run()
# Single-run backfills are what make a national-scale year one run; Dagster still calls the
# parameter beta, which would otherwise be printed at every import.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"


def partition_key(code: str, year: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({PROJECT: code, YEAR: str(year)})


def year_range_tags(registry: YearRegistry, instance: dg.DagsterInstance) -> dict[str, str]:
    """Run tags selecting every registered project of the year: the year's job as one run.

    Registers the year's projects as partitions first. A range follows the dynamic partitions'
    order (the order they were added), so it spans from the first to the last of the year's codes
    in that order; codes of other years caught in between have nothing to do for this year."""
    codes = [p.code for p in registry.projects]
    instance.add_dynamic_partitions(PROJECT, codes)
    return range_tags(registry.year, codes, list(instance.get_dynamic_partitions(PROJECT)))


def range_tags(year: int, codes: list[str], partition_order: list[str]) -> dict[str, str]:
    """Tags of a run over `codes` of a year, given the project partitions in the order they exist."""
    order = {key: i for i, key in enumerate(partition_order)}
    first, last = min(codes, key=order.__getitem__), max(codes, key=order.__getitem__)
    return {_RANGE_START: str(partition_key(first, year)), _RANGE_END: str(partition_key(last, year))}


def projects_by_year(context: dg.AssetExecutionContext) -> dict[int, list[str]]:
    """The run's partitions grouped by year: {2023: ['2023-GT-01', …]}."""
    grouped: dict[int, list[str]] = defaultdict(list)
    for key in context.partition_keys:
        dims = project_year.get_partition_key_from_str(key).keys_by_dimension
        grouped[int(dims[YEAR])].append(dims[PROJECT])
    return dict(grouped)


def years_of_run(context: dg.AssetExecutionContext) -> list[int]:
    """Years an unpartitioned, year-level asset should refresh: those of the run's partitions,
    or every registered year when it is materialised on its own."""
    tags = context.run.tags
    keys = [tags.get("dagster/partition", ""), tags.get(_RANGE_START, ""), tags.get(_RANGE_END, "")]
    years = sorted({int(k.rsplit("|", 1)[1]) for k in keys if "|" in k})
    return years or available_years()
