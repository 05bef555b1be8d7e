"""The subset of the Dockerfile language the local image builder understands.

``operator/Dockerfile`` and ``workloads/Dockerfile`` are the recipes: users build them with
``docker build``; ``build.py`` reads the same files and runs their ``RUN`` steps in a chroot,
so the two paths cannot drift apart. Supported: global and stage ``ARG``, ``FROM <image> [AS
name]`` (an external image or an earlier stage), ``ENV k=v ...``, ``RUN [--mount=type=bind|cache
,...] <shell>``, ``USER``, ``WORKDIR``, ``EXPOSE``, ``LABEL k=v``, ``ENTRYPOINT``/``CMD`` in
exec (JSON) form. Anything else is an error rather than a silent difference. Build arguments
override ARG defaults as ``docker build --build-arg NAME=VALUE`` does (in ``FROM`` and in every
stage that declares the ARG); one the Dockerfile never declares is an error, not a typo that
silently builds the default. Standard library.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shlex

SUPPORTED = {"ARG", "FROM", "ENV", "RUN", "USER", "WORKDIR", "EXPOSE", "LABEL", "ENTRYPOINT", "CMD"}


@dataclasses.dataclass(frozen=True)
class Mount:
    type: str  # bind | cache
    target: str
    source: str = ""
    rw: bool = False


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    mounts: tuple[Mount, ...] = ()


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        return "\n".join(f"{i.keyword} {i.value} {i.mounts!r}" for i in self.instructions)


@dataclasses.dataclass
class Dockerfile:
    path: pathlib.Path
    args: dict[str, str]  # the global ARGs' values (defaults, then the build arguments)
    stages: list[Stage]
    build_args: dict[str, str] = dataclasses.field(default_factory=dict)

    def arg(self, declaration: str) -> tuple[str, str]:
        """A stage's ``ARG NAME[=default]`` as (name, value): the build argument when given, else
        the stage's own default, else the global ARG's value (Docker's precedence)."""
        name, sep, default = declaration.partition("=")
        if name in self.build_args:
            return name, self.build_args[name]
        if sep:
            return name, (shlex.split(default) or [""])[0]
        return name, self.args.get(name, "")

    def chain(self) -> list[Stage]:
        """The stages the final one builds on, first to last."""
        by_name = {s.name: s for s in self.stages if s.name}
        chain = [self.stages[-1]]
        while chain[0].base in by_name:
            chain.insert(0, by_name[chain[0].base])
        return chain


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def substitute(value: str, variables: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` as Docker substitutes them in FROM and friends."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def _parse_mount(spec: str) -> Mount:
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for part in spec.split(","):
        key, sep, val = part.partition("=")
        if sep:
            fields[key] = val
        else:
            flags.add(key)
    kind = fields.get("type", "bind")
    if kind not in {"bind", "cache"} or "target" not in fields:
        raise ValueError(f"unsupported RUN --mount={spec}")
    return Mount(type=kind, target=fields["target"], source=fields.get("source", ""), rw="rw" in flags)


def parse(path: pathlib.Path, build_args: dict[str, str] | None = None) -> Dockerfile:
    """Read ``path``; ``build_args`` are ``--build-arg`` overrides (NAME -> value)."""
    overrides = dict(build_args or {})
    args: dict[str, str] = {}
    declared: set[str] = set()
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in SUPPORTED:
            raise ValueError(f"{path}: the local builder does not support {keyword} ({line[:60]}...)")
        if keyword == "ARG":
            declared.add(rest.partition("=")[0])
        if keyword == "ARG" and not stages:
            name, sep, default = rest.partition("=")
            args[name] = (shlex.split(default) or [""])[0] if sep else ""
            if name in overrides:
                args[name] = overrides[name]
            continue
        if keyword == "FROM":
            words = rest.split()
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=substitute(words[0], args), name=stage_name))
            continue
        if not stages:
            raise ValueError(f"{path}: {keyword} before FROM")
        mounts: list[Mount] = []
        if keyword == "RUN":
            while rest.startswith("--"):
                flag, _, rest = rest.partition(" ")
                rest = rest.strip()
                if not flag.startswith("--mount="):
                    raise ValueError(f"{path}: unsupported RUN flag {flag}")
                mounts.append(_parse_mount(flag[len("--mount=") :]))
        stages[-1].instructions.append(Instruction(keyword, rest, tuple(mounts)))
    if not stages:
        raise ValueError(f"{path}: no FROM")
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise ValueError(f"{path}: build argument(s) {', '.join(unknown)} not declared by any ARG")
    return Dockerfile(path=path, args=args, stages=stages, build_args=overrides)


def env_pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for word in shlex.split(value):
        key, sep, val = word.partition("=")
        if not sep:
            raise ValueError(f"ENV needs the key=value form: {value}")
        pairs.append((key, val))
    return pairs


def exec_form(value: str) -> tuple[str, ...]:
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise ValueError(f"ENTRYPOINT/CMD must use the exec (JSON) form: {value}")
    return tuple(parsed)


Patterns = list[tuple[bool, "re.Pattern[str]", str]]


def ignore_patterns(context: pathlib.Path) -> Patterns:
    """``.dockerignore`` as (negated, regex, text) triples; the last match wins, as in Docker."""
    path = context / ".dockerignore"
    patterns: Patterns = []
    if not path.exists():
        return patterns
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negated, re.compile(regex + "$"), line))
    return patterns


def ignored(rel: str, patterns: Patterns) -> bool:
    """Whether ``rel`` (or a directory above it) is excluded from the build context."""
    parts = rel.split("/")
    result = False
    for negated, regex, _text in patterns:
        for n in range(1, len(parts) + 1):
            if regex.match("/".join(parts[:n])):
                result = not negated
                break
    return result


def context_files(context: pathlib.Path) -> list[str]:
    """The build context's files (relative paths, sorted) after ``.dockerignore``."""
    patterns = ignore_patterns(context)
    found: list[str] = []

    def walk(rel: str) -> None:
        base = context / rel if rel else context
        for entry in sorted(base.iterdir(), key=lambda p: p.name):
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir() and not entry.is_symlink():
                # A directory may be excluded while a path below it is re-included ("!a/b").
                if ignored(sub, patterns) and not any(
                    neg and text.startswith(sub + "/") for neg, _regex, text in patterns
                ):
                    continue
                walk(sub)
            elif not ignored(sub, patterns):
                found.append(sub)

    walk("")
    return found
