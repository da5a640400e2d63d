"""The Containerfile agrees with the repository and the CLI, and its entry command runs clean.

No container engine is needed: the instructions are parsed and checked against the code, and
the slow test rebuilds the image's virtual environment (same COPY sources, `pip install .`)
in tmp_path and runs the entry command with nowhere writable but /tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import click
import pytest

from watcher import cli, healthcheck
from watcher.config import schema

REPO = Path(__file__).resolve().parents[2]
CONTAINER_DIR = REPO / "deploy" / "container"
CONTAINERFILE = CONTAINER_DIR / "Containerfile"
IGNOREFILE = CONTAINER_DIR / "Containerfile.dockerignore"

Instruction = tuple[str, str]


def _instructions() -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "dangling line continuation"
    return found


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _all(keyword: str, stage: list[Instruction] | None = None) -> list[str]:
    return [args for kw, args in (stage or _instructions()) if kw == keyword]


def _final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _all("ENV", _stages()[-1]):
        for pair in args.split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def _copy_sources(stage: list[Instruction]) -> list[str]:
    sources: list[str] = []
    for args in _all("COPY", stage):
        words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _registered(name: str) -> bool:
    return isinstance(cli.cli, click.Group) and name in cli.cli.commands


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_dockerfile_is_the_containerfile() -> None:
    assert (CONTAINER_DIR / "Dockerfile").resolve() == CONTAINERFILE.resolve()
    assert (CONTAINER_DIR / "Dockerfile.dockerignore").resolve() == IGNOREFILE.resolve()


def test_two_stages_on_python_311_slim() -> None:
    (arg,) = _all("ARG")
    assert arg == "PYTHON_IMAGE=python:3.11-slim"
    assert [args.split()[0] for args in _all("FROM")] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    build = _stages()[0]
    assert any("pip install ." in args for args in _all("RUN", build))


def test_copy_sources_exist_and_pass_the_ignore_file() -> None:
    allowed = {
        line[1:].strip("/") for line in IGNOREFILE.read_text().splitlines() if line.startswith("!")
    }
    sources = [src for stage in _stages() for src in _copy_sources(stage)]
    assert sources, "no COPY found"
    for src in sources:
        assert (REPO / src).exists(), f"COPY source {src} is missing from the repository"
        assert Path(src).parts[0] in allowed, f"{src} is excluded from the build context"


def test_entrypoint_and_cmd_name_real_commands() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = _all("ENTRYPOINT")
    (cmd,) = _all("CMD")
    assert _exec_form(entrypoint) == ["cce-upgrade-watcher"]
    assert "cce-upgrade-watcher" in scripts
    assert _exec_form(cmd) == ["run"]
    assert _registered("run"), "watcher/cli.py does not register the `run` command yet"


def test_healthcheck_runs_the_healthcheck_command() -> None:
    (args,) = _all("HEALTHCHECK")
    _, _, command = args.partition(" CMD ")
    assert _exec_form(command) == ["cce-upgrade-watcher", "healthcheck"]
    assert _registered("healthcheck"), (
        "watcher/cli.py must register it: cli.add_command(healthcheck.healthcheck)"
    )
    assert cli.cli.commands["healthcheck"] is healthcheck.healthcheck


def test_runtime_user_volume_port_and_environment() -> None:
    final = _stages()[-1]
    env = _final_env()
    (user,) = _all("USER", final)
    assert user.split(":")[0] == "10001"
    assert _all("VOLUME", final) == [json.dumps([env["WATCHER_STATE_DIR"]])]
    assert env["WATCHER_STATE_DIR"] == "/var/lib/cce-upgrade-watcher"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["WATCHER_SCENARIO_DIR"] == "/usr/share/cce-upgrade-watcher/scenarios"
    default_port = schema.HttpSettings().port
    assert _all("EXPOSE", final) == [str(default_port)]
    assert env["WATCHER_HTTP__LISTEN"] == f"0.0.0.0:{default_port}"
    # The HEALTHCHECK's default URL, derived from the same variable, reaches the daemon.
    assert healthcheck.default_url(env["WATCHER_HTTP__LISTEN"]) == healthcheck.DEFAULT_URL
    copies = dict(
        src_dst.split()[-2:] for src_dst in _all("COPY", final) if "--from" not in src_dst
    )
    assert copies["config/scenarios/"].rstrip("/") == env["WATCHER_SCENARIO_DIR"]
    assert copies["config/"].rstrip("/") == "/etc/cce-upgrade-watcher"


def test_image_environment_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the image sets are the names the config loader and simulator read."""
    env = _final_env()
    for name in ("WATCHER_STATE_DIR", "WATCHER_HTTP__LISTEN", "WATCHER_SCENARIO_DIR"):
        monkeypatch.setenv(name, env[name])
    settings = schema.Settings()
    assert settings.state_dir == Path(env["WATCHER_STATE_DIR"])
    assert settings.http.listen == env["WATCHER_HTTP__LISTEN"]
    from watcher.simulator import scenario

    assert Path(env["WATCHER_SCENARIO_DIR"]) in scenario.scenario_dirs()


@pytest.mark.slow
def test_entry_command_runs_in_a_clean_venv_without_writing(tmp_path: Path) -> None:
    """Rebuild the image's venv from its COPY sources; run the CLI with a read-only HOME/state."""
    src = tmp_path / "src"
    src.mkdir()
    for item in _copy_sources(_stages()[0]):  # exactly what the build stage copies
        origin = REPO / item
        if origin.is_dir():
            shutil.copytree(origin, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / item)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    # Dependencies come from the project's environment (no download); the package itself is
    # built from the copied sources like `pip install .` in the image.
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    (purelib / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", str(src)],
        check=True,
        timeout=100,
        capture_output=True,
    )

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(readonly),
        "WATCHER_STATE_DIR": str(readonly),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    command = str(venv / "bin" / "cce-upgrade-watcher")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, *args],
            cwd=readonly,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    top = run("--help")
    assert top.returncode == 0, top.stderr
    assert "healthcheck" in top.stdout, "the healthcheck command is not registered in the CLI"
    help_ = run("healthcheck", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "--url" in help_.stdout
    down = run("healthcheck", "--url", f"http://127.0.0.1:{_closed_port()}/healthz")
    assert down.returncode == 1 and down.stdout.startswith("unhealthy: ")
    assert list(readonly.iterdir()) == []
    assert not list(src.rglob("__pycache__")), "bytecode was written next to the sources"
