"""A stat-keyed cache of file digests, so that each file of a pipeline is hashed once.

Every manifest records the sha256 of each input and output. In a chain ``pad -> truncate ->
batch`` each intermediate file would be hashed twice (as it is written, and again when the next
step reads it), and a re-run after one option changed would hash unchanged inputs again. Like
DVC's state database and git's index, the cache maps what ``stat`` says of a regular file --
``(device, inode, size, mtime_ns, ctime_ns)`` -- to its sha256:

- each output is recorded with its final stat right after it is renamed into place (its sha256
  was computed from the bytes as they were written);
- an input whose stat matches a record exactly gets that sha256, and its bytes are not read for
  hashing (:class:`~lstmshape.io.digest.InputDigest` asks :meth:`DigestCache.lookup` first);
  an input that does not match is hashed as always, and recorded;
- ``verify`` never asks: it is the integrity check.

**Racy records** (git's "racy clean" problem). Writing a file stamps its mtime and ctime with the
kernel's clock at the *file system's timestamp granularity*; a second change within the same
granule can leave every stat field as it was. So a record is only trusted when the file's mtime
and ctime are older, by at least one granule, than the moment the stat was taken
(``recorded_ns``, read from the clock just before the ``stat``): any later change then gets a
stamp the record does not have. The granularity is the coarser of

- what the stored stamps show: a file system that keeps whole seconds (ext3, HFS+, some NFS) or
  two (FAT) stamps multiples of them (see :func:`timestamp_granularity_ns`), and
- the clock the kernel stamps with: Linux uses its coarse clock, which moves once per tick
  (``clock_getres(CLOCK_REALTIME_COARSE)``, 1-10 ms) even where stamps show nanoseconds.

An output is stamped (ctime, by the rename) just before it is recorded, so recording waits out
the rest of that granule (at most :data:`MAX_RACY_WAIT_NS`, one tick: ~4 ms here) instead of
writing a record the next step could not trust; on a file system with 1 s stamps it is not
recorded at all. An input whose stamps are that recent is not recorded either (the next run
records it). A file changed by another process within one granule of *our own write* of it is
beyond any stat-based cache (and would make the manifest wrong anyway).

**Failure is never an error.** The cache is an SQLite database (WAL mode, so readers never wait
for a writer; a busy timeout for concurrent writers, as in ``make -j``). If it cannot be opened,
read or written (read-only folder, full disk, locked beyond the timeout), the run goes on
hashing every file and says so in one warning; a damaged database is removed and started anew
(one warning). Each run makes one short write transaction at its end, which also prunes the
least recently used records beyond :data:`MAX_ENTRIES`.

Where: ``$LSTMSHAPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/lstmshape``, else
``~/.cache/lstmshape``. Off with ``--no-digest-cache`` or ``LSTMSHAPE_NO_DIGEST_CACHE=1``.
``sqlite3`` is imported only when the cache is first used (not by ``lstmshape --help``).

Example:
    >>> import hashlib, os, tempfile
    >>> folder = tempfile.mkdtemp(); path = os.path.join(folder, "x.bin")
    >>> _ = open(path, "wb").write(b"abc"); os.utime(path, ns=(0, 0))  # an old mtime
    >>> cache = DigestCache(os.path.join(folder, "cache"))
    >>> sha = hashlib.sha256(b"abc").hexdigest()
    >>> time.sleep(0.05)  # a record of a file changed in the last clock tick is not trusted
    >>> stat_time = time.time_ns(); info = os.stat(path)
    >>> cache.remember(info, sha, stat_time)
    >>> cache.flush(); cache.lookup(os.stat(path)) == sha
    True
    >>> cache_info(os.path.join(folder, "cache"))["entries"]
    1
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import OutputError

if TYPE_CHECKING:
    import sqlite3

    from .digest import Digest

#: environment: where the cache lives (else $XDG_CACHE_HOME/lstmshape, ~/.cache/lstmshape)
CACHE_DIR_ENV = "LSTMSHAPE_CACHE_DIR"
#: environment: a non-empty value other than "0" turns the cache off
DISABLE_ENV = "LSTMSHAPE_NO_DIGEST_CACHE"
#: the database file; a new schema gets a new name, so two versions never fight over one file
DB_NAME = "digests-v1.sqlite3"
#: records kept; beyond it, the least recently used ones go (~100 bytes each: ~5 MB)
MAX_ENTRIES = 50_000
#: pruning removes this share more than needed, so that it does not run at every write
PRUNE_SLACK = 0.1
#: how long a run waits for another run's write transaction before it gives up on the cache
BUSY_TIMEOUT_S = 2.0
#: the longest an output's record waits for its racy window to pass; longer: not recorded
MAX_RACY_WAIT_NS = 20_000_000
#: Linux's CLOCK_REALTIME_COARSE (not exported by Python's time module)
CLOCK_REALTIME_COARSE = 5
#: the stamp granularity assumed where the kernel's clock tick is unknown (not Linux)
DEFAULT_TICK_NS = 10_000_000
#: SQLite result codes that mean the file is not a (sound) database: rebuild it
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26

SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    recorded_ns INTEGER NOT NULL,
    granularity_ns INTEGER NOT NULL,
    used_ns INTEGER NOT NULL,
    PRIMARY KEY (device, inode)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests_by_use ON digests (used_ns);
"""


