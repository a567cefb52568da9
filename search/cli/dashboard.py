"""``actsearch dashboard``: a live page over the runs in a folder, served on 127.0.0.1 while searches run.

The server is the standard library's ``ThreadingHTTPServer``: ``/`` is the page (``search.analysis.dashboard_page``),
``/api/runs`` every run's summary and ``/api/run?name=NAME`` one run's pictures' data (``search.analysis.dashboard``),
all JSON read from the stores read-only. One lock serialises the reads, so several open pages cost one poll each.
"""
from __future__ import annotations

import errno
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from search.cli.common import whole
from search.language.errors import UserError

HOST = "127.0.0.1"


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="a live web page over the runs in a folder (read-only, local)",
                       description="Serve a page on 127.0.0.1 that shows every run in the folder (state, children "
                                   "done, best so far, ETA), a run's course, its best functions' shapes and its "
                                   "significance results, refreshed every 2 s while searches run. It reads the "
                                   "stores read-only: a running search is not slowed or locked. Ctrl-C stops it.")
    p.add_argument("paths", nargs="*", default=["results"], metavar="RESULTS_DIR or RUN",
                   help="a folder of runs or run directories (default: results)")
    p.add_argument("--port", type=whole(0, 65_535), default=0, help="port (default: a free one, printed)")
    p.set_defaults(func=cmd_dashboard)


def make_server(board, port: int = 0) -> ThreadingHTTPServer:
    """The dashboard's server for ``board`` (a ``search.analysis.dashboard.Board``) on 127.0.0.1:``port`` (0: a free
    one). ``UserError`` in one line when the port is taken or not allowed."""
    from search.analysis.dashboard_page import page_html

    page = page_html().encode("utf-8")
    reading = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (the standard library's name)
            url = urlparse(self.path)
            try:
                if url.path in ("/", "/index.html"):
                    return self._send(200, page, "text/html; charset=utf-8")
                if url.path == "/api/runs":
                    with reading:
                        return self._json(200, board.runs())
                if url.path == "/api/run":
                    name = (parse_qs(url.query).get("name") or [""])[0]
                    with reading:
                        try:
                            return self._json(200, board.run(name))
                        except KeyError:
                            return self._json(404, {"error": f"no run named {name!r}"})
                return self._json(404, {"error": f"no page {url.path}"})
            except (BrokenPipeError, ConnectionResetError):
                return None  # the page was closed mid-answer

        def _json(self, code: int, data) -> None:
            self._send(code, json.dumps(data, allow_nan=False).encode("utf-8"), "application/json")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # a poll every 2 s would fill the terminal
            pass

    try:
        server = ThreadingHTTPServer((HOST, port), Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: already in use on {HOST}; pick another, or leave --port out for a free "
                            f"one") from None
        raise UserError(f"--port {port}: cannot serve on {HOST} ({exc.strerror or exc})") from None
    server.daemon_threads = True
    return server


def cmd_dashboard(args) -> int:
    from search.analysis.dashboard import Board, find_runs

    runs = find_runs(args.paths, empty_ok=True)  # an empty folder of runs is watched: runs started there appear
    board = Board(runs, args.paths)
    server = make_server(board, args.port)
    host, port = server.server_address[:2]
    what = f"{len(runs)} run{'s' * (len(runs) != 1)}" if runs else \
        f"{', '.join(map(str, args.paths))} (no run yet: runs started there appear as they start)"
    print(f"dashboard of {what} at http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
