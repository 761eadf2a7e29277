"""What a unit hears when reading its package hit a worker's limit (P008): which limit, in Chinese."""

from adapters.workers import WorkerFailure
from schemas.findings import Finding, make_finding


def limit_finding(failure: WorkerFailure) -> Finding:
    if failure.limit == "memory":
        limit = f"读取时内存超过 {failure.bound:g} MB 上限"
    elif failure.limit == "time":
        limit = f"读取时间超过 {failure.bound:g} 秒上限"
    else:
        limit = "读取程序异常终止"
    return make_finding("P008", limit=limit)