def cache_folder() -> str:
    """Where the cache lives: ``$LSTMSHAPE_CACHE_DIR``, ``$XDG_CACHE_HOME/lstmshape`` or
    ``~/.cache/lstmshape``.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {CACHE_DIR_ENV: "/tmp/c"}):
        ...     cache_folder()
        '/tmp/c'
        >>> with mock.patch.dict(os.environ, {CACHE_DIR_ENV: "", "XDG_CACHE_HOME": "/var/c"}):
        ...     cache_folder()
        '/var/c/lstmshape'
    """
    folder = os.environ.get(CACHE_DIR_ENV)
    if folder:
        return os.path.abspath(folder)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # a relative value is to be ignored (XDG spec)
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lstmshape")


def disabled_by_environment() -> bool:
    """``LSTMSHAPE_NO_DIGEST_CACHE`` set to anything but empty or ``0``."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def open_digest_cache(enabled: bool = True,
                      warn: Callable[[str], None] | None = None) -> DigestCache | None:
    """The cache for one run, or ``None`` when the option or the environment turns it off.
    Nothing is opened yet: the database is opened at the first lookup."""
    if not enabled or disabled_by_environment():
        return None
    return DigestCache(cache_folder(), warn=warn)


# ---------------------------------------------------------------------------------------------
# Trusting a record


def clock_tick_ns() -> int:
    """The resolution of the clock the kernel stamps files with (Linux: its coarse clock)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            return max(1, int(time.clock_getres(CLOCK_REALTIME_COARSE) * 1e9))
    return DEFAULT_TICK_NS


def timestamp_granularity_ns(info: os.stat_result) -> int:
    """How far apart two stamps of this file's file system can be and still be equal: the
    coarser of the kernel's clock tick and what its mtime and ctime show (both whole seconds:
    1 s; both even seconds: 2 s, as FAT keeps them; both whole 10 ms: exFAT's 10 ms).

    Example:
        >>> def stamped(ns): return os.stat_result((0,) * 13 + (ns, ns, ns))
        >>> timestamp_granularity_ns(stamped(1_700_000_001 * 10**9))  # whole seconds: 1 s
        1000000000
        >>> timestamp_granularity_ns(stamped(1_700_000_001_234_567_891)) < 10**9  # a clock tick
        True
    """
    stored = 1
    for step in (2 * 10**9, 10**9, 10**7):
        if info.st_mtime_ns % step == 0 and info.st_ctime_ns % step == 0:
            stored = step
            break
    return max(stored, clock_tick_ns())


def racy(info: os.stat_result, stat_time_ns: int, granularity_ns: int) -> bool:
    """Whether a change after ``stat_time_ns`` could leave this stat as it is: the file's mtime
    or ctime (every change of content or of mtime sets the ctime) is not older than
    ``stat_time_ns`` by a whole granule.

    Example:
        >>> info = os.stat_result((0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5_000, 5_000, 5_000))
        >>> racy(info, 6_000, 1_000), racy(info, 5_999, 1_000)
        (False, True)
    """
    return max(info.st_mtime_ns, info.st_ctime_ns) + granularity_ns > stat_time_ns


