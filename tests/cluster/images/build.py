"""Builds the project's container images without Docker or a registry, and imports them.

    python tests/cluster/images/build.py [--import] [pause|operator|workloads|workloads-gpu|all ...]

Images (``all`` is pause + operator + workloads; the GPU variant is built only when named):
- ``localhost/mlops-pause:1.0``: the pod sandbox image, a ``gcc -static`` build of
  ``pause/pause.c`` (the node pulls nothing, so containerd's ``sandbox_image`` is this one).
- ``mlops-operator:<version>`` and ``mlops-workloads:<version>`` from ``operator/Dockerfile``
  and ``workloads/Dockerfile``; ``mlops-workloads-gpu:<version>`` from ``workloads/Dockerfile``
  too, with the build argument ``PIP_EXTRAS=workloads-gpu`` (PyPI's CUDA builds of PyTorch and
  XGBoost with NVIDIA's libraries: several GB; ``make images-gpu``). ``APPS`` is the table of
  names, Dockerfiles and build arguments. The Dockerfile IS the recipe: ``debian:<suite>-slim``
  becomes a ``debootstrap --variant=minbase`` rootfs from the mirror apt uses here (with the slim image's
  dpkg excludes), and each ``RUN`` runs in a chroot on an overlayfs whose upper directory is
  the layer, inside a private mount+pid namespace (``unshare``) so nothing stays mounted if
  the build dies. ``--mount=type=bind`` and ``type=cache`` work as in BuildKit (the cache lives
  under the cache dir, so pip downloads once, where the index's responses carry cache headers:
  a proxy that strips them leaves pip's HTTP cache empty and every deps rebuild downloads).

Caching: every layer is keyed by the hash of what it depends on (the builder version, the
values of the ARGs in its stage's scope, build arguments included, the stage text, the mirror,
the bytes of bind-mounted files and of the build context after ``.dockerignore``), chained
like Docker's build cache; layers and OCI layout tarballs live under
``~/.cache/mlops-operator/images/``. The two Dockerfiles share the base stage, so the
operator and workloads images share their base layer; the two workloads variants share it too
and differ from the deps layer on (``PIP_EXTRAS`` is in its scope), as Docker's cache would.
Layer tarballs are deterministic (see ``oci.py``): the same inputs give the same digests.
Layers are streamed to disk (tar -> gzip -> file, hashed on the way), never held in memory, so
a multi-GB layer costs disk, not RAM.

Standard library only; needs root (chroot, mounts), debootstrap and gcc
(``tests/cluster/node/install-runtime.sh`` installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))

import dockerfile  # noqa: E402
import oci  # noqa: E402
import rootfs  # noqa: E402

CACHE = pathlib.Path(
    os.environ.get("MLOPS_CACHE")
    or pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "mlops-operator"
)
IMAGES = CACHE / "images"
LAYERS = IMAGES / "layers"
BUILDER_VERSION = "5"
PAUSE_REF = "localhost/mlops-pause:1.0"


@dataclasses.dataclass(frozen=True)
class AppImage:
    """An image built from one of the project's Dockerfiles (``docker build -f <dockerfile>
    --build-arg <name>=<value> ...`` from the repository root)."""

    dockerfile: str  # relative to the repository root
    repository: str  # docker.io/library/<repository>:<project version>
    build_args: tuple[tuple[str, str], ...] = ()


APPS: dict[str, AppImage] = {
    "operator": AppImage("operator/Dockerfile", "mlops-operator"),
    "workloads": AppImage("workloads/Dockerfile", "mlops-workloads"),
    # The GPU-capable variant: same recipe, pyproject's `workloads-gpu` extra (torch, onnx and
    # XGBoost's CUDA build): several GB, so `all` leaves it out.
    "workloads-gpu": AppImage(
        "workloads/Dockerfile", "mlops-workloads-gpu", build_args=(("PIP_EXTRAS", "workloads-gpu"),)
    ),
}
NAMES = ("pause", *APPS)
ALL = ("pause", "operator", "workloads")
# Paths a layer never keeps: kernel filesystems and build-time scratch (as Docker's snapshots).
# ldconfig's aux-cache records inodes and mtimes: a cache, and the one thing that differed
# between two otherwise identical base builds.
SCRATCH = re.compile(
    r"^(dev|proc|sys|tmp|run/mlops-build)/|^var/cache/apt/archives/partial/|^var/cache/ldconfig/aux-cache/"
)


def log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def sha(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def project_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org."""
    files = [
        pathlib.Path("/etc/apt/sources.list"),
        *sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*")),
    ]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in match.group(1) and "/debian" in match.group(1):
                return match.group(1).rstrip("/")
        for match in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", text, re.M):
            if "security" not in match.group(1) and "/debian" in match.group(1):
                return match.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with (IMAGES / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuiltLayer:
    key: str
    tree: pathlib.Path  # the layer's directory (a rootfs, or an overlayfs upper dir)
    layer: oci.Layer
    history: str

    @property
    def is_upper(self) -> bool:
        return self.tree.name == "upper"


def _layer_dir(key: str) -> pathlib.Path:
    return LAYERS / key


def _cached_layer(key: str) -> BuiltLayer | None:
    meta = _layer_dir(key) / "layer.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    layer = oci.Layer.from_json(data["layer"])
    tree = pathlib.Path(data["tree"])
    if not layer.path.exists() or not tree.exists():
        return None
    return BuiltLayer(key=key, tree=tree, layer=layer, history=data["history"])


def _finish_layer(key: str, tree: pathlib.Path, history: str, *, upper: bool) -> BuiltLayer:
    started = time.monotonic()
    layer = oci.write_layer(
        tree,
        _layer_dir(key) / "layer.tar.gz",
        exclude=lambda rel: bool(SCRATCH.match(rel + "/")),
        overlay_upper=upper,
    )
    log(f"layer {key[:12]}: {layer.blob.size / 1e6:.1f} MB compressed in {time.monotonic() - started:.0f}s")
    built = BuiltLayer(key=key, tree=tree, layer=layer, history=history)
    (_layer_dir(key) / "layer.json").write_text(
        json.dumps({"layer": layer.to_json(), "tree": str(tree), "history": history}, indent=1)
    )
    return built


@dataclasses.dataclass
class _State:
    env: dict[str, str]
    config: dict[str, object]


def _hash_context(context: pathlib.Path) -> tuple[str, list[str]]:
    files = dockerfile.context_files(context)
    h = hashlib.sha256()
    for rel in files:
        path = context / rel
        h.update(rel.encode() + b"\0" + oct(path.stat().st_mode & 0o777).encode() + b"\0")
        h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
        h.update(b"\0")
    return h.hexdigest()[:20], files


@dataclasses.dataclass(frozen=True)
class Step:
    """One layer of the image, keyed before anything runs: the base stage (``instr`` None:
    debootstrap plus the stage's RUNs) or one RUN of a later stage."""

    key: str
    stage: dockerfile.Stage
    instr: dockerfile.Instruction | None
    env: dict[str, str]  # what the RUN sees: the image's ENV so far, then the ARGs in scope


def plan_dockerfile(
    df: dockerfile.Dockerfile, *, mirror: str, context: pathlib.Path, context_key: str
) -> tuple[list[Step], _State]:
    """The layers of the final stage with their cache keys, and the image config it ends with.

    Pure apart from reading bind-mounted files: nothing is built. A key chains the previous
    one with the step's text, its mounts' contents, the ENV so far and the ARGs in the stage's
    scope (as Docker's cache does), so a build argument changes the layers from the first
    stage that declares it on and no earlier one."""
    steps: list[Step] = []
    state = _State(env={"PATH": rootfs.DEFAULT_PATH}, config={})
    key = sha(BUILDER_VERSION)
    for stage in df.chain():
        scope: dict[str, str] = {}
        if stage.base.startswith("debian:") and stage.base.endswith("-slim"):
            for instr in stage.instructions:  # a stage's ARG/ENV apply to its RUNs
                if instr.keyword == "ARG":
                    name, value = df.arg(instr.value)
                    scope[name] = value
                elif instr.keyword == "ENV":
                    state.env.update(dockerfile.env_pairs(instr.value))
                elif instr.keyword == "RUN" and instr.mounts:
                    raise ValueError(f"{df.path}: RUN --mount in the base stage is not supported")
            key = sha(key, stage.base, mirror, stage.text(), scope, state.env)
            steps.append(Step(key=key, stage=stage, instr=None, env={**state.env, **scope}))
            _apply_config(stage, state)
            continue
        if not steps:
            raise ValueError(f"{df.path}: the first stage must be FROM debian:<suite>-slim, not {stage.base}")
        for instr in stage.instructions:
            if instr.keyword == "ARG":
                name, value = df.arg(instr.value)
                scope[name] = value
                continue
            if instr.keyword != "RUN":
                _apply_instruction(instr, state)
                continue
            if "user" in state.config or "workdir" in state.config:
                raise ValueError(f"{df.path}: RUN after USER/WORKDIR is not supported by the local builder")
            mount_keys: list[str] = []
            for m in instr.mounts:
                if m.type == "cache":
                    continue
                if m.source in ("", "."):
                    mount_keys.append(context_key)
                else:
                    src = context / m.source
                    mount_keys.append(sha(src.read_bytes()) if src.is_file() else sha(m.source))
            key = sha(
                key,
                instr.keyword,
                instr.value,
                [dataclasses.astuple(m) for m in instr.mounts],
                scope,
                state.env,
                mount_keys,
            )
            steps.append(Step(key=key, stage=stage, instr=instr, env={**state.env, **scope}))
    return steps, state


def build_dockerfile(
    path: pathlib.Path,
    ref: str,
    *,
    context: pathlib.Path = ROOT,
    build_args: dict[str, str] | None = None,
) -> tuple[list[BuiltLayer], oci.ImageSpec]:
    """Build (or reuse) every layer of the Dockerfile's final stage; return the layers and config.

    ``build_args`` override ARG defaults, as ``docker build --build-arg NAME=VALUE``."""
    df = dockerfile.parse(path, build_args)
    mirror = apt_mirror()
    context_key, context_list = _hash_context(context)
    steps, state = plan_dockerfile(df, mirror=mirror, context=context, context_key=context_key)
    layers: list[BuiltLayer] = []
    for step in steps:
        cached = _cached_layer(step.key)
        if cached is None:
            if step.instr is None:
                cached = _build_base(step, mirror)
            else:
                cached = _build_run(step, layers, context, context_list)
        layers.append(cached)
    spec = oci.ImageSpec(
        ref=ref,
        env=tuple(f"{k}={v}" for k, v in state.env.items()),
        entrypoint=state.config.get("entrypoint"),  # type: ignore[arg-type]
        cmd=state.config.get("cmd"),  # type: ignore[arg-type]
        user=str(state.config.get("user", "")),
        workdir=str(state.config.get("workdir", "")),
        labels=tuple(sorted(state.config.get("labels", {}).items())),  # type: ignore[attr-defined]
        exposed_ports=tuple(state.config.get("ports", ())),  # type: ignore[arg-type]
    )
    return layers, spec


def _build_base(step: Step, mirror: str) -> BuiltLayer:
    """``debian:<suite>-slim`` from debootstrap, then the base stage's RUNs, as one layer."""
    suite = step.stage.base.split(":", 1)[1].removesuffix("-slim")
    rootfs_dir = _layer_dir(step.key) / "rootfs"
    rootfs.debootstrap(rootfs_dir, suite, mirror)
    for instr in step.stage.instructions:
        if instr.keyword != "RUN":
            continue
        log(f"RUN (base) {instr.value[:70]}...")
        started = time.monotonic()
        rootfs.run(lowers=[], tree=rootfs_dir, command=instr.value, env=step.env, mounts=[])
        log(f"RUN done in {time.monotonic() - started:.0f}s")
    return _finish_layer(
        step.key, rootfs_dir, f"FROM {step.stage.base} (debootstrap minbase) + RUN", upper=False
    )


def _build_run(
    step: Step, layers: list[BuiltLayer], context: pathlib.Path, context_list: list[str]
) -> BuiltLayer:
    """One RUN on an overlay of ``layers``; its upper directory becomes the layer."""
    assert step.instr is not None
    mounts: list[tuple[pathlib.Path, str, bool]] = []
    staging: pathlib.Path | None = None
    try:
        for m in step.instr.mounts:
            if m.type == "cache":
                cache_dir = IMAGES / "cache" / sha(m.target)[:12]
                cache_dir.mkdir(parents=True, exist_ok=True)
                mounts.append((cache_dir, m.target, True))
            elif m.source in ("", "."):
                staging = pathlib.Path(tempfile.mkdtemp(prefix="mlops-context-"))
                for rel in context_list:
                    dest = staging / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / rel, dest)
                mounts.append((staging, m.target, True))
            else:
                mounts.append((context / m.source, m.target, m.rw))
        upper = _layer_dir(step.key) / "upper"
        shutil.rmtree(upper, ignore_errors=True)
        upper.mkdir(parents=True)
        log(f"RUN {step.instr.value[:90]}...")
        started = time.monotonic()
        rootfs.run(
            lowers=[layer.tree for layer in layers],
            tree=upper,
            command=step.instr.value,
            env=step.env,
            mounts=mounts,
        )
        log(f"RUN done in {time.monotonic() - started:.0f}s")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return _finish_layer(step.key, upper, f"RUN {step.instr.value[:200]}", upper=True)


