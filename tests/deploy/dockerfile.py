"""Reading deploy/Dockerfile without Docker: its instructions, grouped by build stage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


@dataclass
class Stage:
    name: str
    base: str
    body: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.body if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        values = self.all(keyword)
        assert values, f"stage {self.name!r} has no {keyword}"
        return values[-1]


def stages(found: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for instruction in found:
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", instruction.args, re.IGNORECASE)
            assert match, instruction
            result.append(Stage(match.group(2) or str(len(result)), match.group(1), []))
        elif result:
            result[-1].body.append(instruction)
    return result


def build_args(found: list[Instruction]) -> dict[str, str]:
    args = {}
    for instruction in found:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, _, value = instruction.args.partition("=")
            args[name] = value
    return args


def runtime_stage() -> Stage:
    """The last stage of the shipped Dockerfile: what the image runs."""
    return stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))[-1]