def signed64(value: int) -> int:
    """st_dev and st_ino are unsigned 64-bit; SQLite integers are signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


def identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """The key of a record: ``(device, inode, size, mtime_ns, ctime_ns)``."""
    return (signed64(info.st_dev), signed64(info.st_ino), info.st_size, info.st_mtime_ns,
            info.st_ctime_ns)


# ---------------------------------------------------------------------------------------------
# The database


class CacheUnusable(Exception):
    """The cache cannot be used for the rest of this run (said once, in a warning)."""


class DigestCache:
    """One run's view of the digest cache: lookups now, writes queued for one transaction.

    Used from the thread that runs the command only (an sqlite3 connection is not shared
    between threads; the hashing threads never touch the cache). Every method is safe to call
    when the cache is unusable: lookups find nothing, writes are dropped, and ``warn`` (the
    job's ``warn``) hears about it once.

    Example:
        >>> import tempfile
        >>> cache = DigestCache(tempfile.mkdtemp())
        >>> cache.lookup(os.stat(__file__)) is None   # never recorded
        True
    """

    def __init__(self, folder: str, *, warn: Callable[[str], None] | None = None,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.folder = folder
        self.path = os.path.join(folder, DB_NAME)
        self.max_entries = max_entries
        self._warn = warn
        self._connection: sqlite3.Connection | None = None
        self._unusable = False
        self._rebuilt = False
        #: records to write: identity -> (sha256, recorded_ns, granularity_ns)
        self._pending: dict[tuple[int, int, int, int, int], tuple[str, int, int]] = {}
        #: (device, inode) of records that were used: their use time is refreshed
        self._used: set[tuple[int, int]] = set()

    # -- reading --------------------------------------------------------------------------------
    def lookup(self, info: os.stat_result) -> str | None:
        """The sha256 recorded for exactly this stat, if the record can be trusted."""
        key = identity(info)
        row = self._query(lambda db: db.execute(
            "SELECT sha256, recorded_ns, granularity_ns FROM digests WHERE device = ? AND "
            "inode = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?", key).fetchone())
        if not row or racy(info, int(row[1]), int(row[2])) or len(row[0]) != 32:
            return None
        self._used.add(key[:2])
        return bytes(row[0]).hex()

    # -- writing --------------------------------------------------------------------------------
    def remember(self, info: os.stat_result, sha256: str, stat_time_ns: int) -> None:
        """Queue a record: ``sha256`` is the digest of the file as ``info`` (taken just after
        ``stat_time_ns``) describes it. A racy stat is not recorded (see :func:`racy`)."""
        granularity = timestamp_granularity_ns(info)
        if not racy(info, stat_time_ns, granularity):
            self._pending[identity(info)] = (sha256, stat_time_ns, granularity)

    def record_run(self, inputs: Iterable[Digest],
                   outputs: Iterable[tuple[str, str, os.stat_result]]) -> None:
        """At the end of a run: record each input hashed from its bytes and each output
        ``(final path, sha256, stat of the temp file just before its rename)``, write them in
        one transaction and close the database."""
        for digest in inputs:
            if digest.cached or digest.stat is None:
                continue
            try:
                sha = digest.hexdigest()
            except Exception:  # not hashed (failed, closed): nothing to record
                continue
            self.remember(digest.stat, sha, digest.stat_time_ns)
        self.record_outputs(outputs)
        self.flush()
        self.close()

    def record_outputs(self, outputs: Iterable[tuple[str, str, os.stat_result]]) -> None:
        """Record outputs with their final stat, once their racy window has passed."""
        found = []
        for path, sha, before in outputs:
            with contextlib.suppress(OSError):
                info = os.stat(path, follow_symlinks=False)
                # the very file that was renamed there, unchanged (the rename set its ctime)
                if (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) == (
                        before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns):
                    found.append((path, sha, info))
        if not found:
            return
        # The rename has just stamped each ctime: wait (once, for all) until a later change
        # could no longer get the same stamp, rather than record what the next step can't trust.
        ready = max(max(info.st_mtime_ns, info.st_ctime_ns) + timestamp_granularity_ns(info)
                    for _, _, info in found)
        wait = ready - time.time_ns() + 1
        if wait > MAX_RACY_WAIT_NS:
            return
        if wait > 0:
            time.sleep(wait / 1e9)
        for path, sha, info in found:
            stat_time = time.time_ns()
            with contextlib.suppress(OSError):
                now = os.stat(path, follow_symlinks=False)
                if identity(now) == identity(info):
                    self.remember(now, sha, stat_time)

    def flush(self) -> None:
        """Write the queued records and use times in one transaction; prune if too many."""
        if not self._pending and not self._used:
            return
        now = time.time_ns()
        rows = [(*key, bytes.fromhex(sha), recorded, granularity, now)
                for key, (sha, recorded, granularity) in self._pending.items()]
        used = [(now, *key) for key in self._used]
        self._pending.clear()
        self._used.clear()

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock
            try:
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?,?,?,?,?)",
                               rows)
                db.executemany("UPDATE digests SET used_ns = ? WHERE device = ? AND inode = ?",
                               used)
                count = int(db.execute("SELECT count(*) FROM digests").fetchone()[0])
                if count > self.max_entries:
                    excess = count - int(self.max_entries * (1 - PRUNE_SLACK))
                    db.execute("DELETE FROM digests WHERE (device, inode) IN (SELECT device, "
                               "inode FROM digests ORDER BY used_ns LIMIT ?)", (excess,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
                raise

        self._query(write)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    # -- the connection, and what goes wrong with it -------------------------------------------
    def _query(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``action`` on the database; on failure, rebuild a damaged one (once) or give up
        on the cache for this run. Returns ``None`` when the cache is not usable."""
        import sqlite3

        while not self._unusable:
            try:
                return action(self._connect())
            except (sqlite3.Error, OSError) as err:
                self.close()
                if damaged(err) and not self._rebuilt:
                    self._rebuilt = True
                    if self._rebuild(err):
                        continue
                self._give_up(f"digest cache {self.path} cannot be used "
                              f"({describe(err)}); hashing every file")
        return None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        import sqlite3

        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # No fsync, ever (not even at a checkpoint): on ext4 an fsync commits the journal,
            # which first writes out the data of every file renamed since (data=ordered) -- the
            # output this run just renamed into place, hundreds of MB -- so one fsync of the
            # cache could cost as much as the run. A crash may damage the database (it is then
            # rebuilt) but not make a record lie: records are of exact stats, and a file's
            # stat and bytes survive a crash together or not at all, cache or no cache.
            # WAL: readers never wait for the writer.
            connection.execute("PRAGMA synchronous = OFF")
            connection.execute("PRAGMA journal_mode = WAL")
            if connection.execute("PRAGMA user_version").fetchone()[0] != 1:
                connection.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = 1; "
                                         f"COMMIT;")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _rebuild(self, err: BaseException) -> bool:
        """Remove the damaged database (and its WAL and shared-memory files) to start anew."""
        try:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)
        except OSError as failed:
            self._give_up(f"digest cache {self.path} is damaged ({describe(err)}) and cannot be "
                          f"removed ({describe(failed)}); hashing every file")
            return False
        self._say(f"digest cache {self.path} was damaged ({describe(err)}); started a new one")
        return True

    def _give_up(self, message: str) -> None:
        self._unusable = True
        self._pending.clear()
        self._say(message)

    def _say(self, message: str) -> None:
        """One warning per run at most: the first thing that went wrong."""
        if self._warn is not None:
            self._warn(message)
            self._warn = None