def _apply_config(stage: dockerfile.Stage, state: _State) -> None:
    """The stage's image-config instructions (its RUNs already ran, its ARG/ENV already apply)."""
    for instr in stage.instructions:
        if instr.keyword in {"ARG", "ENV", "RUN"}:
            continue
        _apply_instruction(instr, state)


def _apply_instruction(instr: dockerfile.Instruction, state: _State) -> None:
    kw = instr.keyword
    if kw == "ENV":
        state.env.update(dockerfile.env_pairs(instr.value))
    elif kw == "USER":
        state.config["user"] = instr.value
    elif kw == "WORKDIR":
        state.config["workdir"] = instr.value
    elif kw == "ENTRYPOINT":
        state.config["entrypoint"] = dockerfile.exec_form(instr.value)
        state.config.pop("cmd", None)  # Docker: a new ENTRYPOINT resets an inherited CMD
    elif kw == "CMD":
        state.config["cmd"] = dockerfile.exec_form(instr.value)
    elif kw == "EXPOSE":
        ports = list(state.config.get("ports", []))  # type: ignore[call-overload]
        ports += [p if "/" in p else f"{p}/tcp" for p in instr.value.split()]
        state.config["ports"] = ports
    elif kw == "LABEL":
        labels = dict(state.config.get("labels", {}))  # type: ignore[call-overload]
        labels.update(dockerfile.env_pairs(instr.value))
        state.config["labels"] = labels


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Image:
    name: str
    ref: str
    key: str
    layout: pathlib.Path
    digest: str
    layers: str = ""  # the cache keys of its layers, comma-separated (what ``prune`` keeps)

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}


