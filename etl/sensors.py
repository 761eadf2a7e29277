"""The inbox sensor: new or changed packages (by content hash, not name) run their year.

Each tick lists <inbox>/<year>/ for every registered year. The cursor remembers each package's
name, size, modification time and SHA-256, so unchanged files are not hashed again and a renamed
copy of known content starts nothing. New content runs the year's partition once, whatever the
number of packages that arrived: the run is incremental (intake keys by content, validation re-reads
only what changed), so it costs about the new packages. The run key is made of the content hashes:
the same content never runs twice, and content a run already took in (the nightly run, the CLI, a
backfill) starts nothing.
"""

import hashlib
import json

import dagster as dg

from adapters.inbox import discover_packages
from adapters.registry import available_years
from adapters.resources import InboxResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from etl.jobs import year_job


@dg.sensor(job=year_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="监视收件箱：发现新的或内容有变化的材料包后，自动处理该年度（按内容哈希，同一内容只处理一次）。")
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource, registry: RegistryResource,
                 warehouse: WarehouseResource) -> dg.SensorResult:
    cursor: dict[str, dict[str, list]] = json.loads(context.cursor or "{}")
    requests: list[dg.RunRequest] = []
    for year in available_years(registry.path or None):
        seen = cursor.get(str(year), {})
        with warehouse.engine().connect() as conn:
            ingested = store.stored_versions(conn, year)  # what a run (CLI, UI, backfill) already took in
        known = {(name, size, mtime): sha for name, (size, mtime, sha) in seen.items()}
        fresh: dict[str, list] = {}
        new: list[str] = []
        for ref in discover_packages(inbox.year_dir(year), known):
            fresh[ref.name] = [*ref.cache_key[1:], ref.sha256]
            if seen.get(ref.name, [None, None, None])[2] == ref.sha256 or (ref.name, ref.sha256) in ingested:
                continue  # same content as last time (perhaps only touched), or already processed
            context.log.info(f"{year}/{ref.name}: new content")
            new.append(f"{ref.name}:{ref.sha256}")
        if new:
            digest = hashlib.sha256("\n".join(sorted(new)).encode()).hexdigest()[:16]
            requests.append(dg.RunRequest(run_key=f"{year}:{digest}", partition_key=str(year),
                                          tags={"etl/new_packages": str(len(new))}))
        cursor[str(year)] = fresh
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, ensure_ascii=False, sort_keys=True))
