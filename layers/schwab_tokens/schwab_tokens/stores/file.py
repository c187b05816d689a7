"""The local JSON file: the embedded default, and what schwab-py's own token file is.

Writes are atomic (temp file in the same folder, fsync, rename) and created mode 0600; folders
the store creates are 0700 whatever the umask; a symlink where a file would be written is
refused (``write_private``, which ``export`` uses too). One ``flock`` on a sidecar ``<file>.lock``
(opened without following symlinks) is both the single-flight lease and the guard of the
compare-and-rename, so several processes on one machine never refresh at once; the kernel drops
the lock when its holder dies, so the lease never outlives a crashed process, and temp files a
killed writer left behind are swept by the next writer, under the lock. The notes live in
``<file>.notes`` with the same guard, and the access view in ``<name>.access.json`` (see
``stores.access_url``), written the same way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..access import AccessView
from ..errors import (
    AccessDenied,
    ConfigurationError,
    LoginRequired,
    UsageError,
)
from ..token import Token
from .base import Lease, RawDocument, TokenStore, View, polled_lease
from .limits import MAX_DOCUMENT_BYTES, MAX_NOTES_BYTES, encode_document, encode_view

#: How long a write waits for another process's lock on the same file.
WRITE_WAIT_SECONDS = 30.0


def user_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded.

    Raises ``UsageError`` for a ``~user`` that does not exist.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise UsageError(f"{str(path)[:80]!r} names a home folder that does not exist") from None


class FileStore(TokenStore):
    """A token document in a local JSON file (see the module's docstring).

    Its notes are in ``<file>.notes``, its lease is the ``flock`` of ``<file>.lock``, its view a
    ``FileView``.
    """

    def __init__(self, path: str | os.PathLike[str], url: str | None = None) -> None:
        self.path = user_path(path)
        self.url = url or str(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.notes_path = self.path.with_name(self.path.name + ".notes")
        self._local = threading.local()
        self._view = FileView(self)

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> RawDocument:
        found = self._read(self.path, MAX_DOCUMENT_BYTES)
        if found is None:
            raise self.no_token_error()
        raw, mtime = found
        return RawDocument(raw, _digest(raw), mtime)

    def version(self) -> str | None:
        try:
            return self.read_raw().version
        except LoginRequired:
            return None

    def _read(self, path: Path, limit: int) -> tuple[bytes, float] | None:
        with _os_errors(f"read {path}"):
            try:
                with open(path, "rb") as fh:
                    raw = fh.read(limit + 1)  # the parser refuses anything longer
                    return raw, os.fstat(fh.fileno()).st_mtime
            except FileNotFoundError:
                return None

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        data = encode_document(token, self.url)
        with self._exclusive(WRITE_WAIT_SECONDS):
            if self.version() != expected_version:
                raise self.changed_error()
            write_private(self.path, data)
        return _digest(data)

    def _sweep(self) -> None:
        """Remove temp files a killed writer left (under the lock: nobody else is writing)."""
        for name in (self.path.name, self.notes_path.name, self._view.path.name):
            for stale in self.path.parent.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    # -- the access view -------------------------------------------------------------------------
    @property
    def view(self) -> FileView:
        """The access view beside the token file (``FileView``)."""
        return self._view

    # -- notes -------------------------------------------------------------------------------
    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        found = self._read(self.notes_path, MAX_NOTES_BYTES)
        if found is None:
            return None, None
        return found[0], _digest(found[0])

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        with self._exclusive(WRITE_WAIT_SECONDS):
            if self.read_notes_raw()[1] != expected_version:
                raise self.changed_error("notes changed")
            write_private(self.notes_path, raw)
        return _digest(raw)

    # -- the lease ---------------------------------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> contextlib.AbstractContextManager[Lease]:
        """The ``flock`` of ``<file>.lock``, re-entrant per thread.

        The kernel releases a dead holder's lock at once, so it has no deadline. Raises
        ``LeaseBusy`` when ``wait`` runs out, ``ConfigurationError`` or ``AccessDenied`` when the
        lock file cannot be opened.
        """
        return self._exclusive(wait, abandon_if, ttl)

    @contextlib.contextmanager
    def _exclusive(
        self, wait: float, abandon_if: Callable[[], bool] | None = None, ttl: float = 0.0
    ) -> Iterator[Lease]:
        # Re-entrant per thread: the policy writes while it holds the lease.
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield Lease(True)
            finally:
                self._local.depth -= 1
            return
        fd = self._open_lock()
        try:
            with polled_lease(
                lambda: _try_flock(fd), lambda: None, wait, ttl, self.url, abandon_if, False
            ) as lease:
                self._local.depth = 1 if lease.held else 0
                try:
                    if lease.held:
                        self._sweep()
                    yield lease
                finally:
                    self._local.depth = 0
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def _open_lock(self) -> int:
        make_private_folders(self.path.parent)
        with _os_errors(f"open the lock file {self.lock_path}"):
            try:
                # O_NOFOLLOW: a symlink planted at the lock's name must not make us create or
                # truncate a file elsewhere.
                return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
        raise ConfigurationError(f"the lock file {self.lock_path} is a symlink; remove it")

    def preflight(self) -> None:
        """Prove that a login can be stored here, leaving nothing behind if it then fails.

        Nothing behind: no lock, notes or view of a login that never happened. The token must be
        readable (none is fine), none of the files a login writes a symlink, an existing lock
        must open and lock, and the folder must take a new file (a temp file, removed at once:
        the lock, the token and its notes and view are all made in that folder, by the same
        user). Raises ``ConfigurationError`` or ``AccessDenied`` naming what is in the way.
        """
        with contextlib.suppress(LoginRequired):
            self.read_raw()
        for path in (self.path, self.notes_path, self._view.path):
            refuse_symlink(path)
        if os.path.lexists(self.lock_path):  # lexists: a dangling link is refused, not skipped
            with self.lease(30.0, 10.0):
                pass
        created = make_private_folders(self.path.parent)
        try:
            with _os_errors(f"write in {self.path.parent}"):
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
                )
                os.close(fd)
                os.unlink(tmp)
        finally:
            for folder in reversed(created):  # the login creates them again if it stores
                with contextlib.suppress(OSError):
                    folder.rmdir()


class FileView(View):
    """The access view beside a token file: ``tokens.json`` -> ``tokens.access.json``.

    Written atomically under the token file's lock, created 0600 like the token.
    """

    def __init__(self, store: FileStore) -> None:
        from . import view_name

        self.store = store
        self.store_url = store.url
        self.path = store.path.with_name(view_name(store.path.name))
        head, slash, tail = store.url.rpartition("/")
        self.url = head + slash + view_name(tail)

    def read_raw(self) -> RawDocument:
        found = self.store._read(self.path, MAX_DOCUMENT_BYTES)
        if found is None:
            raise self.missing_error()
        return RawDocument(found[0], _digest(found[0]), found[1])

    def current(self) -> tuple[AccessView | None, str | None]:
        found = self.store._read(self.path, MAX_DOCUMENT_BYTES)
        return (None, None) if found is None else self.usable(found[0], _digest(found[0]))

    def put(self, view: AccessView, expected_version: str | None) -> None:
        data = encode_view(view, self.url)
        with self.store._exclusive(WRITE_WAIT_SECONDS):
            if self.current()[1] != expected_version:
                raise self.store.changed_error("access view changed")
            write_private(self.path, data)


def write_private(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically, so that only its owner can read it.

    A temp file (mkstemp: 0600) in the same folder, fsynced, renamed over it: a reader sees the
    old file or the new one, never half of one, and an old file's wider mode goes with it.
    Missing folders are created 0700. Raises ``ConfigurationError`` for a symlink at ``target``
    (see ``refuse_symlink``), ``AccessDenied`` or ``ConfigurationError`` for what the file
    system refuses, naming the path.
    """
    folder = target.parent
    make_private_folders(folder)
    refuse_symlink(target)
    with _os_errors(f"write in {folder}"):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # A symlink planted since the check is replaced, never written through.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)


def refuse_symlink(target: Path) -> None:
    """Raise ``ConfigurationError`` if ``target`` is a symlink.

    Writing through it would write wherever it points, and replacing it would silently cut the
    user's link (and, for a token, put its lock in another folder than another link's to the
    same file).
    """
    if target.is_symlink():
        raise ConfigurationError(
            f"{target} is a symbolic link, which schwab-tokens does not write through or "
            "replace: remove it, or name the file it points to"
        )


def make_private_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents 0700, whatever the umask.

    A token's folder is nobody else's business. Returns the folders it created, outermost
    first. Raises ``AccessDenied`` or ``ConfigurationError`` naming a folder it could not
    create.
    """
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        with _os_errors(f"create the folder {each}"):
            each.mkdir(mode=0o700, exist_ok=True)
            os.chmod(each, 0o700)  # mkdir's mode is filtered by the umask
    return missing[::-1]


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """The file system's refusals as the package's errors, each naming the path: no access is
    ``AccessDenied``; anything else (a directory where a file should be, a file where a folder
    should be, a full or read-only disk) is ``ConfigurationError``."""
    try:
        yield
    except PermissionError:
        raise AccessDenied(f"cannot {what}: permission denied") from None
    except IsADirectoryError:
        raise ConfigurationError(f"cannot {what}: it is a directory, not a token file") from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot {what} ({exc.strerror or type(exc).__name__}); check the path and the disk"
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