def _write_image(name: str, spec: oci.ImageSpec, layers: list[BuiltLayer]) -> Image:
    key = sha(spec.ref, [layer.layer.blob.digest for layer in layers], dataclasses.astuple(spec))
    layout = IMAGES / f"{name}-{key}.oci.tar"
    record = IMAGES / f"{name}.json"
    layer_keys = ",".join(layer.key for layer in layers)
    if record.exists():
        data = json.loads(record.read_text())
        if data.get("key") == key and pathlib.Path(data["layout"]).exists():
            image = Image(**{**data, "layout": pathlib.Path(data["layout"]), "layers": layer_keys})
            record.write_text(json.dumps(image.to_json(), indent=1))
            return image
    digest = oci.write_layout_tar(
        layout, spec, [layer.layer for layer in layers], [layer.history for layer in layers]
    )
    image = Image(name=name, ref=spec.ref, key=key, layout=layout, digest=digest, layers=layer_keys)
    own = re.compile(re.escape(name) + r"-[0-9a-f]{20}\.oci\.tar")  # not workloads-gpu-* for workloads
    for old in IMAGES.glob(f"{name}-*.oci.tar"):
        if old != layout and own.fullmatch(old.name):
            old.unlink()
    record.write_text(json.dumps(image.to_json(), indent=1))
    log(f"{spec.ref}: {digest}")
    return image


