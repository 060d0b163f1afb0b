"""Database helpers shared by the web service (app.py) and the worker (worker.py).

Connection settings come from the environment: either ``DATABASE_URL``
(``postgresql://user:password@host:port/dbname``) or the usual libpq variables
``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE``.
"""

import contextlib
import os
import sys
import threading
import time

import psycopg2
import psycopg2.extensions

# Serialises schema creation between every web and worker container that may
# start at the same moment (blue and green side by side): concurrent
# CREATE TABLE IF NOT EXISTS can otherwise fail with a unique violation.
_SCHEMA_LOCK_KEY = 0x636F756E  # "coun"

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS visits (
    id      integer PRIMARY KEY CHECK (id = 1),
    count   bigint  NOT NULL DEFAULT 0
);
INSERT INTO visits (id, count) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS heartbeats (
    id      bigserial   PRIMARY KEY,
    worker  text        NOT NULL,
    version text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS heartbeats_at_idx ON heartbeats (at);
-- One row per POST /requests that ran: no unique key, so a request run twice shows as two rows.
CREATE TABLE IF NOT EXISTS requests (
    request_id text        NOT NULL,
    version    text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
"""

# Errors after which a connection is unusable and must be thrown away.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def connect_kwargs():
    """Keyword arguments for psycopg2.connect() built from the environment."""
    kwargs = {"connect_timeout": int(os.environ.get("PGCONNECT_TIMEOUT", "3")),
              "application_name": os.environ.get("PGAPPNAME", "counter")}
    url = os.environ.get("DATABASE_URL")
    if url:
        kwargs["dsn"] = url
        return kwargs
    kwargs.update(
        host=os.environ.get("PGHOST", "db"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "counter"),
        dbname=os.environ.get("PGDATABASE", "counter"),
    )
    if "PGPASSWORD" in os.environ:
        kwargs["password"] = os.environ["PGPASSWORD"]
    return kwargs


def describe_target():
    """Where we connect to, without the password, for log lines."""
    kw = connect_kwargs()
    if "dsn" in kw:
        try:
            params = psycopg2.extensions.parse_dsn(kw["dsn"])
        except psycopg2.ProgrammingError:
            return "DATABASE_URL (unparsable)"
        return "%s@%s:%s/%s" % (params.get("user", "?"), params.get("host", "?"),
                                params.get("port", "5432"), params.get("dbname", "?"))
    return "%s@%s:%s/%s" % (kw["user"], kw["host"], kw["port"], kw["dbname"])


def connect():
    conn = psycopg2.connect(**connect_kwargs())
    conn.autocommit = True
    return conn


class Pool:
    """A small thread-safe connection pool that blocks instead of failing.

    psycopg2's ThreadedConnectionPool raises as soon as ``maxconn`` is reached;
    under a burst of requests we would rather wait a little.
    """

    def __init__(self, maxconn=8, acquire_timeout=5.0):
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)
        self._acquire_timeout = acquire_timeout
        self._closed = False

    @contextlib.contextmanager
    def connection(self):
        if not self._slots.acquire(timeout=self._acquire_timeout):
            raise psycopg2.OperationalError("connection pool exhausted")
        conn = None
        try:
            with self._lock:
                while self._idle and conn is None:
                    conn = self._idle.pop()
                    if conn.closed:
                        conn = None
            if conn is None:
                conn = connect()
            yield conn
        except BaseException:
            if conn is not None:
                # Never hand a connection in an unknown state to someone else.
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None and not conn.closed:
                with self._lock:
                    if self._closed:
                        conn.close()
                    else:
                        self._idle.append(conn)
            self._slots.release()

    def run(self, fn, retries=1):
        """Call ``fn(cursor)`` on a pooled connection and return its result.

        A connection broken under our feet (database restarted, network blip)
        is dropped and the call is retried on a fresh one.
        """
        for attempt in range(retries + 1):
            try:
                with self.connection() as conn, conn.cursor() as cur:
                    return fn(cur)
            except CONNECTION_ERRORS:
                if attempt >= retries:
                    raise

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def ensure_schema(cur):
    # Connections are in autocommit mode, so open the transaction by hand. On
    # error the pool throws the connection away, which rolls it back.
    cur.execute("BEGIN")
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
    cur.execute(SCHEMA_SQL)
    cur.execute("COMMIT")


def wait_for_schema(pool, stop_event, wait_seconds):
    """Create the tables, retrying while the database is not reachable yet.

    Returns True once the schema exists, False if ``stop_event`` was set or
    ``wait_seconds`` went by first.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    attempt = 0
    while not stop_event.is_set():
        attempt += 1
        try:
            pool.run(ensure_schema, retries=0)
            log("database ready at %s (attempt %d)" % (describe_target(), attempt))
            return True
        except psycopg2.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log("database still unavailable after %ds: %s" % (wait_seconds, reason))
                return False
            log("waiting for database at %s (attempt %d): %s" % (describe_target(), attempt, reason))
            stop_event.wait(min(delay, remaining))
            delay = min(delay * 2, 5.0)
    return False
