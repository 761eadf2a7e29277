"""The national system (全国专家服务基层工作信息管理系统): its contract (openapi.yaml), the HTTP client
(client.py), the warehouse outbox that makes delivery exactly-once (outbox.py), and a mock server
speaking the same contract (mock_server.py). When the real interface becomes known, only this
package changes.

The client's names are re-exported lazily, so the mock server (stdlib + PyYAML) starts without
importing Dagster.
"""

from __future__ import annotations

import importlib
from typing import Any

TOKEN_ENV = "NATIONAL_SYSTEM_TOKEN"
_CLIENT_NAMES = ("NationalSystemClient", "NationalSystemError", "Receipt", "Refused", "Unauthorized", "Unavailable")
__all__ = ["TOKEN_ENV", *_CLIENT_NAMES]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        return getattr(importlib.import_module("adapters.national_system.client"), name)
    raise AttributeError(name)