def build_pause() -> Image:
    source = HERE / "pause" / "pause.c"
    cc = subprocess.run(["gcc", "--version"], check=True, capture_output=True, text=True).stdout.splitlines()[
        0
    ]
    key = sha(BUILDER_VERSION, "pause", source.read_bytes(), cc)
    cached = _cached_layer(key)
    if cached is None:
        tree = _layer_dir(key) / "rootfs"
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-Wl,--build-id=none", "-o", str(tree / "pause"), str(source)],
            check=True,
        )
        cached = _finish_layer(key, tree, "COPY pause /pause (gcc -static pause.c)", upper=False)
    spec = oci.ImageSpec(ref=PAUSE_REF, entrypoint=("/pause",), user="65535:65535")
    return _write_image("pause", spec, [cached])


def build_app(name: str) -> Image:
    app = APPS[name]
    ref = f"docker.io/library/{app.repository}:{project_version()}"
    layers, spec = build_dockerfile(ROOT / app.dockerfile, ref, build_args=dict(app.build_args))
    return _write_image(name, spec, layers)


def prune() -> None:
    """Delete cached layers that no current image uses (older keys of rebuilt steps)."""
    used: set[str] = set()
    for record in IMAGES.glob("*.json"):
        with contextlib.suppress(ValueError, KeyError, OSError):
            used.update(k for k in json.loads(record.read_text()).get("layers", "").split(",") if k)
    if not LAYERS.exists() or not used:
        return
    for layer_dir in LAYERS.iterdir():
        if layer_dir.name not in used:
            log(f"pruning unused layer {layer_dir.name}")
            shutil.rmtree(layer_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Import into containerd
# --------------------------------------------------------------------------------------------


def containerd_images(address: str) -> dict[str, str]:
    """ref -> manifest digest of the images in containerd's k8s.io namespace."""
    out = subprocess.run(
        ["ctr", "--address", address, "-n", "k8s.io", "images", "ls"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    images = {}
    for line in out[1:]:
        fields = line.split()
        if len(fields) >= 3:
            images[fields[0]] = fields[2]
    return images


def import_image(image: Image, address: str) -> bool:
    """Import into containerd unless the same digest is already there; True when imported."""
    if containerd_images(address).get(image.ref) == image.digest:
        return False
    started = time.monotonic()
    subprocess.run(
        ["ctr", "--address", address, "-n", "k8s.io", "images", "import", str(image.layout)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log(f"imported {image.ref} in {time.monotonic() - started:.0f}s")
    _drop_superseded(address)
    return True


def _drop_superseded(address: str) -> None:
    """Forget image versions no tag points to any more (the CRI's ``sha256:<id>`` records of
    earlier builds), so containerd's garbage collector frees their layers. The kubelet's image
    GC is off on this node (``imageGCHighThresholdPercent: 100``), so this is what bounds disk."""
    images = containerd_images(address)
    current = {digest for ref, digest in images.items() if not ref.startswith("sha256:")}
    stale = [ref for ref, digest in images.items() if ref.startswith("sha256:") and digest not in current]
    if stale:
        subprocess.run(
            ["ctr", "--address", address, "-n", "k8s.io", "images", "rm", *stale],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        log(f"dropped {len(stale)} superseded image version(s)")


def build(names: list[str]) -> list[Image]:
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise SystemExit(f"images: unknown image(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    if os.geteuid() != 0:
        raise SystemExit("images: building needs root (chroot, mounts)")
    with build_lock():
        images = []
        for name in names:
            started = time.monotonic()
            image = build_pause() if name == "pause" else build_app(name)
            size_mb = image.layout.stat().st_size / 1e6
            log(f"{name} ready in {time.monotonic() - started:.1f}s ({size_mb:.0f} MB)")
            images.append(image)
        prune()
        return images


def resolve(names: list[str]) -> list[str]:
    """The images to build, in order and once each; ``all`` (or nothing) is pause, operator and
    workloads, and names beside it (``all workloads-gpu``) are added."""
    wanted = [*(ALL if "all" in names or not names else ()), *names]
    return list(dict.fromkeys(name for name in wanted if name != "all"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # (no argparse ``choices``: Python 3.11 checks a ``nargs="*"`` positional's default list
    # against them and refuses it)
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE", help=f"{', '.join(('all', *NAMES))} (default: all)"
    )
    parser.add_argument(
        "--import", dest="import_", action="store_true", help="import into the real node's containerd"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.images if name not in ("all", *NAMES)]
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; choose from all, {', '.join(NAMES)}")
    names = resolve(args.images)
    images = build(names)
    if args.import_:
        sys.path.insert(0, str(HERE.parent))
        import realnode

        for image in images:
            import_image(image, str(realnode.CONTAINERD_SOCK))
    for image in images:
        print(f"{image.ref} {image.digest} {image.layout}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