def damaged(err: BaseException) -> bool:
    """Whether an SQLite error says the file is not a sound database (rebuild it), rather than
    that it cannot be used now (locked, read-only, full)."""
    import sqlite3

    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    return isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError)


def describe(err: BaseException) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err) or type(err).__name__


# ---------------------------------------------------------------------------------------------
# lstmshape cache info | clear


def cache_info(folder: str | None = None) -> dict[str, Any]:
    """What the cache holds: its path, whether it is on, its records and size on disk.

    Example:
        >>> import tempfile
        >>> info = cache_info(tempfile.mkdtemp())
        >>> info["entries"], info["bytes"]
        (0, 0)
    """
    folder = folder if folder is not None else cache_folder()
    path = os.path.join(folder, DB_NAME)
    size = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            size += os.stat(path + suffix).st_size
    info: dict[str, Any] = {"path": path, "enabled": not disabled_by_environment(),
                            "entries": 0, "bytes": size, "max_entries": MAX_ENTRIES,
                            "problem": None}
    if os.path.exists(path):
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=BUSY_TIMEOUT_S)) as db:
                info["entries"] = int(db.execute("SELECT count(*) FROM digests").fetchone()[0])
        except sqlite3.Error as err:
            info["entries"] = None
            info["problem"] = describe(err)
    return info


def clear_cache(folder: str | None = None) -> int:
    """Remove every record; returns how many there were. A damaged database is removed.
    Raises :class:`~lstmshape.errors.OutputError` when the database cannot be written.

    Example:
        >>> import tempfile
        >>> clear_cache(tempfile.mkdtemp())
        0
    """
    folder = folder if folder is not None else cache_folder()
    path = os.path.join(folder, DB_NAME)
    if not os.path.exists(path):
        return 0
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S,
                                                isolation_level=None)) as db:
            count = int(db.execute("SELECT count(*) FROM digests").fetchone()[0])
            db.execute("DELETE FROM digests")
            with contextlib.suppress(sqlite3.Error):  # give the space back, unless busy
                db.execute("VACUUM")
            return count
    except sqlite3.Error as err:
        if not damaged(err):
            raise OutputError(f"{path}: cannot clear the digest cache: {describe(err)}") from None
    for suffix in ("", "-wal", "-shm"):  # damaged: nothing in it can be counted or kept
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    return 0
