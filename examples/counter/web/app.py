"""counter: a tiny web app that counts its visits in Postgres.

Endpoints
  GET /          HTML page with the app version and the visit counter (+1 per GET)
  GET /visits    the current count as plain text, without incrementing it
  GET /version   the version baked into the image (file VERSION), plain text
  GET /healthz   200 "ok" when the database answers SELECT 1, else 503
  GET /slow?s=N  sleeps N seconds (float, at most 30) then answers 200
  POST /requests?s=N   records the request's X-Request-Id in Postgres, then sleeps N
                 seconds and answers 200 (a request that must never run twice)
  GET /requests/twice  "<rows> <distinct ids>" on the first line, then each id recorded
                 more than once with its count

Only the standard library and psycopg2. On SIGTERM/SIGINT the server stops
accepting connections, lets the requests in flight finish and exits 0.
"""

import html
import http.server
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

import psycopg2

import counterdb
from counterdb import log

PORT = int(os.environ.get("PORT", "8000"))
SLOW_MAX_SECONDS = 30.0
DB_WAIT_SECONDS = float(os.environ.get("DB_WAIT_SECONDS", "120"))
VERSION_FILE = os.environ.get(
    "VERSION_FILE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION"))


def read_version():
    try:
        with open(VERSION_FILE, encoding="utf-8") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


VERSION = read_version()
HOSTNAME = socket.gethostname()

pool = counterdb.Pool(maxconn=int(os.environ.get("DB_POOL_SIZE", "8")))
schema_ready = threading.Event()
stopping = threading.Event()
_schema_lock = threading.Lock()


def ensure_schema_once():
    """Create the tables if the startup thread has not managed to yet."""
    if schema_ready.is_set():
        return
    with _schema_lock:
        if not schema_ready.is_set():
            pool.run(counterdb.ensure_schema)
            schema_ready.set()


def _increment(cur):
    cur.execute("UPDATE visits SET count = count + 1 WHERE id = 1 RETURNING count")
    row = cur.fetchone()
    if row is None:  # the row was deleted by hand: start again from 1
        cur.execute("INSERT INTO visits (id, count) VALUES (1, 1) "
                    "ON CONFLICT (id) DO UPDATE SET count = visits.count + 1 RETURNING count")
        row = cur.fetchone()
    return row[0]


def _current(cur):
    cur.execute("SELECT count FROM visits WHERE id = 1")
    row = cur.fetchone()
    return row[0] if row else 0


