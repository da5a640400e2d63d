"""The simulated tenant: who may log in, which keys sign, which project and region exist.

Plain constants, no I/O, so the daemon's ``demo`` command and the tests can import the
default account without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Account:
    """Credentials and identifiers the simulator accepts (one project in one region)."""

    region: str
    project_id: str
    access_key: str
    secret_key: str
    user: str
    password: str
    domain: str
    domain_id: str = "d0000000000000000000000000000001"
    user_id: str = "u0000000000000000000000000000001"
    token_ttl: float = 24 * 3600.0  # real seconds an IAM token stays valid (IAM: 24 h)
    temporary_ttl: float = 24 * 3600.0  # real seconds metadata credentials stay valid

    @property
    def project_name(self) -> str:
        # Huawei names a region's default project after the region.
        return self.region


DEFAULT_ACCOUNT = Account(
    region="ap-southeast-1",
    project_id="0123456789abcdef0123456789abcdef",
    access_key="SIMULATORAK0000000001",
    secret_key="simulator-secret-key-0123456789abcdef",  # noqa: S106 - a public test credential
    user="sim-user",
    password="sim-password",  # noqa: S106 - a public test credential
    domain="sim-domain",
)
