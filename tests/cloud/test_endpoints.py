"""Region to endpoint mapping, the Europe exception, and overrides."""

from __future__ import annotations

import pytest

from watcher.core.errors import ConfigError
from watcher.core.regions import cce_endpoint, iam_endpoint


@pytest.mark.parametrize(
    ("region", "cce", "iam"),
    [
        (
            "ap-southeast-1",
            "https://cce.ap-southeast-1.myhuaweicloud.com",
            "https://iam.ap-southeast-1.myhuaweicloud.com",
        ),
        (
            "cn-north-4",
            "https://cce.cn-north-4.myhuaweicloud.com",
            "https://iam.cn-north-4.myhuaweicloud.com",
        ),
        (
            "eu-west-101",
            "https://cce.eu-west-101.myhuaweicloud.eu",
            "https://iam.eu-west-101.myhuaweicloud.eu",
        ),
        (
            "eu-west-0",
            "https://cce.eu-west-0.myhuaweicloud.com",
            "https://iam.eu-west-0.myhuaweicloud.com",
        ),
    ],
)
def test_region_endpoints(region: str, cce: str, iam: str) -> None:
    assert cce_endpoint(region) == cce
    assert iam_endpoint(region) == iam


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://cce.eu-de.otc.t-systems.com", "https://cce.eu-de.otc.t-systems.com"),
        (" https://proxy.example/cce/ ", "https://proxy.example/cce"),
    ],
)
def test_override_wins(override: str, expected: str) -> None:
    assert cce_endpoint("eu-west-101", override) == expected
    assert iam_endpoint("whatever", override) == expected


@pytest.mark.parametrize(
    "override", ["ftp://x", "cce.example.com", "https://x/?a=1", "https://u:hunter2@x"]
)
def test_bad_override(override: str) -> None:
    with pytest.raises(ConfigError) as info:
        cce_endpoint("ap-southeast-1", override)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("region", ["", "AP-SOUTHEAST-1", "ap_southeast_1", "x", "a/b"])
def test_bad_region(region: str) -> None:
    with pytest.raises(ConfigError):
        cce_endpoint(region)
