"""What Heroku and a container platform read: the lock, the Python version, app.json, the Procfile, the Dockerfile."""
from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
APP_JSON = json.loads((ROOT / "app.json").read_text())


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def lock_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def pins() -> dict[str, str]:
    pinned = {}
    for line in lock_lines():
        if line == ".":
            continue
        name, _, version = line.partition("==")
        pinned[canonicalize_name(name)] = version
    return pinned


def procfile() -> dict[str, str]:
    entries = (line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    return {name.strip(): command.strip() for name, command in entries}


def test_the_lock_pins_every_line_and_installs_the_gate_last():
    lines = lock_lines()
    assert lines[-1] == ".", "the buildpack must install the gate itself (its `gateway` command) from the lock"
    unpinned = [line for line in lines[:-1] if not re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", line)]
    assert unpinned == [], "requirements.txt must pin every package with ==, and carry no index URLs"


@pytest.mark.parametrize("requirement", runtime_dependencies(), ids=str)
def test_every_runtime_dependency_is_pinned_within_its_range(requirement):
    pinned = pins()
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{requirement} is in pyproject.toml but not in requirements.txt: regenerate the lock"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f"requirements.txt pins {name}=={pinned[name]}, outside pyproject's {requirement.specifier}: regenerate the lock")
    for extra in requirement.extras:  # psycopg[binary] needs psycopg-binary in the lock as well
        for needed in map(Requirement, metadata.requires(requirement.name) or []):
            if needed.marker and needed.marker.evaluate({"extra": extra}) and not needed.marker.evaluate({"extra": ""}):
                assert canonicalize_name(needed.name) in pinned, f"{requirement} needs {needed.name} in the lock"


def test_python_version_is_3_11_as_pyproject_requires():
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


def test_app_json_formation_runs_processes_of_the_procfile():
    processes = procfile()
    assert set(APP_JSON["formation"]) == {"web", "worker"}
    assert set(APP_JSON["formation"]) <= set(processes)
    assert processes["release"] == "gateway migrate"
    assert processes["web"] == "gunicorn app:app"
    assert processes["worker"] == "gateway worker"


def test_app_json_adds_postgres_and_redis_and_generates_the_secret_key():
    plans = {addon["plan"].split(":")[0] for addon in APP_JSON["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}
    assert APP_JSON["env"]["SECRET_KEY"]["generator"] == "secret"
    for name in ("MARKETO_BASE_URL", "MARKETO_CLIENT_ID", "MARKETO_CLIENT_SECRET"):
        assert APP_JSON["env"][name]["required"] is True


def readme_config_table() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| variable | meaning | default |"):]
    rows = [line for line in table.splitlines()[2:]]
    rows = rows[:next(i for i, line in enumerate(rows) if not line.startswith("|"))]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


@pytest.mark.parametrize("name", sorted(APP_JSON["env"]))
def test_every_app_json_variable_is_read_by_the_gate_and_documented(name):
    assert APP_JSON["env"][name]["description"]
    assert f'"{name}"' in (ROOT / "gateway" / "config.py").read_text(), f"gateway/config.py never reads {name}"
    assert name in readme_config_table(), f"{name} is not in the README's configuration table"


def test_the_image_runs_as_a_user_and_installs_the_lock():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the container must not run as root"
    assert any("pip install -r requirements.txt" in line for line in lines)
    assert lines[-1] == 'CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]'
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "instance" in ignored
