"""The local JSON file: the embedded default, and what schwab-py's own token file is.

Writes are atomic (temp file in the same folder, fsync, rename) and created mode 0600. One
``flock`` on a sidecar ``<file>.lock`` is both the single-flight lease and the guard of the
compare-and-rename, so several processes on one machine never refresh at once; the kernel
drops the lock when its holder dies, so the lease never outlives a crashed process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ConfigurationError, LoginRequired, WriteConflict
from ..token import MAX_DOCUMENT_BYTES, Token
from .base import TokenStore, polled_lease


class FileStore(TokenStore):
    def __init__(self, path: str | os.PathLike[str], url: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.url = url or str(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._local = threading.local()

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> tuple[bytes, str, float | None]:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_DOCUMENT_BYTES + 1)
                mtime = os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            raise LoginRequired(
                f"no token at {self.url}: run `schwab-tokens login --store {self.url}`"
            ) from None
        except IsADirectoryError:
            raise ConfigurationError(f"{self.url} is a directory, not a token file") from None
        except PermissionError:
            raise ConfigurationError(f"cannot read {self.url}: permission denied") from None
        return raw, _digest(raw), mtime

    def version(self) -> str | None:
        try:
            return self.read_raw()[1]
        except LoginRequired:
            return None

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        data = token.to_json()
        with self._exclusive(wait=30.0):
            current = self.version()
            if current != expected_version:
                raise WriteConflict(f"{self.url} changed since it was read; not overwritten")
            self._replace(data)
        return _digest(data)

    def _replace(self, data: bytes) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except PermissionError:
            raise ConfigurationError(f"cannot write in {folder}: permission denied") from None
        try:
            with os.fdopen(fd, "wb") as fh:  # mkstemp creates it 0600
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)

    # -- the lease ---------------------------------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> contextlib.AbstractContextManager[bool]:
        del ttl  # the kernel releases a dead holder's flock at once
        return self._exclusive(wait, abandon_if)

    @contextlib.contextmanager
    def _exclusive(
        self, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> Iterator[bool]:
        # Re-entrant per thread: the policy writes while it holds the lease.
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield True
            finally:
                self._local.depth -= 1
            return
        fd = self._open_lock()
        try:
            with polled_lease(
                lambda: _try_flock(fd), lambda: None, wait, self.url, abandon_if
            ) as held:
                self._local.depth = 1 if held else 0
                try:
                    yield held
                finally:
                    self._local.depth = 0
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def _open_lock(self) -> int:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:
            raise ConfigurationError(
                f"cannot create the lock file {self.lock_path}: permission denied"
            ) from None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
