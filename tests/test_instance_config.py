"""The Dagster instance files: the embedded default (dagster.yaml, SQLite under DAGSTER_HOME), the
production variant on PostgreSQL (a real year run against it) and the cluster variant (validated
against Dagster's instance schema without dagster-k8s, which this machine does not have)."""

from __future__ import annotations

import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.runs import SqliteRunStorage
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from sqlalchemy.engine import make_url

from adapters.registry import load_year
from etl.definitions import build_definitions
from etl.sample import build_sample_inbox
from tests.conftest import POSTGRES_URL

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = REPO / "deploy" / "dagster.production.yaml"
CLUSTER = REPO / "deploy" / "dagster.cluster.yaml"
YEAR = 2023


def _home(tmp_path: Path, source: Path, name: str = "dagster_home") -> Path:
    """A fresh DAGSTER_HOME holding `source` as its dagster.yaml."""
    home = tmp_path / name
    home.mkdir()
    shutil.copyfile(source, home / "dagster.yaml")
    return home


def _pg_params() -> dict:
    url = make_url(POSTGRES_URL)
    return {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres",
            "password": url.password or "", "dbname": url.database}


@contextmanager
def _connect(**overrides):
    conn = psycopg2.connect(**{**_pg_params(), **overrides})
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def dagster_pg_db(monkeypatch) -> str:
    """A database of its own for Dagster's tables (they would clash with another instance's in
    `test`), named in the DAGSTER_PG_* variables the deploy files read; dropped afterwards."""
    name = f"dagster_test_{uuid.uuid4().hex[:10]}"
    with _connect() as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    params = _pg_params()
    for key, value in {"DAGSTER_PG_HOST": params["host"], "DAGSTER_PG_PORT": str(params["port"]),
                       "DAGSTER_PG_USERNAME": params["user"], "DAGSTER_PG_PASSWORD": params["password"],
                       "DAGSTER_PG_DB": name}.items():
        monkeypatch.setenv(key, value)
    try:
        yield name
    finally:
        with _connect() as conn, conn.cursor() as cur:
            # FORCE: Dagster's connection pools may still hold a connection or two.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_repo_dagster_yaml_is_the_embedded_sqlite_default(tmp_path, monkeypatch):
    # `make ui`/`make run` point DAGSTER_HOME at .dagster_home, whose dagster.yaml is the repo's.
    assert (REPO / ".dagster_home" / "dagster.yaml").resolve() == (REPO / "dagster.yaml").resolve()
    home = _home(tmp_path, REPO / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.telemetry_enabled is False
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        # SQLite locks under concurrent writers: one run at a time.
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        assert isinstance(instance.run_storage, SqliteRunStorage)
        # Storage lands under the repo-local DAGSTER_HOME, not the working directory.
        assert list(instance.get_runs()) == []
        assert (home / "history" / "runs.db").is_file() and (home / "schedules" / "schedules.db").is_file()
        assert Path(instance.compute_log_manager._base_dir) == home / "storage"


def test_production_instance_runs_the_year_with_postgres_storage(tmp_path, monkeypatch, dagster_pg_db):
    for name in ("NATIONAL_SYSTEM_URL", "NATIONAL_SYSTEM_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # dry run: reports are queued, nothing is sent
    home = _home(tmp_path, PRODUCTION)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inbox, exports = tmp_path / "inbox", tmp_path / "exports"
    assert build_sample_inbox(YEAR, inbox)
    registry = load_year(YEAR)
    defs = build_definitions(inbox=str(inbox), exports=str(exports),
                             database_url=f"sqlite:///{tmp_path / 'warehouse.db'}")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # The file's choices, as the instance reads them.
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.telemetry_enabled is False
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 3
        assert {"key": "dagster/job_name", "value": "year_job", "limit": 1} in \
            concurrency.run_queue_config.tag_concurrency_limits
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity.value == "run"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        assert isinstance(instance.compute_log_manager, LocalComputeLogManager)
        assert Path(instance.compute_log_manager._base_dir).is_relative_to(home)

        result = defs.resolve_job_def("year_job").execute_in_process(
            instance=instance,
            partition_key=str(registry.year),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        assert result.success
        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [result.run_id]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        latest = instance.get_latest_materialization_event(dg.AssetKey("year_exports"))
        assert latest is not None and latest.run_id == result.run_id
        assert instance.get_materialized_partitions(dg.AssetKey("reconciliation")) == {str(registry.year)}
        # national_sync's pool took the default limit: one national-system session at a time.
        pool = instance.event_log_storage.get_concurrency_info("national_system")
        assert (pool.limit, pool.using_default_limit) == (1, True)

    assert (exports / str(YEAR) / "projects.csv").is_file()
    # And it is PostgreSQL that holds them: read Dagster's own tables in the database given.
    with _connect(dbname=dagster_pg_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s "
                    "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (result.run_id,))
        materialized = {dg.AssetKey.from_db_string(row[0]).to_user_string() for row in cur.fetchall()}
        assert {"package_intake", "package_validation", "reconciliation", "year_exports"} <= materialized
        # The sample has units with fatal findings: validation's check fails, the run does not.
        cur.execute("SELECT execution_status FROM asset_check_executions WHERE run_id = %s "
                    "AND check_name = 'no_fatal_findings'", (result.run_id,))
        assert ("FAILED",) in cur.fetchall()


def test_cluster_file_validates_against_the_instance_schema():
    config, custom_instance_class = dagster_instance_config(str(CLUSTER.parent), config_filename=CLUSTER.name)
    # Validated by Dagster's own schema, without importing the launcher (dagster-k8s is not here).
    assert "dagster_k8s" not in sys.modules
    assert custom_instance_class is None
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    k8s = launcher["config"]
    assert k8s["job_namespace"] and k8s["instance_config_map"] and k8s["service_account_name"]
    assert k8s["env_secrets"] == ["expert-etl-secrets"]  # NATIONAL_SYSTEM_TOKEN, ETL_DATABASE_URL
    assert k8s["postgres_password_secret"]
    # The same PostgreSQL storage and concurrency rules as the one-machine production file.
    production, _ = dagster_instance_config(str(PRODUCTION.parent), config_filename=PRODUCTION.name)
    assert config["storage"] == production["storage"]
    assert config["concurrency"]["pools"] == production["concurrency"]["pools"]
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == \
        production["concurrency"]["runs"]["tag_concurrency_limits"]


@pytest.mark.parametrize("breakage", [
    lambda doc: doc["storage"]["postgres"]["postgres_db"].update(hostnme="x"),  # unknown key
    lambda doc: doc["storage"]["postgres"]["postgres_db"].pop("hostname"),       # required
    lambda doc: doc["run_launcher"].pop("class"),
    lambda doc: doc["concurrency"]["pools"].update(granularity="job"),
    lambda doc: doc.update(run_retries={"enabled": "sometimes"}),
])
def test_instance_schema_check_is_real(tmp_path, breakage):
    """The same check rejects a broken copy of the cluster file: the test above can fail."""
    doc = yaml.safe_load(CLUSTER.read_text(encoding="utf-8"))
    breakage(doc)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


def test_cluster_file_without_its_launcher_is_a_working_postgres_instance(tmp_path, monkeypatch, dagster_pg_db):
    """Everything but the launcher (which needs a cluster) is built for real against PostgreSQL."""
    doc = yaml.safe_load(CLUSTER.read_text(encoding="utf-8"))
    doc.pop("run_launcher")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert list(instance.get_runs()) == []
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 10
        assert instance.run_monitoring_enabled and instance.run_retries_max_retries == 2
    with _connect(dbname=dagster_pg_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('runs', 'event_logs')")
        assert cur.fetchone() == (2,)
