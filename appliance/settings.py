"""Settings: pydantic-settings models, one docstring per field.

Sources, highest priority first: keyword arguments, `STRONGROOM_*` environment variables
(nested with `__`, e.g. `STRONGROOM_XERO__API_URL`), the TOML file, defaults. Secrets are never
values in the file: they name a file or a systemd credential (`LoadCredential=`), read when used.
A `Settings` object is built once at the edge (CLI, daemon) and passed in; nothing reads it
from a global.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from appliance.errors import ConfigError, SecretsError

DEFAULT_CONFIG = Path("/etc/strongroom/strongroom.toml")

# Granular read scopes for apps created on or after 2 March 2026, from
# https://developer.xero.com/faq/granular-scopes (see shared/research/xero-api.md §5.2).
READ_SCOPES_GRANULAR = [
    "offline_access",
    "openid",
    "profile",
    "email",
    "accounting.settings.read",
    "accounting.contacts.read",
    "accounting.invoices.read",
    "accounting.payments.read",
    "accounting.banktransactions.read",
    "accounting.manualjournals.read",
    "accounting.attachments.read",
    "accounting.budgets.read",
    "accounting.reports.aged.read",
    "accounting.reports.balancesheet.read",
    "accounting.reports.profitandloss.read",
    "accounting.reports.trialbalance.read",
    "accounting.reports.banksummary.read",
]
# Broad scopes for apps created before 2 March 2026 (valid until September 2027).
READ_SCOPES_BROAD = [
    "offline_access",
    "openid",
    "profile",
    "email",
    "accounting.transactions.read",
    "accounting.reports.read",
    "accounting.settings.read",
    "accounting.contacts.read",
    "accounting.attachments.read",
    "accounting.budgets.read",
]

_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_path", default=None)


class _Model(BaseModel):
    # Attribute docstrings become field descriptions: `config/strongroom.example.toml` is generated from them.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class SecretRef(_Model):
    """Where a secret lives. Exactly one of `file` or `credential` is set."""

    file: Path | None = Field(default=None, examples=["/etc/strongroom/keys/xero-client-secret"])
    """A file holding the secret (mode 0600 or stricter)."""
    credential: str | None = Field(default=None, examples=["xero-client-secret"])
    """A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`."""

    def read(self) -> str:
        if self.credential:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretsError(
                    f"credential {self.credential!r} is configured but CREDENTIALS_DIRECTORY is not set",
                    hint="run under systemd with LoadCredential=, or use `file =` instead",
                )
            path = Path(directory) / self.credential
        elif self.file:
            path = self.file
        else:
            raise SecretsError("a secret reference names neither a file nor a credential")
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SecretsError(f"cannot read secret from {path}: {error.strerror}") from error


class XeroHosts(_Model):
    """Xero's three hosts; override all three to point at the sandbox or another compatible server."""

    login_url: str = "https://login.xero.com"
    """Where people consent (`/identity/connect/authorize`)."""
    identity_url: str = "https://identity.xero.com"
    """Token and revocation endpoints (`/connect/token`, `/connect/revocation`)."""
    api_url: str = "https://api.xero.com"
    """Connections (`/connections`) and the Accounting API (`/api.xro/2.0`)."""


XeroTier = Literal["starter", "core", "plus", "advanced", "enterprise"]


class XeroApp(_Model):
    """A Xero app the firm registered at developer.xero.com."""

    name: str = "default"
    """A short name used on the command line (`--app`)."""
    client_id: str = Field(examples=["YOUR-XERO-CLIENT-ID"])
    """The app's client id (not a secret)."""
    client_secret: SecretRef | None = None
    """Where the client secret lives; none for a PKCE-only app."""
    redirect_uri: str = "http://localhost:8765/callback"
    """Must be registered on the app exactly; Xero accepts http only for localhost."""
    scopes: list[str] = Field(default_factory=lambda: list(READ_SCOPES_GRANULAR))
    """Scopes to request; granular for apps made on or after 2 March 2026."""
    tier: XeroTier = "starter"
    """The app's Xero pricing tier: sets the per-tenant day budget and connection cap."""


class RateLimits(_Model):
    """Xero's documented limits (developer.xero.com/documentation/guides/oauth2/limits)."""

    tenant_concurrent: int = 5
    """Calls in flight per tenant."""
    tenant_per_minute: int = 60
    """Calls per tenant per minute."""
    tenant_per_day: int | None = Field(default=None, examples=[5000])
    """Calls per tenant per day; default from the app tier (1,000 Starter, else 5,000)."""
    app_per_minute: int = 10_000
    """Calls per app per minute across all tenants."""
    max_retries: int = 6
    """Retries for 5xx, timeouts and dropped connections before giving up."""


class RetentionPolicy(_Model):
    """How many backup points to keep (restic `forget --keep-*`)."""

    daily: int = 7
    """Keep the newest point of each of the last this many days."""
    weekly: int = 4
    """Keep the newest point of each of the last this many weeks."""
    monthly: int = 12
    """Keep the newest point of each of the last this many months."""
    yearly: int = 7
    """Keep the newest point of each of the last this many years."""


class BackupSettings(_Model):
    """How a backup reads Xero."""

    page_size: int = 1000
    """Records per page on paged endpoints (Xero's maximum)."""
    full_sweep_days: int = 7
    """Days between full reads that catch hard deletions and silent changes."""
    overlap_seconds: int = 300
    """How far before the watermark incremental reads start (If-Modified-Since is second-granular)."""
    capture_reports: bool = True
    """Store Xero's own trial balance, P&L, balance sheet and aged reports with every point."""
    parallel_organisations: int = 4
    """Organisations backed up at once by one process (each is still held to its own tenant limits)."""
    aged_report_contacts: int = 10
    """Aged receivables/payables cost one call per contact: capture them for this many contacts owing most."""
    detect_damage: bool = True
    """After each successful backup, compare the new point with the previous one and raise damage findings
    (stored, shown by `strongroom findings`, and alerted when warning or critical)."""


class OrganisationSchedule(_Model):
    """Schedule overrides for one organisation (keyed by its Xero tenant id)."""

    interval_hours: float | None = Field(default=None, examples=[4.0])
    """Back it up this often instead of once a day (below 24 it may run outside the night window)."""
    window_start: str | None = Field(default=None, examples=["20:00"])
    """Its own window start (HH:MM in `schedule.timezone`); default the fleet's."""
    window_end: str | None = Field(default=None, examples=["23:00"])
    """Its own window end (HH:MM); default the fleet's."""
    paused: bool = False
    """Never schedule it (a person can still ask for a backup)."""


class ScheduleSettings(_Model):
    """When the daemon backs organisations up and how hard it may push Xero."""

    window_start: str = "01:00"
    """Start of the nightly window (HH:MM in `timezone`) in which scheduled backups start."""
    window_end: str = "06:00"
    """End of the nightly window (HH:MM); equal to `window_start` means all day."""
    timezone: str = "UTC"
    """IANA time zone of the window (e.g. Pacific/Auckland)."""
    interval_hours: float = 24.0
    """How often each organisation is backed up by default."""
    max_concurrent_jobs: int = 16
    """Jobs (backups, replications, checks...) the daemon runs at once."""
    app_call_headroom: float = 0.8
    """Share of Xero's per-app minute limit the scheduler may plan for; the rest absorbs estimate errors."""
    default_calls_per_backup: int = 60
    """Calls a backup is assumed to make when the organisation has no finished run to estimate from."""
    retry_base_minutes: float = 15.0
    """Wait after the first failure of an organisation; doubles with each further failure."""
    retry_max_hours: float = 6.0
    """Longest wait between retries of a failing organisation."""
    tick_seconds: float = 15.0
    """How often the daemon looks for work to start."""
    stop_grace_seconds: float = 60.0
    """How long running jobs get to reach a checkpoint on SIGTERM before they are cancelled."""
    replicate_after_backup: bool = True
    """Copy each new point to the organisation's region right after the backup."""
    retention_every_days: float = 7.0
    """Apply retention (forget + prune) to each organisation's repositories this often."""
    check_every_days: float = 7.0
    """Run `restic check` on each organisation's repositories this often."""
    check_read_data_subset: str | None = Field(default=None, examples=["5%"])
    """Also read back this share of the data in each check (restic `--read-data-subset`)."""
    organisations: dict[str, OrganisationSchedule] = Field(
        default_factory=dict, examples=[{"00000000-0000-0000-0000-000000000000": {"interval_hours": 4.0}}]
    )
    """Per-organisation overrides, keyed by tenant id."""


class Region(_Model):
    """An offsite region: where the organisations whose data must live there are replicated."""

    repository: str = Field(examples=["s3:https://s3.ap-southeast-2.amazonaws.com/firm-backups-au/strongroom"])
    """Base restic location; each organisation gets `<repository>/<tenant id>` (s3:, rest:, sftp:, rclone:, path)."""
    access_key_id: SecretRef | None = None
    """S3 access key id (AWS_ACCESS_KEY_ID), read from a file or credential."""
    secret_access_key: SecretRef | None = None
    """S3 secret key (AWS_SECRET_ACCESS_KEY), read from a file or credential."""
    s3_region: str | None = Field(default=None, examples=["ap-southeast-2"])
    """The S3 region name (AWS_DEFAULT_REGION) when the provider needs one."""
    countries: list[str] = Field(default_factory=list, examples=[["AU", "NZ"]])
    """Organisations based in these countries (ISO codes) belong here unless given a region by hand."""
    append_only: bool = False
    """The target refuses deletions (REST `--append-only`): never run forget/prune against it."""


class AlertSettings(_Model):
    """Who is told when something needs a person (apprise URLs: mailto://, slack://, ntfy://, json://...)."""

    urls: list[str] = Field(default_factory=list, examples=[["ntfy://ntfy.sh/firm-backups"]])
    """Notification URLs without secrets in them."""
    url_secrets: list[SecretRef] = Field(default_factory=list)
    """Notification URLs that carry a token, each read from a file or credential."""
    failures_before_alert: int = 3
    """Alert when an organisation's backups failed this many times in a row."""
    stale_after_hours: float = 48.0
    """Alert when an organisation's newest point is older than this."""
    replication_lag_hours: float = 36.0
    """Alert when a point has waited longer than this to reach its region."""
    repeat_after_hours: float = 24.0
    """The same alert about the same organisation is sent at most once in this period."""
    refresh_warn_days: float = Field(default=50.0, gt=0, lt=60)
    """Warn when a consent's Xero refresh token has not been renewed for this many days (Xero expires an unused
    one after 60 days; a backup renews it)."""
    heartbeat_url: str | None = Field(default=None, examples=["https://hc-ping.com/your-uuid"])
    """Pinged (HTTP GET) after every fleet round, healthchecks.io-style."""


class Settings(BaseSettings):
    """Everything Strongroom can be told. Built once at the edge and passed in."""

    model_config = SettingsConfigDict(
        env_prefix="STRONGROOM_", env_nested_delimiter="__", extra="forbid", use_attribute_docstrings=True
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY") or Path.home() / ".local/share/strongroom"),
        examples=["/var/lib/strongroom"],
    )
    """State database, keys, repositories and mirrors; default `$STATE_DIRECTORY` (systemd: StateDirectory),
    else `~/.local/share/strongroom`."""
    cache_dir: Path | None = Field(default=None, examples=["/var/cache/strongroom"])
    """Opened points and restic caches; default `<data_dir>/cache` (systemd: CacheDirectory)."""
    points_cache_max_bytes: int = Field(default=2 * 1024**3, ge=0, examples=[2147483648])
    """Byte budget of the opened-points cache (`<cache_dir>/points`, all organisations together); the least
    recently opened indexes are evicted beyond it (the point being opened is always kept)."""
    restic_binary: str = "restic"
    """The restic executable (0.14 or newer)."""
    xero: XeroHosts = Field(default_factory=XeroHosts)
    apps: list[XeroApp] = Field(default_factory=list)
    """Registered Xero apps; several allowed, since each tier caps its connections."""
    limits: RateLimits = Field(default_factory=RateLimits)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    default_region: str | None = Field(default=None, examples=["au"])
    """Region of organisations whose country no region claims; none: they are not replicated until given one."""
    regions: dict[str, Region] = Field(default_factory=dict, examples=[{"au": {}}])
    """Offsite regions by name (`[regions.au]`); an organisation's data is only ever copied to its own region."""
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def effective_cache_dir(self) -> Path:
        if self.cache_dir:
            return self.cache_dir
        env = os.environ.get("CACHE_DIRECTORY")
        return Path(env) if env else self.data_dir / "cache"

    def app(self, name: str | None = None) -> XeroApp:
        if not self.apps:
            raise ConfigError("no Xero app is configured", hint="add an [[apps]] table to the settings file")
        if name is None:
            return self.apps[0]
        for app in self.apps:
            if app.name == name:
                return app
        raise ConfigError(f"no Xero app named {name!r}", hint="see `[[apps]]` in the settings file")


def config_path(explicit: Path | None = None) -> Path | None:
    """The settings file to read: `--config`, `$STRONGROOM_CONFIG`, or /etc/strongroom if present."""
    if explicit is not None:
        return explicit
    env = os.environ.get("STRONGROOM_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load(path: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the file at `path` (if any), the environment and `overrides`."""
    from pydantic import ValidationError

    if path is not None and not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from error
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read settings file {path}: {error}") from error
    finally:
        _toml_path.reset(token)
