"""Typed settings from the environment, `.env`, and Prefect Secret blocks.

Each provider has one settings group. Its variable names are the ones the original cron scripts
used (`MAILER_LITE_API_KEY`, `BREVO_LIST_ID`, `AC_API_URL`, ...), so an existing `.env` keeps
working. A secret may instead live in a Prefect Secret block: set `<VARIABLE>_BLOCK` to the
block's name (the environment wins when both are set, which is what tests and CI use).

A flow calls `load_provider_settings` before it sends a request or writes a row: every missing
variable is named in one `MissingConfiguration` error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.redact import register_secret

DEFAULT_DATABASE_URL = "sqlite:///syncflows.db"


class MissingConfiguration(RuntimeError):
    """Raised before any work when required settings are absent; names every missing variable."""

    def __init__(self, provider: str, variables: list[str]) -> None:
        self.provider = provider
        self.variables = variables
        super().__init__(
            f"{provider}: missing configuration: {', '.join(variables)} "
            "(set them in the environment or .env, or name a Prefect Secret block in "
            "<VARIABLE>_BLOCK for secrets)"
        )


class GlobalLimits(StrEnum):
    """Whether rate limits are coordinated across processes through Prefect."""

    AUTO = "auto"  # on when PREFECT_API_URL points at a server, off in ephemeral mode
    ON = "on"
    OFF = "off"


# Tests point this at os.devnull, so a developer's .env never leaks into them.
ENV_FILE = os.environ.get("SYNCFLOWS_ENV_FILE", ".env")


def _base_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )


class Settings(BaseSettings):
    """Settings every flow shares: database, error reporting, HTTP policy, limit coordination."""

    model_config = _base_config("")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    sentry_environment: str = Field(default="production", validation_alias="SENTRY_ENVIRONMENT")
    prefect_api_url: str | None = Field(default=None, validation_alias="PREFECT_API_URL")
    global_limits: GlobalLimits = Field(
        default=GlobalLimits.AUTO, validation_alias="SYNCFLOWS_GLOBAL_LIMITS"
    )
    lease_seconds: float = Field(
        default=10.0, gt=0, le=50, validation_alias="SYNCFLOWS_LEASE_SECONDS"
    )
    # Where `make deploy`'s alert automation sends (shared.alerts): a notification block's
    # `<type>/<name>`, or a webhook URL (a secret: Slack's carry their key in the path).
    alert_block: str | None = Field(default=None, validation_alias="SYNCFLOWS_ALERT_BLOCK")
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias="SYNCFLOWS_ALERT_WEBHOOK_URL"
    )
    # Seconds between a flow run's heartbeats (the work pool passes it to every run as
    # PREFECT_FLOWS_HEARTBEAT_FREQUENCY; Prefect's minimum is 30). A run silent for three of
    # them is marked Crashed by `make deploy`'s automation (shared.alerts).
    heartbeat_seconds: int = Field(
        default=30, ge=30, validation_alias="SYNCFLOWS_HEARTBEAT_SECONDS"
    )
    http_timeout_seconds: float = Field(default=30.0, gt=0, validation_alias="HTTP_TIMEOUT_SECONDS")
    http_max_attempts: int = Field(default=6, ge=1, validation_alias="HTTP_MAX_ATTEMPTS")
    http_backoff_max_seconds: float = Field(
        default=60.0, gt=0, validation_alias="HTTP_BACKOFF_MAX_SECONDS"
    )

    @property
    def coordinate_limits(self) -> bool:
        """True when provider caps must be shared with other processes via Prefect.

        `auto` means: whenever a Prefect API is configured (environment or Prefect profile);
        Prefect's ephemeral mode has none, and a single process needs no coordination.
        """
        if self.global_limits is GlobalLimits.AUTO:
            return self.prefect_api_configured
        return self.global_limits is GlobalLimits.ON

    @property
    def prefect_api_configured(self) -> bool:
        """True when a Prefect API is set in the environment or the active Prefect profile."""
        return bool(self.prefect_api_url or _profile_api_url())


class ProviderSettings(BaseSettings):
    """What every provider group has: credentials, base URL, account label, documented caps."""

    provider: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ("api_key",)
    lanes: ClassVar[tuple[str, ...]] = ()  # requests with a cap of their own, besides the account's
    accounts_per_connection: ClassVar[bool] = False  # accounts come from stored connections

    api_key: SecretStr | None = None
    api_key_block: str | None = None
    base_url: str
    account: str = "default"
    rate_per_second: float | None = None  # None: no request-rate cap
    # Pace below the cap by this fraction: slack for arrival jitter within the provider's
    # window (2 %: 20 ms in a one-second window).
    rate_margin: float = Field(default=0.02, ge=0.0, le=0.5)
    max_in_flight: int = Field(default=8, ge=1)

    def env_name(self, field: str) -> str:
        """The environment variable that sets `field` (its first alias, else prefix + name)."""
        info = type(self).model_fields[field]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            return first if isinstance(first, str) else field.upper()
        if isinstance(alias, str):
            return alias
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    def missing(self, fields: Sequence[str] | None = None) -> list[str]:
        """Environment names of required settings (or of `fields`) that have no value."""
        names = []
        for field in self.required if fields is None else fields:
            value = getattr(self, field)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value in (None, ""):
                names.append(self.env_name(field))
        return names

    def secret_fields(self) -> list[str]:
        """Names of the fields holding secrets."""
        return [
            name
            for name, info in type(self).model_fields.items()
            if info.annotation in (SecretStr, SecretStr | None)
        ]


class SelfcheckSettings(ProviderSettings):
    """The self-check flow, which proves settings → DB → HTTP → ledger against a sandbox."""

    provider: ClassVar[str] = "selfcheck"
    model_config = _base_config("SELFCHECK_")
    base_url: str = ""
    required: ClassVar[tuple[str, ...]] = ("api_key", "base_url")
    rate_per_second: float | None = 50.0


class MailerLiteSettings(ProviderSettings):
    """MailerLite: 120 requests/minute per account (shared/api/push-providers.md §1.8)."""

    provider: ClassVar[str] = "mailerlite"
    model_config = _base_config("MAILER_LITE_")
    required: ClassVar[tuple[str, ...]] = ("api_key", "group_id")
    lanes: ClassVar[tuple[str, ...]] = ("imports",)
    base_url: str = "https://connect.mailerlite.com/api"
    group_id: str | None = None
    rate_per_second: float | None = 2.0
    # The window is a minute: 0.5 % is 0.3 s of slack in it, as much as 2 % gives 10/s caps.
    rate_margin: float = Field(default=0.005, ge=0.0, le=0.5)
    # No documented connection cap; room for every lane of a push (flows/mailerlite/flow.py),
    # so an import never waits for a single upsert to come back before it may start.
    max_in_flight: int = Field(default=12, ge=1)
    # Batches made only of upserts are imports: 5 per minute on top of the 120 (§1.6).
    imports_per_minute: float = Field(default=5.0, gt=0)
    # The production-user rule's email half (the flags are the other): comma-separated
    # case-insensitive globs. Defaults: `+test` / `+demo` sub-addresses, `test.` domains, the
    # example domains and the .test/.invalid/.localhost top-level domains (RFC 2606).
    excluded_emails: str = (
        "*+test@*,*+demo@*,*@test.*,*@example.com,*@example.org,*@example.net,"
        "*.test,*.invalid,*.localhost"
    )


class BrevoSettings(ProviderSettings):
    """Brevo: /v3/contacts/** share 10 req/s and 36,000 req/h (push-providers.md §2.7)."""

    provider: ClassVar[str] = "brevo"
    model_config = _base_config("BREVO_")
    required: ClassVar[tuple[str, ...]] = ("api_key",)
    base_url: str = "https://api.brevo.com/v3"
    list_id: int | None = None  # the seed's BREVO_LIST_ID: optional
    rate_per_second: float | None = 10.0
    # What happens to a pushed customer who opts out: leave the list, be blacklisted, nothing.
    opt_out: Literal["unlink", "blacklist", "none"] = "unlink"
    # For phones written without a country code (ISO 3166 alpha-2, e.g. NL); none: such a
    # phone cannot be normalised and the contact goes without SMS, with a warning.
    default_country: str | None = None
    # This many changed customers or more go through one bulk import instead of upserts.
    import_threshold: int = Field(default=100, ge=1)


class MailchimpSettings(ProviderSettings):
    """Mailchimp: no rate quota, 10 simultaneous connections per account (push §3.11).

    The flow needs only `MAILCHIMP_TOKEN_KEYS` (to decrypt the connections' credentials); the
    OAuth app's `MAILCHIMP_CLIENT_ID`, `_CLIENT_SECRET` and `_REDIRECT_URI` are needed by
    `syncflows mailchimp connect` alone. `account` is unused: each connection is its own
    account, named by Mailchimp's account id.
    """

    provider: ClassVar[str] = "mailchimp"
    model_config = _base_config("MAILCHIMP_")
    required: ClassVar[tuple[str, ...]] = ("token_keys",)
    oauth_required: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "redirect_uri")
    accounts_per_connection: ClassVar[bool] = True
    # For API-key connections (push §3.1: the data centre is the key's suffix).
    base_url: str = "https://{dc}.api.mailchimp.com/3.0"
    login_url: str = "https://login.mailchimp.com"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_block: str | None = None
    redirect_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MAILCHIMP_REDIRECT_URI", "REDIRECT_URI")
    )
    # Fernet keys for the stored credentials, comma-separated, newest first (shared.crypto).
    token_keys: SecretStr | None = None
    token_keys_block: str | None = None
    max_in_flight: int = Field(default=10, ge=1, le=10)
    # Connections one run syncs at once, each with its account's own 10 requests in flight: a
    # run's work is bound by the accounts it drives at once, not by the worker's CPU
    # (bench `mailchimp-workers`: 4 at once used a quarter of a core).
    connections_at_once: int = Field(default=16, ge=1)
    # Deleting a contact archives its member (push §3.5); true forgets it for good instead,
    # after which Mailchimp refuses the address forever.
    permanent_delete: bool = False


class ActiveCampaignSettings(ProviderSettings):
    """ActiveCampaign: full API URL from Settings → Developer; 5 req/s per account (pull §1.11)."""

    provider: ClassVar[str] = "activecampaign"
    model_config = _base_config("AC_")
    required: ClassVar[tuple[str, ...]] = ("api_key", "base_url")
    base_url: str = Field(default="", validation_alias=AliasChoices("AC_API_URL", "AC_BASE_URL"))
    # The seed's design card says 10/s; the documented account limit is 5/s, and a 429 halves
    # the pace (shared.limits), so 10 is safe and fast where the account allows it.
    rate_per_second: float | None = 10.0
    # Incremental reads start this far before the last run's start (provider clock): covers
    # same-second updates and records whose `udate` was stamped before they became visible.
    overlap_seconds: int = Field(default=300, ge=0)
    # A full sync (which also finds deletions) runs when the last one is older than this.
    full_sync_hours: float = Field(default=24.0, gt=0)


class MagentoSettings(ProviderSettings):
    """Magento 2: Bearer token; no documented read limit, keep in-flight low (pull §2.7)."""

    provider: ClassVar[str] = "magento"
    model_config = _base_config("MAGENTO_")
    required: ClassVar[tuple[str, ...]] = ("api_key", "base_url")
    base_url: str = ""
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MAGENTO_ACCESS_TOKEN", "MAGENTO_TOKEN", "MAGENTO_API_KEY"),
    )
    api_key_block: str | None = Field(
        default=None, validation_alias=AliasChoices("MAGENTO_ACCESS_TOKEN_BLOCK")
    )
    # §2.7 advises few requests at once because offset pages of orders are heavy for the shop's
    # database; keyset pages on entity_id (its primary key) are light range reads, and a full
    # sync of 100,000 orders at 150 ms per answer needs about 8 at once to finish in 30 s.
    # Lower it if the shop struggles.
    max_in_flight: int = Field(default=8, ge=1)
    # The watermark never passes an order younger than this (shop clock): orders commit after
    # their entity_id is taken, so a lower id can still appear (pull §2.11).
    settle_seconds: int = Field(default=300, ge=0)


PROVIDERS: tuple[type[ProviderSettings], ...] = (
    SelfcheckSettings,
    MailerLiteSettings,
    BrevoSettings,
    MailchimpSettings,
    ActiveCampaignSettings,
    MagentoSettings,
)

P = TypeVar("P", bound=ProviderSettings)


def load_settings() -> Settings:
    """Load the shared settings and register their secrets for redaction."""
    settings = Settings()
    for secret in (settings.sentry_dsn, settings.alert_webhook_url):
        if secret is not None:
            register_secret(secret.get_secret_value())
    register_secret(make_url(settings.database_url).password)
    return settings


async def load_provider_settings(cls: type[P], **overrides: Any) -> P:
    """Load one provider's settings, fill secrets from Prefect blocks, fail on anything missing.

    Raises:
        MissingConfiguration: naming every required variable that has no value.
    """
    settings = cls(**overrides)
    unreadable = []
    for field in settings.secret_fields():
        block = getattr(settings, f"{field}_block", None)
        if getattr(settings, field) is None and block:
            try:
                value = await _read_secret(block)
            except ValueError:  # Prefect's "Unable to find block document named …"
                unreadable.append(f"{settings.env_name(field)} (Secret block {block!r} not found)")
                continue
            settings = settings.model_copy(update={field: SecretStr(value)})
    missing = [m for m in settings.missing() if not any(u.startswith(m) for u in unreadable)]
    if missing or unreadable:
        raise MissingConfiguration(cls.provider, missing + unreadable)
    for field in settings.secret_fields():
        secret = getattr(settings, field)
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings


def _profile_api_url() -> str | None:
    from prefect.settings import get_current_settings  # deferred: importing prefect is slow

    return get_current_settings().api.url


async def _read_secret(block_name: str) -> str:
    from prefect.blocks.system import Secret  # deferred: importing prefect costs seconds

    block: Secret[str] = await Secret.aload(block_name)
    return str(block.get())
