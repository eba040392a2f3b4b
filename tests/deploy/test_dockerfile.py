"""deploy/Dockerfile, read as text: no Docker engine is needed to catch the mistakes that matter.

Multi-stage with a slim runtime, the lock file honoured, an unprivileged user, a health check,
SIGTERM, ``erp-relay serve``; and every path it copies from the build context exists and is not
excluded by deploy/Dockerfile.dockerignore (a build that cannot start is found here, not in a
release pipeline).
"""

from __future__ import annotations

import re
import tomllib

import pytest

from relay.settings import RelaySettings
from tests.deploy.dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    build_args,
    instructions,
    stages,
)

FOUND = instructions(DOCKERFILE.read_text(encoding="utf-8"))
STAGES = stages(FOUND)
RUNTIME = STAGES[-1]


def test_multi_stage_with_a_slim_runtime() -> None:
    assert len(STAGES) >= 2, [stage.name for stage in STAGES]
    names = [stage.name for stage in STAGES]
    assert "build" in names
    base = RUNTIME.base
    if base.startswith("${"):
        base = build_args(FOUND)[base.strip("${}")]
    assert "slim" in base, base
    copied = [args for args in RUNTIME.all("COPY") if "--from=" in args]
    assert copied and all("--from=build" in args for args in copied), copied
    # the runtime copies nothing from the build context: only the built environment
    assert all("--from=" in args for args in RUNTIME.all("COPY")), RUNTIME.all("COPY")


def test_python_satisfies_requires_python() -> None:
    image = build_args(FOUND)["PYTHON_IMAGE"]
    match = re.search(r":(\d+)\.(\d+)", image)
    assert match, image
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    minimum = re.search(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_dependencies_come_from_the_lock_with_the_relay_extra_only() -> None:
    build = next(stage for stage in STAGES if stage.name == "build")
    syncs = [args for args in build.all("RUN") if "uv sync" in args]
    assert len(syncs) >= 1
    for args in syncs:
        assert "--locked" in args or "--frozen" in args, args
        assert "--no-dev" in args, args
        assert "--extra relay" in args, args
        assert "--extra agent" not in args and "--all-extras" not in args, args
    # the project itself is installed as a built wheel, not as an editable source tree
    assert any("--no-editable" in args for args in syncs), syncs


def test_runs_as_an_unprivileged_user() -> None:
    user = RUNTIME.last("USER")
    name = user.split(":")[0]
    assert name not in {"root", "0"}, user
    # numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
    assert name.isdigit(), user
    # USER comes after everything that needs root
    body = [i.keyword for i in RUNTIME.body]
    assert "RUN" not in body[body.index("USER") :], body


def test_health_check_signal_and_command() -> None:
    healthcheck = RUNTIME.last("HEALTHCHECK")
    assert "/healthz" in healthcheck, healthcheck
    assert RUNTIME.last("STOPSIGNAL") == "SIGTERM"
    assert RUNTIME.last("ENTRYPOINT") == '["erp-relay"]'
    assert RUNTIME.last("CMD") == '["serve"]'
    env = " ".join(RUNTIME.all("ENV"))
    assert "ERP_RELAY_HOST=0.0.0.0" in env, env
    port = re.search(r"ERP_RELAY_PORT=(\d+)", env)
    assert port, env
    assert RUNTIME.last("EXPOSE") == port.group(1)
    assert RelaySettings.model_fields["port"].default == int(port.group(1))


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per line, in order: the last pattern that matches decides."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in ("**", "**/"):
                regex += "(?:.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((not include, re.compile(regex + r"\Z")))
    return patterns


def ignored(relative: str) -> bool:
    """Whether Docker leaves `relative` out of the build context: a pattern matching the path
    or any folder above it excludes (or, with ``!``, includes) it."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for excludes, regex in dockerignore_patterns():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = excludes
    return excluded


def test_the_dockerignore_matcher() -> None:
    assert ignored(".git/config")
    assert ignored("tests/conftest.py")
    assert not ignored("relay/app.py")
    assert ignored("relay/__pycache__/app.cpython-311.pyc")


@pytest.mark.parametrize(
    "source",
    sorted(
        {
            part
            for stage in STAGES
            for args in stage.all("COPY")
            if "--from=" not in args
            for part in args.split()[:-1]
            if not part.startswith("--")
        }
    ),
)
def test_every_copied_path_exists_in_the_build_context(source: str) -> None:
    path = ROOT / source
    assert path.exists(), f"COPY {source}: no such path in the repository"
    assert not ignored(source), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    if path.is_dir():
        files = [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        left_out = [str(p.relative_to(ROOT)) for p in files if ignored(str(p.relative_to(ROOT)))]
        assert not left_out, left_out


def test_the_wheel_build_finds_what_it_needs() -> None:
    """hatchling builds the wheel from these: the packages and the readme pyproject names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {
        part.strip("/")
        for args in STAGES[[s.name for s in STAGES].index("build")].all("COPY")
        for part in args.split()[:-1]
    }
    needed = {"pyproject.toml", "uv.lock", pyproject["project"]["readme"]}
    needed |= set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert needed <= copied, needed - copied
