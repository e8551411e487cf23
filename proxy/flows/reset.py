"""A password-reset request's story: a token is made and mailed, and the answer is the same
for everyone.

Every well-formed request is written to the store's queue of reset requests before it is
answered (so that a process killed right after the answer loses no reset), and the client then
gets the configured answer, in the same time, whether the email belongs to a stored user, a
legacy user (found by the look-up) or nobody. The work that depends on who asked (the token,
the outbox row) runs in the queue's worker (``process``, ``proxy/resets.py``). Only without a
look-up, in mode ``migrate``, is an email the store does not know forwarded to the legacy app,
which then handles its own reset.

With a look-up and ``reset.unknown = "forward"`` (mode ``migrate``), the request itself is kept
beside its queued row; when the worker finds the address neither in the store nor through the
look-up (or the look-up fails, or its user cannot be mailed), it sends the request on to the
legacy app's own reset so that the legacy mail still goes out. The client has had the same
configured answer by then, whoever the address belongs to; the legacy app's answer is dropped.
"""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from proxy import log
from proxy.answers import problem, render
from proxy.config import Config, ResetConfig
from proxy.errors import BadRequestBody, LookupFailed, Throttled, UpstreamError
from proxy.flows.common import (
    NO_ROUTING,
    Refusal,
    Routing,
    elapsed_ms,
    forward_read,
    read_route,
    session_user,
    unavailable,
)
from proxy.legacy import profile_active
from proxy.limits import client_ip, throttled_answer
from proxy.mail import Renderer
from proxy.resets import HeldRequest
from proxy.services import Services
from proxy.tokens import derive_token, hash_token, new_seed, token_key
from store.base import NewMail, NewResetToken, OutboxMail, ResetRequest
from store.errors import RejectedCapture, StoreError, StoreUnavailable
from store.validation import normalise_identifier, validate_capture

MAIL_KIND = "reset"
# What a queued request comes to: an outcome, and the token and mail to store (or None).
Issued = tuple[str, NewResetToken | None, NewMail | None]


async def handle(
    request: web.Request, svc: Services, cfg: ResetConfig, routing: Routing = NO_ROUTING
) -> web.StreamResponse:
    """Answer one reset request and log one line about it."""
    started = time.perf_counter()
    outcome, response = await _request(request, svc, cfg, routing)
    svc.counters.add(f"reset.request.{outcome}")
    log.event(
        "reset.request", route=cfg.request_path, outcome=outcome, status=response.status,
        ms=elapsed_ms(started),
    )  # fmt: skip
    return response


async def _request(
    request: web.Request, svc: Services, cfg: ResetConfig, routing: Routing
) -> tuple[str, web.StreamResponse]:
    try:
        # A reset request only mails the address's owner: no same-site check for forms.
        read = await read_route(
            request, svc, path=cfg.request_path, fmt=cfg.format,
            credentials=(cfg.email, *routing.foreign), routing=routing.names,
            forms_same_site=False,
        )  # fmt: skip
    except Refusal as refused:
        return refused.outcome, refused.response
    submitted = read.reading
    if submitted is not None and (
        not routing.mine(submitted.routing)
        or any(submitted.optional(name) is not None for name in routing.foreign)
    ):
        # SECURITY: a login's fields (wp-login.php's pwd) or a routing field that sends it to
        # the login: the legacy app could judge a password here that no limit counts.
        return "ambiguous", problem(400, "the request carries another form's fields")
    try:
        if submitted is None:
            raise BadRequestBody(read.unread)
        email = normalise_identifier(submitted.text(cfg.email))
        if not email:
            raise BadRequestBody(f"the field {cfg.email!r} must not be empty")
    except BadRequestBody as exc:
        if svc.cutover:
            return "bad_request", problem(400, str(exc))
        return "forwarded_unread", await forward_read(request, svc, read)
    try:
        await svc.limits.check("reset", ip=client_ip(request, svc.config.server.trusted_proxies),
                               address=email)  # fmt: skip
    except Throttled as exc:
        return "throttled", throttled_answer(exc)
    except StoreError:
        pass  # the limits are a guard, not a gate: a reset still works while they cannot count

    if not (svc.cutover or _looks_up(svc)):
        # Mode migrate without a look-up: only authshim's own users are answered here.
        try:
            known = await svc.store.find_user(email) is not None
        except StoreUnavailable:
            known = False  # fail safe: the legacy app can still handle its own reset
        if not known:
            return "forwarded", await forward_read(request, svc, read)
    # SECURITY: queue, answer, work after: one row for every request, so that the answer says
    # nothing and takes the same time whether or not anyone has this email.
    assert svc.resets is not None  # create_app makes the queue with [reset]
    held = None
    if _forwards_unknown(svc, cfg):
        held = await _held(request, svc, read.target, submitted.body)
    try:
        await svc.resets.queue(email, held=held)
    except StoreError as exc:
        # Not taken, and said so, alike for every email: the client may ask again.
        log.event("reset.queue_failed", error=type(exc).__name__)
        return "store_error", unavailable("the user store is unavailable")
    return "accepted", render(cfg.answer)


def _looks_up(svc: Services) -> bool:
    return svc.lookup is not None and svc.lookup.by_email_enabled


def _forwards_unknown(svc: Services, cfg: ResetConfig) -> bool:
    return cfg.unknown == "forward" and not svc.cutover and _looks_up(svc)


