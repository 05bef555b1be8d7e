"""Root filesystems for the local image builder: ``debian:<suite>-slim`` made with debootstrap,
and Dockerfile ``RUN`` steps executed in a chroot over overlayfs.

Each step runs inside ``unshare --mount --pid``: the overlay, /proc, /dev and bind mounts live
in a private namespace and vanish with it, so an interrupted build leaves nothing mounted.
The upper directory of the overlay is the step's layer (``oci.write_layer`` turns it into a
tarball). Standard library; needs root.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import oci  # noqa: E402

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_CA = "/run/mlops-build/ca.crt"
HOST_CA = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
# What debian:<suite>-slim drops (its /etc/dpkg/dpkg.cfg.d/docker), so our base matches it.
SLIM_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


def log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def run(
    *,
    lowers: list[pathlib.Path],
    tree: pathlib.Path,
    command: str,
    env: dict[str, str],
    mounts: list[tuple[pathlib.Path, str, bool]],
) -> None:
    """Run ``command`` with /bin/sh in a chroot of ``tree`` (over ``lowers`` via overlayfs when given).

    ``mounts`` are (host path, target in the image, writable) bind mounts. Runs in a private
    mount and pid namespace: when it exits, every mount it made is gone.
    """
    work = tree.parent / "work"
    merged = tree.parent / "merged"
    targets = [target for _src, target, _rw in mounts] + ["/etc/resolv.conf", BUILD_CA]
    created: set[str] = set()  # mount points (and their parents) this step must create, then remove
    for target in targets:
        rel = pathlib.PurePosixPath(target.lstrip("/"))
        for part in [rel, *rel.parents]:
            if str(part) in ("", ".") or any((d / part).exists() for d in [tree, *lowers]):
                break
            created.add(str(part))
    script = ["set -eu"]
    if lowers:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        merged.mkdir(parents=True, exist_ok=True)
        lowerdir = ":".join(str(p) for p in reversed(lowers))  # overlayfs: leftmost is the top
        options = f"lowerdir={lowerdir},upperdir={tree},workdir={work}"
        script.append(f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(merged))}")
        root = merged
    else:
        root = tree
    q = shlex.quote
    script += [
        f"mount -t proc proc {q(str(root / 'proc'))}",
        f"mount --rbind /dev {q(str(root / 'dev'))}",
    ]
    all_mounts = [*mounts, (pathlib.Path("/etc/resolv.conf"), "/etc/resolv.conf", False)]
    if HOST_CA.exists():  # a TLS-intercepting proxy's CA, for pip; never part of the image
        all_mounts.append((HOST_CA, BUILD_CA, False))
    for src, target, rw in all_mounts:
        dest = root / target.lstrip("/")
        if src.is_dir():
            script.append(f"mkdir -p {q(str(dest))}")
        else:
            # (touching an existing file would copy it up into the layer)
            script.append(
                f"mkdir -p {q(str(dest.parent))} && {{ [ -e {q(str(dest))} ] || touch {q(str(dest))}; }}"
            )
        script.append(f"mount --bind {q(str(src))} {q(str(dest))}")
        if not rw:
            script.append(f"mount -o remount,bind,ro {q(str(dest))}")
    run_env = {"PATH": DEFAULT_PATH, "HOME": "/root", **env}
    if HOST_CA.exists():
        run_env.update(PIP_CERT=BUILD_CA, SSL_CERT_FILE=BUILD_CA, REQUESTS_CA_BUNDLE=BUILD_CA)
    env_args = " ".join(q(f"{k}={v}") for k, v in sorted(run_env.items()))
    script.append(f"exec chroot {q(str(root))} /usr/bin/env -i {env_args} /bin/sh -c {q(command)}")
    logpath = tree.parent / "build.log"
    verbose = os.environ.get("MLOPS_IMAGES_VERBOSE") == "1"
    with logpath.open("ab") as logfile:
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "bash",
                "-c",
                "\n".join(script),
            ],
            check=False,
            stdout=None if verbose else logfile,
            stderr=None if verbose else subprocess.STDOUT,
        )
    # Drop the mount points this step created (they held mounts, not content).
    for created_rel in sorted(created, key=len, reverse=True):
        path = tree / created_rel
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    # Directories copied up only to hold a mount point are no change: drop them when empty.
    for target in targets:
        for parent in pathlib.PurePosixPath(target.lstrip("/")).parents:
            path = tree / parent
            if str(parent) in ("", ".") or not lowers or not path.is_dir():
                continue
            if not any(path.iterdir()) and not oci.is_opaque(str(path)):
                with contextlib.suppress(OSError):
                    path.rmdir()
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        merged.rmdir()
    if proc.returncode != 0:
        tail = "\n".join(logpath.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"RUN failed ({proc.returncode}): {command[:200]}\n--- {logpath}:\n{tail}")


def debootstrap(rootfs: pathlib.Path, suite: str, mirror: str) -> None:
    """``debian:<suite>-slim``, made here: a minbase rootfs with the slim image's dpkg excludes."""
    log(f"debootstrap --variant=minbase {suite} from {mirror}")
    started = time.monotonic()
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        # In a private mount namespace: debootstrap mounts /proc and /sys in the target, and
        # those mounts must not outlive it if it is interrupted.
        [
            *("unshare", "--mount", "--propagation", "private", "--fork"),
            *("debootstrap", "--variant=minbase", "--components=main", suite, str(rootfs), mirror),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG_EXCLUDES)
    sources = (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {mirror}-security\nSuites: {suite}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if not mirror.endswith("/debian"):
        sources = sources.replace(f"{mirror}-security", "http://deb.debian.org/debian-security")
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for rel in (
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/groff",
        "usr/share/lintian",
    ):
        shutil.rmtree(rootfs / rel, ignore_errors=True)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        for item in doc.iterdir() if doc.is_dir() else []:
            if item.name != "copyright":
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for rel in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / rel).unlink(missing_ok=True)
        (rootfs / rel).write_text("")
    (rootfs / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    for rel in ("var/log", "var/cache/apt", "var/lib/apt/lists"):
        for item in (rootfs / rel).glob("*"):
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    log(f"debootstrap done in {time.monotonic() - started:.0f}s")
