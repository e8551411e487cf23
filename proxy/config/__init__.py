"""The TOML config, parsed once at start into frozen dataclasses.

Every problem is collected and reported together, each naming its key (``login[1].success``).

    reader    the strict ``Reader`` that collects problems, ``Secret``, durations, listen
    server    [server] [upstream] [store] [migration] [log]
    login     [[login]] routes (success rules, profile source, answers), [profile], [logout]
    sessions  [session] [identity] [passwords] [limits]
    flows     [lookup] [reset] [signup] [password_change] [policy]
    mail      [mail]
    admin     [admin]
    rules     [[rules]] and the [policy] keys judged at capture
    legacy_db [legacy_db]: the legacy app's own database as a source
    load      the whole ``Config``: parse_config, load_config and the partial loaders, ALL_KEYS
"""

from proxy.config.admin import MIN_ADMIN_TOKEN_LENGTH, AdminConfig, is_loopback
from proxy.config.flows import (
    LookupConfig,
    PasswordChangeConfig,
    PolicyConfig,
    ResetConfig,
    SignupConfig,
)
from proxy.config.legacy_db import LegacyDbConfig
from proxy.config.load import (
    ALL_KEYS,
    Config,
    load_config,
    load_legacy_db,
    load_readiness_days,
    load_recipes,
    load_store_config,
    parse_config,
)
from proxy.config.login import (
    Answer,
    LoginRoute,
    LogoutConfig,
    ProfileMap,
    ProfileSource,
    SuccessRules,
)
from proxy.config.mail import DEFAULT_MAIL_BODY, DEFAULT_MAIL_SUBJECT, MailConfig
from proxy.config.reader import Secret, parse_duration, parse_listen
from proxy.config.rules import EVENTS, CapturePolicy, RuleConfig
from proxy.config.server import (
    LogConfig,
    MigrationConfig,
    ServerConfig,
    StoreConfig,
    UpstreamConfig,
)
from proxy.config.sessions import (
    IDENTITY_FIELDS,
    MIN_SECRET_LENGTH,
    LimitsConfig,
    ListenAddress,
    PasswordConfig,
    SessionConfig,
)

__all__ = [
    "ALL_KEYS",
    "DEFAULT_MAIL_BODY",
    "DEFAULT_MAIL_SUBJECT",
    "EVENTS",
    "IDENTITY_FIELDS",
    "MIN_ADMIN_TOKEN_LENGTH",
    "MIN_SECRET_LENGTH",
    "AdminConfig",
    "Answer",
    "CapturePolicy",
    "Config",
    "LegacyDbConfig",
    "LimitsConfig",
    "ListenAddress",
    "LogConfig",
    "LoginRoute",
    "LogoutConfig",
    "LookupConfig",
    "MailConfig",
    "MigrationConfig",
    "PasswordChangeConfig",
    "PasswordConfig",
    "PolicyConfig",
    "ProfileMap",
    "ProfileSource",
    "ResetConfig",
    "RuleConfig",
    "Secret",
    "ServerConfig",
    "SessionConfig",
    "SignupConfig",
    "StoreConfig",
    "SuccessRules",
    "UpstreamConfig",
    "is_loopback",
    "load_config",
    "load_legacy_db",
    "load_readiness_days",
    "load_recipes",
    "load_store_config",
    "parse_config",
    "parse_duration",
    "parse_listen",
]
