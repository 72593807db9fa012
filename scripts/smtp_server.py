"""A test SMTP server (aiosmtpd) that requires TLS and AUTH and stores messages in a maildir.

Run it through scripts/smtp-server, which provides the virtual environment. Each accepted
message is written byte for byte to MAILDIR/new/. Every SMTP command the server receives is
appended to MAILDIR/commands.log, so a test can check what a client sent before TLS.
"""

import argparse
import asyncio
import os
import signal
import ssl
import threading
import time
import uuid
import logging
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd 1.4 logs a warning about its own use of Session.login_data on every AUTH. It also
# warns about AUTH without required STARTTLS, which does not apply here: in tls mode the
# connection is TLS from the start, and plain mode offers AUTH without TLS on purpose.
IGNORED_LOG_MESSAGES = ("Session.login_data", "auth_require_tls == False")
logging.getLogger("mail.log").addFilter(
    lambda record: not any(text in record.getMessage() for text in IGNORED_LOG_MESSAGES)
)
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


class MaildirHandler:
    """Writes each message to the maildir, waits `delay` seconds, then accepts it."""

    def __init__(self, maildir, delay):
        self.maildir = maildir
        self.delay = delay
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.adgang-test"
        temp = os.path.join(self.maildir, "tmp", name)
        with open(temp, "wb") as file:
            file.write(envelope.original_content)
        os.rename(temp, os.path.join(self.maildir, "new", name))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


class LoggingSMTP(SMTP):
    """Appends each command line, with the TLS state, to a log file."""

    log_path = None

    def _tls(self):
        return self._tls_protocol is not None or (
            self.transport is not None and self.transport.get_extra_info("sslcontext") is not None
        )

    def _log(self, line):
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    async def smtp_EHLO(self, hostname):
        self._log(f"EHLO tls={self._tls()}")
        await super().smtp_EHLO(hostname)

    async def smtp_AUTH(self, arg):
        self._log(f"AUTH tls={self._tls()}")
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg):
        self._log(f"MAIL tls={self._tls()}")
        await super().smtp_MAIL(arg)


class LoggingController(Controller):
    def factory(self):
        return LoggingSMTP(self.handler, **self.SMTP_kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", help="server certificate (PEM)")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument(
        "--mode",
        choices=["starttls", "tls", "plain"],
        default="starttls",
        help="starttls: require STARTTLS; tls: implicit TLS; plain: no TLS offered at all",
    )
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before accepting a message"
    )
    args = parser.parse_args()

    with open(args.password_file, encoding="utf-8") as file:
        password = file.read().rstrip("\r\n")

    def authenticator(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == password
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    handler = MaildirHandler(args.maildir, args.delay)
    LoggingSMTP.log_path = os.path.join(args.maildir, "commands.log")
    options = dict(
        hostname=args.host,
        port=args.port,
        authenticator=authenticator,
        auth_required=True,
    )
    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    if args.mode == "starttls":
        options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
    elif args.mode == "tls":
        options.update(ssl_context=context, auth_require_tls=False)
    else:
        # Offers AUTH without TLS, so a client that falls back to plain text would succeed.
        options.update(auth_require_tls=False)

    controller = LoggingController(handler, **options)
    controller.start()
    print(f"ready {args.host}:{args.port} mode={args.mode}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
