"""A local stand-in for Huawei Cloud CCE, IAM and the ECS metadata service.

Part of the product (``cce-upgrade-watcher simulate`` and ``demo``), and the fake cloud
the tests run against. Scenarios are data files (config/scenarios); see server.py for the
HTTP side and state.py for how a scenario's timeline plays.
"""

from __future__ import annotations

from watcher.simulator.account import DEFAULT_ACCOUNT, Account
from watcher.simulator.server import Simulator, start_simulator

__all__ = ["DEFAULT_ACCOUNT", "Account", "Simulator", "start_simulator"]
