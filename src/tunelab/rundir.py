"""Writing a run directory: every file goes to a temporary name first, then is renamed,
so that a killed run never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

MODEL_META = "tunelab.json"
RUN_MARKER = ".tunelab-run"  # written first into every run directory tunelab creates


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` if the block succeeds. A
    parent folder made for it is removed again when the block fails."""
    made = [parent for parent in [path.parent, *path.parent.parents] if not parent.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if tmp.is_dir():
            follow_umask(tmp)
        if path.is_dir() and tmp.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        for parent in made:  # innermost first; only those still empty
            if not path.exists():
                with contextlib.suppress(OSError):
                    parent.rmdir()


def follow_umask(directory: Path) -> None:
    """Give the files in `directory` the mode the umask gives new files. Some writers
    (safetensors weights) create 0600 files, which a server running as another user
    cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    for file in directory.rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod(0o666 & ~mask)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove temporary siblings of `path` (.NAME.tmp-PID, .NAME.old-PID) left by a process
    that was killed: a killed export must not leave 87 MB behind for good."""
    for sibling in path.parent.glob(f".{path.name}.*-*"):
        kind, _, pid = sibling.name.rpartition("-")
        if not kind.endswith((".tmp", ".old")) or not pid.isdigit() or _alive(int(pid)):
            continue
        if sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("tunelab", "torch", "transformers", "peft", "accelerate", "datasets",
                 "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def check_run_name(name: str) -> str:
    """A run name is one path component: it can never point outside output_dir, or at it."""
    if not name or not name.strip():
        raise ValueError("a run name cannot be empty")
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"'{name}' is not a valid run name: use one folder name, without "
                         "'/', and not '.' or '..'")
    if name.startswith("."):
        raise ValueError(f"'{name}': a run name cannot start with '.' (tunelab keeps its "
                         "work folders under such names)")
    return name


def is_run(path: Path) -> bool:
    """Whether `path` is a run directory tunelab wrote (finished, or started by it)."""
    return (path / RUN_MARKER).is_file() or (path / "model" / MODEL_META).is_file()


def work_dir(run_dir: Path) -> Path:
    """Where a run trains until it is complete; kept after a kill, for --resume."""
    return run_dir.with_name(f".{run_dir.name}.partial")


def swap_in(work: Path, run_dir: Path) -> None:
    """Put a completed run in place, replacing the old one only now that the new one is
    whole. A crash between the two renames leaves the old run under .NAME.old-PID."""
    if run_dir.exists():
        old = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
        run_dir.rename(old)
        work.rename(run_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(run_dir)


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run name while it is written, so two trainings into one
    directory cannot both report success."""
    import fcntl

    from tunelab.errors import ConfigError

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir.with_name(f".{run_dir.name}.lock")
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"{run_dir} is being written by {holder}; wait for it to "
                              "finish, or choose another name with --set name=NEW") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