async def _held(request: web.Request, svc: Services, target: str, body: bytes) -> HeldRequest:
    """The request as forward_read would send it upstream (headers and identity; the body and
    target as authshim read them), to send later."""
    identity = svc.identity(await session_user(request, svc))
    headers = svc.forwarder._headers(request, identity)
    # Framed anew when sent: the body is whole by then.
    for name in ("Content-Length", "Transfer-Encoding"):
        headers.popall(name, None)
    return HeldRequest(request.method, target, tuple(headers.items()), body)


# What the worker found that mails no one and leaves the address to the legacy app: the store
# has no such user, and the look-up found none, failed, or found one authshim cannot mail.
_LEGACY_OUTCOMES = ("unknown", "lookup_error")


async def process(svc: Services, cfg: ResetConfig, request: ResetRequest) -> None:
    """Work off one queued request: store a token and queue its mail if anyone is to get one,
    and mark the request done; log the outcome. On a store error it stays queued."""
    started = time.perf_counter()
    decided: str | None = None
    try:
        decided, token, mail = await _issue(svc, cfg, request.email)
        outcome = decided
        finished = await svc.store.finish_reset_request(
            request.id, now=time.time(), token=token, mail=mail
        )
    except StoreError as exc:
        outcome = "store_error"  # tried again when the lease ends
        log.event("reset.issue_failed", error=type(exc).__name__)
    else:
        if not finished:
            outcome = "already_done"  # another worker finished it after this one's lease ran out
        elif mail is not None and svc.mailer is not None:
            svc.mailer.wake()
    svc.counters.add(f"reset.issue.{outcome}")
    log.event("reset.issue", outcome=outcome, ms=elapsed_ms(started))
    if decided is not None and svc.resets is not None:
        # Once decided, the kept request is taken (a retry after a store error forwards no
        # second time), and forwarded when no one here mails the address.
        held = svc.resets.take_held(request.id)
        if _forwards_unknown(svc, cfg) and (
            decided in _LEGACY_OUTCOMES or decided.startswith("rejected.")
        ):
            await _forward(svc, held)


async def _forward(svc: Services, held: HeldRequest | None) -> None:
    """Send a kept reset request to the legacy app's own reset; its answer is dropped."""
    if held is None:
        # Queued by another replica, or before a restart: the request itself is not here.
        outcome, status = "lost", None
    else:
        try:
            answer = await svc.forwarder.send(
                held.method, held.target, headers=CIMultiDict(held.headers), body=held.body
            )
            outcome, status = "ok", answer.status
        except UpstreamError as exc:
            outcome, status = "failed", exc.status
    svc.counters.add(f"reset.forward.{outcome}")
    log.event("reset.forward", outcome=outcome, status=status)


async def _issue(svc: Services, cfg: ResetConfig, email: str) -> Issued:
    """The outcome, and the token and mail to store for ``email`` (None when no one gets any)."""
    expires_at = time.time() + cfg.expires
    seed = new_seed()
    token_hash = hash_token(derive_token(token_key(svc.config.session.secret.value), seed))
    user = await svc.store.find_user(email)
    if user is not None:
        if user.blocked or not user.email:
            return ("blocked" if user.blocked else "no_email"), None, None
        token = NewResetToken(
            token_hash, user.email, expires_at, user_id=user.id, epoch=user.session_epoch
        )
    elif svc.cutover or svc.lookup is None or not svc.lookup.by_email_enabled:
        return "unknown", None, None
    else:
        # A form that also takes a username (WordPress's): one without "@" is looked up as such.
        by_name = "@" not in email and svc.lookup.by_username_enabled
        try:
            found = await (svc.lookup.by_username(email) if by_name else svc.lookup.by_email(email))
        except LookupFailed:
            # Reported by the look-up; never taken for "not found".
            return "lookup_error", None, None
        if found is None:
            return "unknown", None, None
        if not profile_active(found.profile, svc.config.profile):
            return "rejected.inactive", None, None  # the legacy app refuses this user
        try:
            # The mail goes to this address: it must pass the import rules whatever
            # migration.validate says.
            fields = validate_capture(
                found.fields,
                requires_username=svc.config.migration.requires_username,
                username_case=svc.config.migration.username_case,
            )
        except RejectedCapture as exc:
            return f"rejected.{exc.reason}", None, None
        token = NewResetToken(
            token_hash, fields.email or email, expires_at,
            legacy_id=fields.legacy_id, profile=found.profile,
        )  # fmt: skip
    # Only the seed is queued: the token itself is rebuilt from it when the mail is sent.
    mail = NewMail(MAIL_KIND, token.email, {"seed": seed})
    return ("mailed" if user is not None else "mailed_legacy"), token, mail


def mail_renderer(config: Config) -> tuple[str, Renderer]:
    """``(kind, renderer)`` for the mail worker: subject and body of a reset mail."""
    assert config.reset is not None and config.mail is not None
    reset, mail = config.reset, config.mail
    key = token_key(config.session.secret.value)

    def render_mail(row: OutboxMail) -> tuple[str, str]:
        link = reset.link.replace("{token}", derive_token(key, str(row.data["seed"])))
        values = {"link": link, "email": row.recipient, "minutes": str(round(reset.expires / 60))}
        return _fill(mail.subject, values), _fill(mail.body, values)

    return MAIL_KIND, render_mail


def _fill(template: str, values: dict[str, str]) -> str:
    # Plain replacement, not str.format: a template's other braces stay as they are.
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template
