"""A real SMTP server for the email tests (aiosmtpd): it accepts mail on 127.0.0.1 and stores
each message it receives as `<n>.eml` in a folder, for the tests to read back.

Recipients whose local part starts with `tempfail` are refused with 450 (a temporary failure,
which the worker retries); those starting with `reject` are refused with 553 (permanent); those
starting with `slow` are accepted after two seconds (a send in flight long enough to stop a
sender during it).
Clients may log in (AUTH PLAIN/LOGIN without TLS): any password works except one starting
with `wrong` (535); the login is recorded as an `X-Auth-Login` header of each message.

Usage: sink.py --dir DIR [--port N]   (prints "listening on 127.0.0.1:PORT"; exits when its
standard input closes)
"""

import argparse
import asyncio
import itertools
import os
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def authenticate(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword) or auth_data.password.startswith(b"wrong"):
        return AuthResult(success=False, handled=False)
    return AuthResult(success=True, auth_data=auth_data.login.decode())


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "450 4.2.0 Mailbox temporarily unavailable"
        if local.startswith("reject"):
            return "553 5.1.3 Mailbox name not allowed"
        if local.startswith("slow"):
            await asyncio.sleep(2)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.counter)
        path = os.path.join(self.folder, f"{n:06d}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode())
            if session.authenticated:
                f.write(f"X-Auth-Login: {session.auth_data}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.replace(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    os.makedirs(options.dir, exist_ok=True)
    port = options.port
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    controller = Controller(
        Sink(options.dir), hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
