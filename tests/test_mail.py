"""Mail: the outbox worker, the file and SMTP transports, retries that never lose a mail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from proxy.config import MailConfig
from proxy.mail import FileTransport, Mailer, backoff
from proxy.stats import Counters
from store.base import NewMail, OutboxMail, Store
from tests.accounts import accounts, read_mail, request_reset, token_of
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_smtp(port: int, inbox: Inbox) -> asyncio.Server:
    """A local SMTP server (aiosmtpd) on 127.0.0.1:``port``, in this event loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(inbox, hostname="127.0.0.1"), "127.0.0.1", port)


@pytest.fixture
async def smtp_port() -> AsyncIterator[int]:
    yield free_port()


def render(mail: OutboxMail) -> tuple[str, str]:
    return f"Hello {mail.recipient}", f"body {mail.data.get('n')}"


def mail_config(**overrides: Any) -> MailConfig:
    values: dict[str, Any] = {"transport": "file", "sender": "noreply@example.com"}
    return MailConfig(**{**values, "retry_min": 0.05, "retry_max": 0.1, "poll": 0.05, **overrides})


async def test_smtp_down_then_up_delivers_the_mail_once(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path, smtp_port: int
) -> None:
    """While the SMTP server is down the mail waits in the outbox; once it is up the mail
    arrives, exactly once, with a working link."""
    smtp = {
        "transport": "smtp", "host": "127.0.0.1", "port": smtp_port, "starttls": False,
        "from": "noreply@example.com", "poll": "50ms", "retry_min": "50ms", "retry_max": "100ms",
        "timeout": "2s",
    }  # fmt: skip
    proxy = await start_proxy(accounts(tmp_path / "unused", mail=smtp))
    await proxy.form_login("bob", "builder-22")
    proxy.client.cookie_jar.clear()
    assert (await request_reset(proxy, "bob@example.com"))[0] == 302
    for _ in range(100):
        if proxy.svc.counters.totals["mail.failed"] >= 2:
            break
        await asyncio.sleep(0.02)
    assert proxy.svc.counters.totals["mail.failed"] >= 2
    assert await proxy.svc.store.count_pending_mail() == 1

    inbox = Inbox()
    server = await start_smtp(smtp_port, inbox)
    try:
        for _ in range(200):
            if inbox.messages:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.4)  # several more worker rounds: nothing is sent twice
    finally:
        server.close()
        await server.wait_closed()
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.mail_from == "noreply@example.com"
    assert envelope.rcpt_tos == ["bob@example.com"]
    assert await proxy.svc.store.count_pending_mail() == 0
    assert proxy.svc.counters.totals["mail.sent"] == 1
    assert b"/.authshim/reset?token=" in (envelope.content or b"")


async def test_the_file_transport_writes_whole_messages(store: Store, tmp_path: Path) -> None:
    """Each mail becomes one .eml file with its headers, and no partial file stays behind."""
    folder = tmp_path / "mail"
    counters = Counters(store)
    mailer = Mailer(mail_config(), store, FileTransport(folder), {"hi": render}, counters)
    for n in range(3):
        await mailer.enqueue(NewMail("hi", f"u{n}@example.com", {"n": n}))
    assert await mailer.send_due() == 3
    messages = read_mail(folder)
    assert sorted(m["To"] for m in messages) == [f"u{n}@example.com" for n in range(3)]
    assert all(m["From"] == "noreply@example.com" and m["Message-ID"] for m in messages)
    assert {m.get_content().strip() for m in messages} == {"body 0", "body 1", "body 2"}
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".eml")] == []


async def test_a_failing_transport_keeps_the_mail_for_later(store: Store, tmp_path: Path) -> None:
    """A folder that cannot be written fails the send; the mail stays, due again later."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    counters = Counters(store)
    mailer = Mailer(mail_config(), store, FileTransport(blocker), {"hi": render}, counters)
    await mailer.enqueue(NewMail("hi", "u@example.com", {"n": 1}))
    assert await mailer.send_due() == 1
    assert await mailer.send_due() == 0  # not due again yet
    assert await store.count_pending_mail() == 1 and counters.totals["mail.failed"] == 1


async def test_the_worker_sends_at_once_when_woken(store: Store, tmp_path: Path) -> None:
    """A running worker sends a mail queued by enqueue without waiting for its poll."""
    config = mail_config(poll=30.0)
    mailer = Mailer(config, store, FileTransport(tmp_path), {"hi": render}, Counters(store))
    worker = asyncio.create_task(mailer.run())
    try:
        await asyncio.sleep(0.05)
        await mailer.enqueue(NewMail("hi", "now@example.com", {"n": 2}))
        for _ in range(100):
            if read_mail(tmp_path):
                break
            await asyncio.sleep(0.02)
        assert [m["To"] for m in read_mail(tmp_path)] == ["now@example.com"]
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def test_backoff_doubles_up_to_the_cap() -> None:
    """Retry delays double from retry_min and stop at retry_max."""
    config = mail_config(retry_min=5.0, retry_max=60.0)
    assert [backoff(config, n) for n in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert backoff(config, 10_000) == 60.0


async def test_a_reset_mail_has_the_configured_subject_and_link(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """mail.subject and mail.body fill in {link}, {email} and {minutes}."""
    folder = tmp_path / "outbox"
    mail = {
        "transport": "file", "folder": str(folder), "from": "Site <noreply@example.com>",
        "subject": "Reset for {email}", "body": "Within {minutes} min: {link} {other}",
        "poll": "50ms",
    }  # fmt: skip
    proxy = await start_proxy(accounts(folder, mail=mail))
    await proxy.form_login("bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    for _ in range(100):
        if read_mail(folder):
            break
        await asyncio.sleep(0.02)
    [message] = read_mail(folder)
    assert message["Subject"] == "Reset for bob@example.com"
    assert message["From"] == "Site <noreply@example.com>"
    body = message.get_content()
    assert body.startswith("Within 30 min: http://127.0.0.1:8080/.authshim/reset?token=")
    assert body.rstrip().endswith("{other}") and len(token_of(message)) == 43
