"""A small ClickHouse-HTTP-compatible front over chdb, the ClickHouse 26.9 engine in-process.

No modern ClickHouse server can be installed from the registries this project may use, so the
embedded default and the tests run the real engine (PyPI `chdb-core`) behind this front, which
speaks enough of ClickHouse's HTTP interface for our ClickHouse port and the `clickhouse` crate:

- `GET /ping` -> `Ok.`
- `GET|POST /?query=...` (or the query in a POST body, or `query` and `param_<name>` fields of
  a multipart/form-data body, as the `clickhouse` crate sends them), `database`, `default_format`,
  `query_id` (echoed in `X-ClickHouse-Query-Id`), `param_<name>` query parameters, and any
  other URL parameter as a query setting (`readonly`, `max_execution_time`, `max_result_rows`,
  `max_result_bytes`, `result_overflow_mode`, ...), appended as a SETTINGS clause.
- `INSERT ... FORMAT <text format>` with the rows in the body (query in the URL).
- Request bodies with a `Content-Length` or `Transfer-Encoding: chunked` (Spin sends chunked).
- Errors: HTTP 500 with `X-ClickHouse-Exception-Code: N` and the body
  `Code: N. DB::Exception: ... (NAME) (version ...)`, as the server sends them.

Not emulated (a real server has them; see README): users and passwords (ignored), grants, row
policies, and custom settings such as `SQL_project_id` (dropped: chdb rejects them); and the
`query_id` is only echoed, because chdb gives every query its own id (`system.query_log`, on
through local-engine-config.xml, records ours when the caller also sends it as `log_comment`).
One engine session serves every request, one query at a time.

Usage: front.py --port N --path DATA_DIR [--exit-on-stdin-close]
"""

import argparse
import email.parser
import email.policy
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

from chdb import session as chdb_session

# URL parameters that are not query settings.
RESERVED = {
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "user", "password", "compress", "decompress", "enable_http_compression",
    "wait_end_of_query", "buffer_size", "http_response_buffer_size",
}
# Server defaults that differ in chdb: a server quotes 64-bit integers in JSON formats.
SERVER_DEFAULTS = {"output_format_json_quote_64bit_integers": "1"}
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ERROR_CODE = re.compile(r"Code: (\d+)\.")


class Engine:
    """The chdb session, used by one request at a time."""

    def __init__(self, path):
        config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "local-engine-config.xml")
        self.session = chdb_session.Session(f"{path}?config-file={config}")
        self.lock = threading.Lock()

    def run(self, sql, fmt, params, database=None):
        with self.lock:
            if database:
                self.session.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
            result = self.session.query(sql, fmt, params=params or None)
            return result.bytes() if hasattr(result, "bytes") else bytes(result)


def multipart_fields(content_type, body):
    """The (name, value) fields of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    return [
        (part.get_param("name", header="content-disposition"), part.get_payload(decode=True).decode("utf-8"))
        for part in message.iter_parts()
    ]


def setting_literal(value):
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_query(sql, url, default_format):
    """The SQL to run and its output format. URL settings become a SETTINGS clause, placed
    before a trailing FORMAT clause. For a SELECT, that FORMAT (or default_format) is the output
    format; for an INSERT it names the input format of the rows that follow."""
    sql = sql.strip().rstrip(";").rstrip()
    is_insert = sql[:6].upper() == "INSERT"
    fmt = default_format
    input_format = ""
    match = TRAILING_FORMAT.search(sql)
    if match:
        if is_insert:
            input_format = " FORMAT " + match.group(1)
        else:
            fmt = match.group(1)
        sql = sql[: match.start()]
    settings = []
    given = {key for key, _ in url}
    url = list(url) + [(k, v) for k, v in SERVER_DEFAULTS.items() if k not in given]
    for key, value in url:
        if key in RESERVED or key.startswith("param_") or key.startswith("SQL_"):
            continue
        if not SETTING_NAME.match(key):
            raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{key}'. (UNKNOWN_SETTING)")
        settings.append(f"{key} = {setting_literal(value)}")
    if settings and not sql[:6].upper() == "SYSTEM":  # SYSTEM statements take no SETTINGS clause
        # A newline first, so a trailing `-- comment` in the query cannot swallow the clause.
        sql = sql + "\nSETTINGS " + ", ".join(settings)
    return sql + input_format, fmt


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK of the headers (40 ms per response on Linux).
    disable_nagle_algorithm = True
    engine = None

    def log_message(self, *args):  # quiet: tests read their own output
        pass

    def do_GET(self):
        self.handle_request(b"")

    def do_POST(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.handle_request(self.read_chunked())
        length = int(self.headers.get("Content-Length") or 0)
        self.handle_request(self.rfile.read(length) if length else b"")

    def read_chunked(self):
        """A chunked body (HTTP/1.1 section 7.1), as Spin's outgoing requests send theirs."""
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after the chunk

    def handle_request(self, body):
        parsed = urlparse(self.path)
        if parsed.path == "/ping":
            return self.reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        url = parse_qsl(parsed.query, keep_blank_values=True)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            # The fields are the query and its parameters: they join the URL's.
            url += multipart_fields(content_type, body)
            body = b""
        args = dict(url)
        query_id = args.get("query_id", "")
        try:
            if "query" in args:
                sql, data = args["query"], body
            else:
                sql, data = body.decode("utf-8"), b""
            sql, fmt = build_query(sql, url, args.get("default_format", "TabSeparated"))
            if data:
                # INSERT ... FORMAT X with the rows in the body.
                sql = sql + "\n" + data.decode("utf-8")
            params = {k[len("param_"):]: v for k, v in url if k.startswith("param_")}
            out = self.engine.run(sql, fmt, params, args.get("database"))
        except Exception as error:  # chdb raises ChdbError with ClickHouse's own text
            text = str(error)
            code = ERROR_CODE.search(text)
            headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Query-Id": query_id}
            headers["X-ClickHouse-Exception-Code"] = code.group(1) if code else "1001"
            if not text.endswith(")") or "(version" not in text:
                text = f"{text} (version 26.9.0 chdb)"
            return self.reply(500, (text + "\n").encode("utf-8"), headers)
        content_type = "application/json; charset=UTF-8" if fmt.startswith("JSON") else "text/plain; charset=UTF-8"
        self.reply(200, out, {"Content-Type": content_type, "X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Format": fmt})

    def reply(self, status, body, headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--path", required=True, help="engine data folder")
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    options = parser.parse_args()
    Handler.engine = Engine(options.path)
    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    if options.exit_on_stdin_close:
        # os._exit: inserts are already on disk, and chdb's global shutdown only prints noise.
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
