"""The whole ``Config``: built from a TOML document, every section's problems reported at once,
and what one section needs from another checked last."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.config.admin import ADMIN_KEYS, AdminConfig, read_admin, read_readiness_days
from proxy.config.flows import (
    LookupConfig,
    PasswordChangeConfig,
    PolicyConfig,
    ResetConfig,
    SignupConfig,
    read_lookup,
    read_password_change,
    read_policy,
    read_reset,
    read_signup,
)
from proxy.config.hashes import read_hashes
from proxy.config.legacy_db import LegacyDbConfig, read_legacy_db
from proxy.config.login import (
    LoginRoute,
    LogoutConfig,
    ProfileMap,
    read_logins,
    read_logout,
    read_profile_map,
)
from proxy.config.mail import MailConfig, read_mail
from proxy.config.reader import Reader, read_toml
from proxy.config.rules import CapturePolicy, RuleConfig, read_capture_policy, read_rules
from proxy.config.server import (
    LogConfig,
    MigrationConfig,
    ServerConfig,
    StoreConfig,
    UpstreamConfig,
    read_log,
    read_migration,
    read_server,
    read_store,
    read_upstream,
)
from proxy.config.sessions import (
    LimitsConfig,
    PasswordConfig,
    SessionConfig,
    read_identity,
    read_identity_prefix,
    read_limits,
    read_passwords,
    read_session,
)
from store.hashes.recipe import Recipe


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    upstream: UpstreamConfig
    store: StoreConfig
    migration: MigrationConfig
    logins: tuple[LoginRoute, ...]
    profile: ProfileMap
    logout: LogoutConfig
    session: SessionConfig
    identity: tuple[tuple[str, str], ...]
    passwords: PasswordConfig
    log: LogConfig
    # The defaults below are frozen dataclasses, so one instance is safely shared.
    admin: AdminConfig = AdminConfig()  # noqa: RUF009
    lookup: LookupConfig | None = None
    reset: ResetConfig | None = None
    mail: MailConfig | None = None
    signup: SignupConfig | None = None
    password_change: PasswordChangeConfig | None = None
    # identity.local_prefix: before the identity header values of users authshim created.
    identity_prefix: str = ""
    policy: PolicyConfig = PolicyConfig()  # noqa: RUF009
    limits: LimitsConfig = LimitsConfig()  # noqa: RUF009
    # [[hashes.recipe]]: the operator's legacy hash formats (issue 17), self-tested.
    recipes: tuple[Recipe, ...] = ()
    rules: tuple[RuleConfig, ...] = ()  # [[rules]] (issue 16)
    capture_policy: CapturePolicy = CapturePolicy()  # noqa: RUF009
    legacy_db: LegacyDbConfig | None = None  # [legacy_db] (issue 17)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML config file; raise ``ConfigError`` listing every problem."""
    return parse_config(read_toml(path), os.environ if env is None else env)


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Turn a TOML document into a ``Config``; raise ``ConfigError`` listing every problem."""
    r = Reader(env)
    r.unknown(raw, SECTIONS)
    config = Config(
        server=read_server(r, raw),
        upstream=read_upstream(r, raw),
        store=read_store(r, raw),
        migration=read_migration(r, raw),
        logins=read_logins(r, raw),
        profile=read_profile_map(r, raw),
        logout=read_logout(r, raw),
        session=read_session(r, raw),
        identity=read_identity(r, raw),
        passwords=read_passwords(r, raw),
        log=read_log(r, raw),
        admin=read_admin(r, raw),
        lookup=read_lookup(r, raw),
        reset=read_reset(r, raw),
        mail=read_mail(r, raw),
        signup=read_signup(r, raw),
        password_change=read_password_change(r, raw),
        identity_prefix=read_identity_prefix(r, raw),
        policy=read_policy(r, raw),
        limits=read_limits(r, raw),
        recipes=read_hashes(r, raw),
        rules=read_rules(r, raw),
        capture_policy=read_capture_policy(r, raw),
        legacy_db=read_legacy_db(r, raw),
    )
    _check_features(r, config)
    r.check()
    return config


def load_store_config(path: str | Path) -> tuple[StoreConfig, MigrationConfig]:
    """Read only ``[store]`` and ``[migration]``: what the store commands need (no secrets)."""
    raw = read_toml(path)
    r = Reader({})
    store = read_store(r, raw)
    migration = read_migration(r, raw)
    r.check()
    return store, migration


def load_recipes(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[Recipe, ...]:
    """Read only ``[[hashes.recipe]]``: what ``authshim import`` needs besides the store."""
    raw = read_toml(path)
    r = Reader(os.environ if env is None else env)
    recipes = read_hashes(r, raw)
    r.check()
    return recipes


def load_legacy_db(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[LegacyDbConfig | None, ProfileMap]:
    """Read only ``[legacy_db]`` and ``[profile]``: what ``authshim import --from-db`` needs
    besides the store."""
    raw = read_toml(path)
    r = Reader(os.environ if env is None else env)
    config = read_legacy_db(r, raw)
    mapping = read_profile_map(r, raw)
    r.check()
    return config, mapping


def load_readiness_days(path: str | Path) -> int:
    """Read only ``admin.readiness_days`` (no secrets): what ``authshim stats`` needs."""
    raw = read_toml(path)
    r = Reader({})
    with r.table(raw, "admin", ADMIN_KEYS) as admin:
        days = read_readiness_days(r, admin)
    r.check()
    return days


def _check_listeners(r: Reader, config: Config) -> None:
    """The forward-auth listener needs an address of its own."""
    fa = config.session.forward_auth_listen
    if fa is None or fa.path is not None or fa.port == 0:
        return
    taken = {(config.server.host, config.server.port): "server.listen"}
    if config.admin.enabled:
        taken[(config.admin.host, config.admin.port)] = "admin.listen"
    if (what := taken.get((fa.host, fa.port))) is not None:
        r.error("session.forward_auth_listen", f"is the address of {what} ({fa})")


def _check_features(r: Reader, config: Config) -> None:
    """What one section needs from another, and intercepted paths that collide."""
    if config.reset is not None and config.mail is None:
        r.error("reset", "needs [mail] to send its links")
    migrate = config.migration.mode == "migrate"
    if config.signup and config.signup.handler == "local" and migrate and config.lookup is None:
        r.error("signup.handler", "'local' in mode migrate needs [lookup], so that nobody signs "
                "up again under a legacy user's email or username")  # fmt: skip
    elif config.signup and config.signup.legacy_check == "always" and config.lookup is None:
        # SECURITY: after cut-over too, a sign-up (always local then) must not take a legacy
        # user's name while the legacy app still trusts the identity headers.
        r.error("signup.legacy_check", "'always' (the default) needs [lookup]; set 'migrate' "
                "only when the legacy app no longer trusts identity headers after cut-over, "
                "or no legacy user is left unmigrated")  # fmt: skip
    if config.lookup is not None and config.lookup.source == "database":
        db = config.legacy_db
        if db is not None and db.by_email is None and db.by_username is None:
            r.error("lookup.source", "'database' needs [legacy_db.find_user]")
        elif db is None:
            r.error("lookup.source", "'database' needs [legacy_db]")
    if config.profile.refresh_on_login and config.lookup is None:
        r.error("profile.refresh_on_login", "needs [lookup]")
    _check_listeners(r, config)
    for i, route in enumerate(config.logins):
        if route.profile.lookup and config.lookup is None:
            r.error(f"login[{i}].profile.lookup", "needs [lookup]")
        if route.judge == "database" and config.legacy_db is None:
            r.error(f"login[{i}].judge", "'database' needs [legacy_db]")
    # Routes told apart by `when` may share a path (a front controller): proxy/choose.py.
    paths: dict[str, str] = {
        _fold_path(route.path): "login" for route in config.logins if not route.match.when
    }
    for key, path, told_apart in (
        ("reset.request_path", config.reset and config.reset.request_path,
         bool(config.reset and config.reset.match.when)),
        ("reset.confirm_path", config.reset and config.reset.confirm_path, False),
        ("signup.path", config.signup and config.signup.path,
         bool(config.signup and config.signup.match.when)),
        ("password_change.path", config.password_change and config.password_change.path,
         bool(config.password_change and config.password_change.match.when)),
    ):  # fmt: skip
        if path and not told_apart:
            folded = _fold_path(path)
            if folded in paths:
                r.error(key, f"{path} is already intercepted by {paths[folded]}")
            paths[folded] = key


def _fold_path(path: str) -> str:
    """Fold ``//`` and a trailing ``/`` as the route table does."""
    return re.sub(r"/{2,}", "/", path).rstrip("/") or "/"


