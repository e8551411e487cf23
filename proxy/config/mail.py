"""The ``[mail]`` section: how the reset links are sent (SMTP or files in a folder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.reader import Reader, Secret

DEFAULT_MAIL_SUBJECT = "Reset your password"
DEFAULT_MAIL_BODY = (
    "Someone asked to reset the password of the account with this address.\n\n"
    "To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
    "If it was not you, ignore this mail: your password stays as it is.\n"
)


@dataclass(frozen=True, slots=True)
class MailConfig:
    transport: str
    sender: str  # the key is ``from``, a Python keyword
    folder: str | None = None
    host: str = "127.0.0.1"
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    password: Secret | None = None
    subject: str = DEFAULT_MAIL_SUBJECT
    body: str = DEFAULT_MAIL_BODY
    timeout: float = 30.0
    poll: float = 2.0
    retry_min: float = 5.0
    retry_max: float = 600.0


MAIL_KEYS = (
    "transport", "folder", "from", "host", "port", "starttls", "tls", "username", "password",
    "subject", "body", "timeout", "poll", "retry_min", "retry_max",
)  # fmt: skip


def read_mail(r: Reader, doc: Mapping[str, Any]) -> MailConfig | None:
    if "mail" not in doc:
        return None
    with r.table(doc, "mail", MAIL_KEYS) as t:
        transport = r.choice(t, "transport", ("smtp", "file"))
        folder = r.optional(t, "folder")
        if transport == "file" and folder is None:
            r.error("folder", "is required with transport = 'file'")
        sender = r.get(t, "from", str, "")
        if "@" not in sender:
            r.error("from", f"must be the sender's address, such as 'noreply@example.com', "
                    f"got {sender!r}")  # fmt: skip
        host = r.get(t, "host", str, "")
        if transport == "smtp" and not host:
            r.error("host", "is required with transport = 'smtp'")
        tls = r.get(t, "tls", bool, False)
        starttls = r.get(t, "starttls", bool, not tls)
        if tls and starttls:
            r.error("starttls", "cannot be combined with tls (TLS from the first byte)")
        port = r.get(t, "port", int, 465 if tls else 587)
        if not 0 < port < 65536:
            r.error("port", f"must be a TCP port, got {port}")
        retry_min, retry_max = r.duration(t, "retry_min", 5.0), r.duration(t, "retry_max", 600.0)
        if not 0 < retry_min <= retry_max:
            r.error("retry_min", "must be greater than 0 and at most retry_max")
        return MailConfig(
            transport=transport,
            sender=sender,
            folder=folder,
            host=host or "127.0.0.1",
            port=port,
            starttls=starttls,
            tls=tls,
            username=r.optional(t, "username"),
            password=r.secret(t, "password") if "password" in t else None,
            subject=r.get(t, "subject", str, DEFAULT_MAIL_SUBJECT),
            body=r.get(t, "body", str, DEFAULT_MAIL_BODY),
            timeout=r.duration(t, "timeout", 30.0),
            poll=r.duration(t, "poll", 2.0),
            retry_min=retry_min,
            retry_max=retry_max,
        )
