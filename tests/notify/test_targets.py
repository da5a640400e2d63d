"""NotifyUrl building: inline URLs, apprise YAML/TEXT files, keys, flavors, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.core.errors import ConfigError
from watcher.notify import targets

MAIL = "mailto://127.0.0.1:2525?from=watcher@example.com&to=ops@example.com"


class TestInline:
    def test_named_url_uses_the_name_as_key(self) -> None:
        url = targets.parse_url("json://127.0.0.1:8080/hook", name="ops", tags=["OnCall"])
        assert url.key == "ops"
        assert url.tags == frozenset({"oncall"})
        assert url.flavor == "chat"

    def test_unnamed_url_gets_a_stable_hash_key_not_the_url(self) -> None:
        a = targets.parse_url("json://127.0.0.1:8080/secret-path")
        b = targets.parse_url("json://127.0.0.1:8080/secret-path")
        assert a.key == b.key and a.key.startswith("url-")
        assert "secret" not in a.key and "127.0.0.1" not in a.key

    @pytest.mark.parametrize(
        ("url", "flavor"),
        [
            (MAIL, "email"),
            (MAIL.replace("mailto", "mailtos"), "email"),
            ("json://localhost/x", "chat"),
            ("console://", "chat"),
        ],
    )
    def test_flavor_is_derived_from_the_scheme(self, url: str, flavor: str) -> None:
        assert targets.parse_url(url).flavor == flavor

    def test_flavor_can_be_forced(self) -> None:
        assert targets.parse_url("json://localhost/x", flavor="email").flavor == "email"

    def test_url_is_not_in_repr_and_display_is_masked(self) -> None:
        url = targets.parse_url(
            "json://bot:hunter2pass@localhost/x?+X-Api-Key=KEYSECRET&:token=TOKSECRET"
        )
        for text in (repr(url), url.display, str(url)):
            assert "hunter2pass" not in text
            assert "KEYSECRET" not in text
            assert "TOKSECRET" not in text
        assert url.display.startswith("json://bot:")
        assert "hunter2pass" in url.url

    def test_plugin_masked_tokens_count_as_secrets(self) -> None:
        token = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"
        url = targets.parse_url(f"tgram://{token}/12345")
        assert token not in url.display
        assert url.redact(f"failed for {token}") == "failed for ****"


class TestBuildUrls:
    @pytest.mark.parametrize(
        ("url", "token"),
        [
            ("json://127.0.0.1:8080/hook/AbCdEf0123456789", "AbCdEf0123456789"),
            ("https://hooks.slack.com/services/T01ABC/B02DEF/XyZ0123456789abc", "XyZ0123456789abc"),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0123abcd-4567",
                "0123abcd-4567",
            ),
        ],
    )
    def test_path_tokens_are_secret_but_plain_words_and_hosts_are_not(
        self, url: str, token: str
    ) -> None:
        parsed = targets.parse_url(url)
        assert token in parsed.secrets
        assert token not in parsed.display
        assert not parsed.secrets & {"send", "services", "hook", "cgi-bin", "webhook"}
        assert not parsed.secrets & {"hooks.slack.com", "qyapi.weixin.qq.com", "127.0.0.1:8080"}
        assert parsed.redact(f"failed sending to {url}").startswith("failed sending to ")

    def test_strings_and_tables(self) -> None:
        urls = targets.build_urls(
            [
                "json://localhost/a",
                {"url": MAIL, "name": "mail", "tags": "ops, dev"},
                {"url": "json://localhost/b", "name": "b", "tags": ["x"], "flavor": "email"},
            ]
        )
        assert [u.key for u in urls][1:] == ["mail", "b"]
        assert urls[1].tags == frozenset({"ops", "dev"}) and urls[1].flavor == "email"
        assert urls[2].flavor == "email"

    def test_every_problem_is_reported_by_position_without_the_url(self) -> None:
        with pytest.raises(ConfigError) as info:
            targets.build_urls(
                [
                    "nosuchscheme://very-secret-token",
                    {"url": "msteams://secretA/secretB/secretC", "name": "teams"},
                    {"url": "json://localhost/a", "config": "x.yml"},
                    {"url": "json://localhost/a", "name": "bad name!"},
                    {"url": "json://localhost/a", "colour": "red"},
                ]
            )
        problems = info.value.problems
        assert problems[0].startswith("notify.urls[0]: apprise cannot parse")
        assert problems[1].startswith("notify.urls[1] (name 'teams'): apprise cannot parse")
        assert any(p.startswith("notify.urls[2]: give exactly one") for p in problems)
        assert any(p.startswith("notify.urls[3].name") for p in problems)
        assert any("unknown keys colour" in p for p in problems)
        assert "secret" not in str(info.value)

    def test_send_timeout_per_entry_with_a_default(self, tmp_path: Path) -> None:
        path = tmp_path / "apprise.yml"
        path.write_text("urls:\n  - json://localhost/c\n")
        urls = targets.build_urls(
            [
                "json://localhost/a",
                {"url": "json://localhost/b", "send_timeout_s": 75},
                {"config": str(path), "send_timeout_s": 5},
            ],
            send_timeout_s=45.0,
        )
        assert [u.send_timeout_s for u in urls] == [45.0, 75.0, 5.0]
        assert targets.parse_url("json://localhost/d").send_timeout_s == 30.0

    @pytest.mark.parametrize("bad", [0, -3, True, "30", 1e9])
    def test_a_bad_send_timeout_is_a_config_error(self, bad: object) -> None:
        with pytest.raises(ConfigError, match=r"notify.urls\[0\].send_timeout_s"):
            targets.build_urls([{"url": "json://localhost/a", "send_timeout_s": bad}])

    def test_duplicate_urls_are_rejected(self) -> None:
        with pytest.raises(ConfigError, match="used 2 times"):
            targets.build_urls(["json://localhost/a", "json://localhost/a"])


class TestConfigFiles:
    def test_yaml_expands_each_service_with_its_tags(self, tmp_path: Path) -> None:
        path = tmp_path / "apprise.yml"
        path.write_text(
            "version: 1\n"
            "tag: team\n"
            "urls:\n"
            "  - json://127.0.0.1:9/a:\n"
            "      - tag: ops, dev\n"
            "      - tag: chat\n"
            f"  - {MAIL}:\n"
            "      - tag: mail\n"
        )
        urls = targets.build_urls([{"config": "apprise.yml", "name": "team"}], base_dir=tmp_path)
        assert len(urls) == 3
        assert [u.tags for u in urls] == [
            frozenset({"team", "ops", "dev"}),
            frozenset({"team", "chat"}),
            frozenset({"team", "mail"}),
        ]
        assert [u.flavor for u in urls] == ["chat", "chat", "email"]
        assert all(u.key.startswith("team.") for u in urls)
        assert len({u.key for u in urls}) == 3

    def test_text_config_with_tags(self, tmp_path: Path) -> None:
        path = tmp_path / "apprise.txt"
        path.write_text("# comment\nops,oncall=json://127.0.0.1:9/a\nconsole://\n")
        urls = targets.load_config_file(path, tags=["extra"])
        assert [u.tags for u in urls] == [
            frozenset({"ops", "oncall", "extra"}),
            frozenset({"extra"}),
        ]

    def test_yaml_include_works(self, tmp_path: Path) -> None:
        (tmp_path / "child.yml").write_text("urls:\n  - json://127.0.0.1:9/child:\n      tag: c\n")
        (tmp_path / "main.yml").write_text(
            "include:\n  - child.yml\nurls:\n  - json://127.0.0.1:9/main\n"
        )
        urls = targets.load_config_file(tmp_path / "main.yml")
        assert sorted(u.url.split("?")[0] for u in urls) == [
            "json://127.0.0.1:9/child",
            "json://127.0.0.1:9/main",
        ]

    def test_missing_or_empty_file_is_a_config_error(self, tmp_path: Path) -> None:
        (tmp_path / "empty.yml").write_text("version: 1\nurls: []\n")
        with pytest.raises(ConfigError) as info:
            targets.build_urls(
                [{"config": "missing.yml"}, {"config": "empty.yml"}], base_dir=tmp_path
            )
        assert "does not exist" in info.value.problems[0]
        assert "no usable notification URL" in info.value.problems[1]

    def test_remote_config_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="only local"):
            targets.load_config_file("https://example.com/apprise.yml")
