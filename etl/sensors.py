"""The inbox sensor: a new or changed package (by content hash, not name) runs its project.

Each tick lists <inbox>/<year>/ for every registered year. The cursor remembers each package's
name, size, modification time and SHA-256, so unchanged files are not hashed again and a renamed
copy of known content starts nothing. A package that names a registered project runs that
project's partition; one that names none (corrupt, unknown code) runs the year, so its finding is
recorded. The run key is the content hash: the same content never runs twice, and content a run
already took in (the nightly run, the CLI, a backfill) starts nothing.
"""

import json

import dagster as dg

from adapters.inbox import discover_packages
from adapters.registry import available_years
from adapters.resources import InboxResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from assets.intake import read_package
from assets.partitions import PROJECT, partition_key, project_partitions, range_tags
from etl.jobs import year_job


@dg.sensor(job=year_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="监视收件箱：发现新的或内容有变化的材料包后，自动处理该项目（按内容哈希，只处理一次）。")
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource, registry: RegistryResource,
                 warehouse: WarehouseResource) -> dg.SensorResult:
    cursor: dict[str, dict[str, list]] = json.loads(context.cursor or "{}")
    existing = list(context.instance.get_dynamic_partitions(PROJECT))
    to_add: list[str] = []
    requests: list[dg.RunRequest] = []
    for year in available_years(registry.path or None):
        year_registry = registry.year(year)
        seen = cursor.get(str(year), {})
        with warehouse.engine().connect() as conn:
            ingested = store.stored_versions(conn, year)  # what a run (CLI, UI, backfill) already took in
        known = {(name, size, mtime): sha for name, (size, mtime, sha) in seen.items()}
        codes = [p.code for p in year_registry.projects]
        to_add += [c for c in codes if c not in existing and c not in to_add]
        fresh: dict[str, list] = {}
        for ref in discover_packages(inbox.year_dir(year), known):
            fresh[ref.name] = [*ref.cache_key[1:], ref.sha256]
            if seen.get(ref.name, [None, None, None])[2] == ref.sha256 or (ref.name, ref.sha256) in ingested:
                continue  # same content as last time (perhaps only touched), or already processed
            project = year_registry.project(read_package(ref).declared_code)
            run_key = f"{year}:{ref.sha256}"
            if project is not None:
                context.log.info(f"{ref.name}: new content for {project.code}")
                requests.append(dg.RunRequest(run_key=run_key, partition_key=str(partition_key(project.code, year))))
            else:
                context.log.info(f"{ref.name}: names no registered project; the year runs to record why")
                requests.append(dg.RunRequest(run_key=run_key, tags=range_tags(year, codes, existing + to_add)))
        cursor[str(year)] = fresh
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[project_partitions.build_add_request(to_add)] if to_add else [],
        cursor=json.dumps(cursor, ensure_ascii=False, sort_keys=True),
    )