SECTIONS = (
    "server", "upstream", "store", "migration", "login", "profile", "logout",
    "session", "identity", "passwords", "log", "admin",
    "lookup", "reset", "mail", "signup", "password_change", "policy", "limits", "hashes",
    "rules", "legacy_db",
)  # fmt: skip

# Every documented key, so that a test can check docs/configuration.md names them all.
ALL_KEYS: tuple[str, ...] = (
    "server.listen", "server.max_body", "server.trusted_proxies", "server.public_url",
    "server.max_scan",
    "upstream.url", "upstream.connect_timeout", "upstream.read_timeout", "upstream.pool_size",
    "upstream.max_answer", "upstream.case_insensitive_paths",
    "store.url", "store.pool_min", "store.pool_max",
    "migration.mode", "migration.validate", "migration.requires_username", "migration.mode_poll",
    "migration.recapture",
    "migration.username_case",
    "login.path", "login.format", "login.identifier", "login.password", "login.success",
    "login.success.status", "login.success.cookie", "login.success.cookie_prefix",
    "login.success.json", "login.success.json_equals", "login.profile", "login.profile.json",
    "login.profile.fetch", "login.profile.lookup", "login.profile.token",
    "login.answer", "login.answer.redirect", "login.answer.next_param",
    "login.failure.from_legacy", "login.failure_floor", "login.step_paths",
    "login.methods", "login.when", "login.judge", "logout.methods", "logout.when",
    "reset.methods",
    "reset.when", "signup.methods", "signup.when", "password_change.methods",
    "password_change.when", "password_change.fresh", "password_change.forward",
    "login.second_factor", "login.step_expires",
    "login.answer.json", "login.answer.status", "login.failure",
    "profile.legacy_id", "profile.email", "profile.username",
    "logout.path",
    "session.cookie", "session.secret", "session.max_age", "session.secure", "session.domain",
    "session.cache_ttl",
    "identity",
    "passwords.time_cost", "passwords.memory_cost", "passwords.parallelism", "passwords.workers",
    "passwords.queue_limit",
    "log.level",
    "admin.listen", "admin.token", "admin.readiness_days", "admin.allowed_hosts",
    "profile.refresh_on_login",
    # judging the legacy app as a browser would (issue 14)
    "login.success.location", "login.success.location.equals", "login.success.location.prefix",
    "login.success.location.not_prefix", "login.success.location.pattern",
    "login.success.headers", "login.success.body", "login.success.body.contains",
    "login.success.body.not_contains", "login.step", "profile.active", "profile.active_values",
    "profile.second_factor",
    "lookup.list", "reset.unknown",
    "lookup.by_email", "lookup.by_username", "lookup.method", "lookup.headers",
    "lookup.timeout", "lookup.pointer",
    "reset.request_path", "reset.format", "reset.email", "reset.answer", "reset.link",
    "reset.expires", "reset.done", "reset.confirm_path", "reset.template", "reset.request_query",
    "mail.transport", "mail.folder", "mail.from", "mail.host", "mail.port", "mail.starttls",
    "mail.tls", "mail.username", "mail.password", "mail.subject", "mail.body", "mail.timeout",
    "mail.poll", "mail.retry_min", "mail.retry_max",
    "signup.path", "signup.format", "signup.handler", "signup.email", "signup.username",
    "signup.password", "signup.fields", "signup.answer", "signup.conflict", "signup.success",
    "signup.profile", "signup.legacy_check", "identity.local_prefix",
    "password_change.path", "password_change.format", "password_change.old",
    "password_change.new", "password_change.confirm", "password_change.answer",
    "password_change.failure",
    "policy.min_length", "policy.max_length",
    "server.max_line_size", "server.max_field_size", "server.max_headers", "server.body_timeout",
    "session.previous_secrets",
    "limits.enabled", "limits.login_account_ip", "limits.login_ip", "limits.login_window",
    "limits.login_block", "limits.login_block_max", "limits.reset_ip", "limits.reset_address",
    "limits.signup_ip", "limits.signup_address", "limits.rate_window",
    "hashes.recipe", "hashes.recipe.name", "hashes.recipe.steps", "hashes.recipe.pepper",
    "hashes.recipe.test",
    # rules (issue 16)
    "rules.name", "rules.events", "rules.call", "rules.url", "rules.secret", "rules.timeout",
    "rules.on_error", "rules.ttl", "rules.identity_headers", "rules.options",
    "rules.breaker_failures", "rules.breaker_interval",
    "policy.capture_min_length", "policy.breached_list",
    # the legacy database as a source (issue 17)
    "legacy_db.url", "legacy_db.pool_size", "legacy_db.timeout", "legacy_db.hash_column",
    "legacy_db.find_user", "legacy_db.find_user.by_email", "legacy_db.find_user.by_username",
    "legacy_db.list_users", "legacy_db.list_users.sql", "legacy_db.list_users.key",
    "legacy_db.list_users.start", "lookup.source",
)  # fmt: skip