def _ping(cur):
    cur.execute("SELECT 1")
    return cur.fetchone()[0] == 1


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>counter {version}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; color: #222; }}
  .count {{ font-size: 4rem; font-weight: bold; margin: 1rem 0; }}
  .meta {{ color: #666; font-size: .9rem; }}
  code {{ background: #f3f3f3; padding: 0 .3em; }}
</style>
</head>
<body>
<h1>counter <code id="version">{version}</code></h1>
<p>This page has been visited</p>
<p class="count" id="visits">{visits}</p>
<p>times.</p>
<p class="meta">Served by <code>{host}</code> at {now} UTC.</p>
</body>
</html>
"""


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so an idle keep-alive connection
    # never holds up a graceful shutdown.
    protocol_version = "HTTP/1.0"
    server_version = "counter/" + VERSION

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        route = {
            "/": self.index,
            "/visits": self.visits,
            "/version": self.version,
            "/healthz": self.healthz,
            "/slow": self.slow,
            "/requests/twice": self.twice,
        }.get(url.path)
        self.dispatch(route, url)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.dispatch({"/requests": self.record}.get(url.path), url)

    def dispatch(self, route, url):
        if route is None:
            self.send_text(404, "not found\n")
            return
        try:
            route(urllib.parse.parse_qs(url.query))
        except psycopg2.Error as exc:
            log("database error on %s: %s" % (url.path, str(exc).strip() or type(exc).__name__))
            self.send_text(503, "database unavailable\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    # --- routes -----------------------------------------------------------

    def index(self, _query):
        ensure_schema_once()
        count = pool.run(_increment, retries=1)
        body = PAGE.format(version=html.escape(VERSION), visits=count,
                           host=html.escape(HOSTNAME),
                           now=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
        self.send_text(200, body, "text/html; charset=utf-8")

    def visits(self, _query):
        ensure_schema_once()
        self.send_text(200, str(pool.run(_current)))

    def version(self, _query):
        self.send_text(200, VERSION)

    def healthz(self, _query):
        try:
            ensure_schema_once()
            ok = pool.run(_ping)
        except psycopg2.Error as exc:
            log("healthz: database unavailable: %s" % (str(exc).strip().splitlines() or [type(exc).__name__])[0])
            ok = False
        if ok:
            self.send_text(200, "ok")
        else:
            self.send_text(503, "database unavailable")

    def slow(self, query):
        raw = query.get("s", ["1"])[0]
        try:
            seconds = float(raw)
        except ValueError:
            self.send_text(400, "s must be a number of seconds\n")
            return
        if seconds != seconds:  # NaN
            seconds = 0.0
        seconds = min(max(seconds, 0.0), SLOW_MAX_SECONDS)
        time.sleep(seconds)
        self.send_text(200, "slept %.3f s (%s)\n" % (seconds, VERSION))

    def record(self, query):
        request_id = self.headers.get("X-Request-Id", "")
        if not request_id:
            self.send_text(400, "X-Request-Id is required\n")
            return
        ensure_schema_once()
        pool.run(lambda cur: cur.execute("INSERT INTO requests (request_id, version) VALUES (%s, %s)",
                                         (request_id, VERSION)), retries=0)  # never run twice here either
        time.sleep(min(max(_seconds(query), 0.0), SLOW_MAX_SECONDS))
        self.send_text(200, "recorded %s (%s)\n" % (request_id, VERSION))

    def twice(self, _query):
        ensure_schema_once()

        def read(cur):
            cur.execute("SELECT count(*), count(DISTINCT request_id) FROM requests")
            rows, distinct = cur.fetchone()
            cur.execute("SELECT request_id, count(*) FROM requests GROUP BY request_id HAVING count(*) > 1")
            return rows, distinct, cur.fetchall()

        rows, distinct, repeated = pool.run(read)
        self.send_text(200, "%d %d\n" % (rows, distinct) + "".join("%s %d\n" % r for r in repeated))

    # --- helpers ----------------------------------------------------------

    def send_text(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        # Health probes every second would drown everything else.
        if getattr(self, "path", "").startswith("/healthz") and getattr(self, "_status", 0) == 200:
            return
        log("%s %s" % (self.address_string(), fmt % args))

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)


def _seconds(query):
    try:
        value = float(query.get("s", ["0"])[0])
    except ValueError:
        return 0.0
    return 0.0 if value != value else value  # NaN


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False      # server_close() waits for requests in flight
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    server = Server(("0.0.0.0", PORT), Handler)

    def on_signal(signum, _frame):
        if stopping.is_set():
            return
        stopping.set()
        log("received %s: no longer accepting connections, finishing requests in flight"
            % signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, and serve_forever()
        # runs in this very (main) thread: call it from another one.
        threading.Thread(target=server.shutdown, name="shutdown").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def init_schema():
        if counterdb.wait_for_schema(pool, stopping, DB_WAIT_SECONDS):
            schema_ready.set()
        # Otherwise requests will try again (and /healthz stays 503 meanwhile).

    threading.Thread(target=init_schema, name="schema", daemon=True).start()

    log("counter %s listening on :%d (database %s)" % (VERSION, PORT, counterdb.describe_target()))
    started = time.monotonic()
    server.serve_forever(poll_interval=0.2)
    # Closes the listening socket, then joins every request thread.
    server.server_close()
    pool.close()
    log("stopped cleanly after %.1f s of service" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
