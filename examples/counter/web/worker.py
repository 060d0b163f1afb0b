"""counter worker: records a heartbeat row in Postgres every few seconds.

Each beat inserts a row into ``heartbeats`` (worker name, version, time),
logs a line and touches HEARTBEAT_FILE, which the container healthcheck looks
at. Rows older than HEARTBEAT_RETENTION_HOURS are pruned now and then. On
SIGTERM/SIGINT the current beat finishes and the worker exits 0.
"""

import os
import signal
import socket
import sys
import threading
import time

import psycopg2
import psycopg2.errors

import counterdb
from counterdb import log

INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "5"))
RETENTION_HOURS = float(os.environ.get("HEARTBEAT_RETENTION_HOURS", "24"))
HEARTBEAT_FILE = os.environ.get("HEARTBEAT_FILE", "/tmp/worker-heartbeat")
DB_WAIT_SECONDS = float(os.environ.get("DB_WAIT_SECONDS", "120"))
PRUNE_EVERY = 100  # beats
VERSION_FILE = os.environ.get(
    "VERSION_FILE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION"))

try:
    with open(VERSION_FILE, encoding="utf-8") as f:
        VERSION = f.read().strip() or "unknown"
except OSError:
    VERSION = "unknown"

WORKER_NAME = os.environ.get("WORKER_NAME") or socket.gethostname()
stopping = threading.Event()


def beat(cur):
    cur.execute("INSERT INTO heartbeats (worker, version) VALUES (%s, %s) RETURNING id, at",
                (WORKER_NAME, VERSION))
    return cur.fetchone()


def prune(cur):
    cur.execute("DELETE FROM heartbeats WHERE at < now() - make_interval(secs => %s)",
                (RETENTION_HOURS * 3600,))
    return cur.rowcount


def touch(path):
    with open(path, "a", encoding="utf-8"):
        pass
    os.utime(path, None)


def main():
    def on_signal(signum, _frame):
        if not stopping.is_set():
            log("received %s: stopping after the current beat" % signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pool = counterdb.Pool(maxconn=1)
    log("worker %s (%s) starting, one heartbeat every %gs (database %s)"
        % (WORKER_NAME, VERSION, INTERVAL, counterdb.describe_target()))

    schema_ok = False
    beats = 0
    while not stopping.is_set():
        if not schema_ok:
            schema_ok = counterdb.wait_for_schema(pool, stopping, DB_WAIT_SECONDS)
            if not schema_ok:
                continue  # keep trying (or stop, if asked to)
        started = time.monotonic()
        try:
            row_id, at = pool.run(beat)
            beats += 1
            touch(HEARTBEAT_FILE)
            log("heartbeat #%d recorded (row %d at %s)" % (beats, row_id, at.isoformat()))
            if beats % PRUNE_EVERY == 1:
                removed = pool.run(prune)
                if removed:
                    log("pruned %d heartbeats older than %gh" % (removed, RETENTION_HOURS))
        except psycopg2.Error as exc:
            log("heartbeat failed: %s" % (str(exc).strip().splitlines() or [type(exc).__name__])[0])
            if isinstance(exc, psycopg2.errors.UndefinedTable):
                schema_ok = False  # somebody dropped it: create it again
        stopping.wait(max(0.0, INTERVAL - (time.monotonic() - started)))

    pool.close()
    log("worker stopped cleanly after %d heartbeats" % beats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
