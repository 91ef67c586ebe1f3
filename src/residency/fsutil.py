"""The one way residency writes files: every file the product writes goes through this module.

- `write_file(path, content, mode)`: a whole file (rendered outputs, .env, state.json, calibration
  store, litellm.yaml, SVG). A temp file with a random name is created in the target's own folder with
  O_CREAT|O_EXCL|O_NOFOLLOW (a planted file or symlink there is never opened), its mode is set through the
  fd (fchmod, so a 0600 secret is never readable by others and never chmods someone else's file), it is
  fsynced and renamed over the target. A target that is a symlink (or not a regular file) is refused;
  for a secret (mode without group/other bits) a symlinked parent folder is refused too.
- `open_append(path)`: a log opened for append with O_NOFOLLOW, in a folder that is not a symlink
  (mode 0600: logs may hold secrets).
- `open_lock(path)`: a lock file's fd, O_NOFOLLOW.
- `read_own_secret(path)`: a secret file's text, only if residency could have written it (see there).
- `child(folder, name)`: folder/name for a name that must be one path component (log files per model).
- `refuse_linked_folders(base, *parts)`: residency's own folders under `base` (the state folder) must not
  be symlinks: a planted `.residency` link would move state.json, the stack's key and the logs into a
  folder someone else controls, and `down` acts on the pids a state.json there names.

Do not write files any other way (no Path.write_text, open(..., "w"), tempfile + os.replace).
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
from pathlib import Path

from residency.errors import UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _refuse(path: Path, problem: str, fix: str) -> UnsafePathError:
    return UnsafePathError(f"{path}: {problem}; nothing written ({fix})")


def _check_target(dfd: int, path: Path) -> None:
    try:
        st = os.lstat(path.name, dir_fd=dfd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symlink and residency does not write through symlinks", "remove the link")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "exists and is not a regular file", "move it away")


def _open_dir(folder: Path, *, nofollow: bool) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC | (_NOFOLLOW if nofollow else 0)
    try:
        return os.open(folder, flags)
    except OSError as e:
        if nofollow and os.path.islink(folder):
            raise _refuse(
                folder,
                "is a symlink; secrets and logs are only written into a real folder",
                "use a real folder",
            ) from None
        raise _refuse(folder, f"cannot open the folder ({e.strerror})", "check the path") from None


def write_file(path: str | os.PathLike[str], content: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` atomically with `content`, created with `mode` (see the module docstring)."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    secret = not (mode & 0o077)
    dfd = _open_dir(path.parent, nofollow=secret)
    try:
        _check_target(dfd, path)
        for _ in range(16):
            tmp = f".{path.name[:64]}.{_secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dfd
                )
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 16 collisions of 64 random bits
            raise _refuse(path, "could not create a temp file", "clean the folder")
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; fchmod cannot follow a swapped path
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            _check_target(dfd, path)  # a symlink planted since the first check is refused, not replaced
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        try:
            os.fsync(dfd)
        except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
            pass
    finally:
        os.close(dfd)


def _open_nofollow(path: Path, flags: int, mode: int, what: str, *, real_parent: bool = False) -> int:
    dfd = _open_dir(path.parent, nofollow=real_parent) if real_parent else None
    if dfd is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(
            path.name if dfd is not None else path,
            flags | os.O_CREAT | _NOFOLLOW | _CLOEXEC,
            mode,
            dir_fd=dfd,
        )
    except OSError as e:
        if os.path.islink(path):
            raise _refuse(
                path, "is a symlink and residency does not write through symlinks", "remove the link"
            ) from None
        raise _refuse(path, f"cannot open {what} ({e.strerror})", "check the path") from None
    finally:
        if dfd is not None:
            os.close(dfd)


def open_append(path: str | os.PathLike[str], mode: int = 0o600):
    """A binary file object appending to `path`; a symlinked or non-regular `path`, or a symlinked
    folder holding it (a planted `logs` link), is refused."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND, mode, "for append", real_parent=True)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refuse(path, "exists and is not a regular file", "move it away")
    return os.fdopen(fd, "ab")


def open_lock(path: str | os.PathLike[str]) -> int:
    """An fd for a lock file (created 0644 if missing); a symlinked lock path is refused."""
    return _open_nofollow(Path(path), os.O_RDWR, 0o644, "the lock file")


def read_own_secret(path: str | os.PathLike[str]) -> str | None:
    """The text of a secret file residency wrote itself, else None.

    "Wrote itself" is checked from what `write_file` guarantees and an attacker without our uid cannot
    fake: a regular file (opened O_NOFOLLOW, so not a symlink), owned by this user, no group/other
    permission bits (0600). A key found anywhere else (a symlink to a planted file, a 0644 file, a file of
    another user) is never adopted: the caller generates a new one.
    """
    try:
        fd = os.open(Path(path), os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        if st.st_size > 1 << 16:  # a .env is a few lines
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read().decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def child(folder: str | os.PathLike[str], name: str, suffix: str = "") -> Path:
    """folder/(name+suffix), refusing a name that is not exactly one ordinary path component."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or len(name) > 200:
        raise _refuse(Path(folder) / "?", f"{name[:40]!r} is not a plain file name", "rename it in the spec")
    return Path(folder) / f"{name}{suffix}"


def refuse_linked_folders(base: str | os.PathLike[str], *parts: str) -> Path:
    """base/parts..., refusing it when any of the folders residency names under `base` is a symlink
    (a missing one is fine: mkdir makes a real folder). `base` itself is the user's choice."""
    p = Path(base)
    for part in parts:
        p = p / part
        if p.is_symlink():
            raise UnsafePathError(
                f"{p}: is a symlink; residency keeps a stack's state, key and logs only in a real folder "
                "(remove the link, or pass --state-dir with a real folder)"
            )
    return p
