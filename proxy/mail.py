"""Mail: a durable outbox in the store, a worker that sends it, SMTP and file transports.

A request never sends mail itself; it queues a row (``Mailer.enqueue``) and the worker sends
it, retrying with exponential backoff for as long as it takes: a mail is never dropped on a
failure. Workers on several replicas share the outbox: each claims rows with a lease, so each
mail goes out once (again only if a worker dies between sending and recording it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from proxy import log
from proxy.config import MailConfig
from proxy.errors import MailError
from proxy.stats import Counters
from store.base import NewMail, OutboxMail, Store
from store.errors import StoreError

LEASE = 120.0  # seconds a claimed mail is left to its worker before another may take it
BATCH = 20
PURGE_EVERY = 3600.0  # seconds between clean-ups of sent mail, spent tokens, done requests
KEEP = 7 * 86400.0  # how long sent mail, expired tokens, done requests stay (support questions)

# kind -> (subject, body) for one outbox row; each kind's flow provides its renderer.
Renderer = Callable[[OutboxMail], tuple[str, str]]


class Transport(Protocol):
    """Hands one message over; raises MailError when it could not."""

    async def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    """Sends over SMTP with aiosmtplib: STARTTLS or TLS, optional login."""

    def __init__(self, config: MailConfig) -> None:
        self._config = config

    async def send(self, message: EmailMessage) -> None:
        c = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=c.password.value if c.password else None,
                use_tls=c.tls,
                start_tls=c.starttls,
                timeout=c.timeout,
                # An explicit EHLO name: aiosmtplib's default (getfqdn) blocks the loop.
                local_hostname=_domain(c.sender),
            )
        except (aiosmtplib.SMTPException, OSError) as exc:  # OSError includes TimeoutError
            raise MailError(f"SMTP {c.host}:{c.port}: {type(exc).__name__}: {exc}") from exc


class FileTransport:
    """Writes each message to ``folder`` as an ``.eml`` file: for development and tests."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def send(self, message: EmailMessage) -> None:
        name = f"{time.time():.6f}-{message['Message-ID'].strip('<>').split('@')[0]}.eml"
        try:
            await asyncio.to_thread(self._write, name, message.as_bytes())
        except OSError as exc:
            raise MailError(f"cannot write to {self.folder}: {exc.strerror}") from exc

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{name}.tmp"
        partial.write_bytes(data)
        partial.replace(self.folder / name)  # a reader never sees half a message


def create_transport(config: MailConfig) -> Transport:
    """The transport ``mail.transport`` names."""
    if config.transport == "file":
        assert config.folder is not None  # the config requires it
        return FileTransport(config.folder)
    return SmtpTransport(config)


def backoff(config: MailConfig, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling from retry_min to retry_max."""
    return float(min(config.retry_max, config.retry_min * 2 ** min(attempts, 32)))


class Mailer:
    """Queues mail in the store and sends it from a background worker (``run``)."""

    def __init__(
        self,
        config: MailConfig,
        store: Store,
        transport: Transport,
        renderers: Mapping[str, Renderer],
        counters: Counters,
    ) -> None:
        self.config = config
        self._store = store
        self._transport = transport
        self._renderers = dict(renderers)
        self._counters = counters
        self._wake = asyncio.Event()
        self._next_purge = 0.0

    async def enqueue(self, mail: NewMail) -> str:
        """Put ``mail`` in the outbox and wake the worker; return the mail's id."""
        if mail.kind not in self._renderers:
            raise ValueError(f"no renderer for mail of kind {mail.kind!r}")
        mail_id = await self._store.enqueue_mail(mail, now=time.time())
        self._wake.set()
        return mail_id

    def wake(self) -> None:
        """Make the worker look for due mail now (a row was queued by another way)."""
        self._wake.set()

    async def run(self) -> None:
        """Send due mail until cancelled: at once when woken, else every ``mail.poll``."""
        while True:
            self._wake.clear()
            try:
                while await self.send_due() == BATCH:
                    pass
                await self._purge()
            except StoreError as exc:
                log.event("mail.outbox_failed", error=type(exc).__name__)
            except Exception as exc:
                # A bug in one mail must not stop every later one: its lease runs out, and it
                # is tried again. Logged by class only, as its text could quote the mail.
                log.event("mail.worker_error", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll)

    async def _purge(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY
        removed = await self._store.purge_reset_data(before=time.time() - KEEP)
        if removed:
            log.event("mail.purged", rows=removed)

    async def send_due(self) -> int:
        """Claim and send the mail that is due now; return how many were claimed."""
        claimed = await self._store.claim_mail(now=time.time(), lease=LEASE, limit=BATCH)
        for mail in claimed:
            await self._send(mail)
        return len(claimed)

    async def _send(self, mail: OutboxMail) -> None:
        try:
            await self._transport.send(self._message(mail))
        except MailError as exc:
            delay = backoff(self.config, mail.attempts)
            retry_at = time.time() + delay
            await self._store.mark_mail_failed(mail.id, error=str(exc), retry_at=retry_at)
            self._counters.add("mail.failed")
            log.event(
                "mail", mail=mail.id, kind=mail.kind, outcome="failed",
                attempt=mail.attempts + 1, retry_in=round(delay, 1), error=str(exc),
            )  # fmt: skip
            return
        await self._store.mark_mail_sent(mail.id, now=time.time())
        self._counters.add("mail.sent")
        log.event("mail", mail=mail.id, kind=mail.kind, outcome="sent", attempt=mail.attempts + 1)

    def _message(self, mail: OutboxMail) -> EmailMessage:
        renderer = self._renderers.get(mail.kind)
        if renderer is None:
            raise MailError(f"no renderer for mail of kind {mail.kind!r}")
        try:
            subject, body = renderer(mail)
        except (KeyError, ValueError) as exc:
            raise MailError(f"cannot render mail {mail.id}: {type(exc).__name__}") from exc
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = mail.recipient
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(idstring=mail.id, domain=_domain(self.config.sender))
        message.set_content(body)
        return message


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip(" >") or "localhost"
