"""Settings, read once from the environment."""

import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    dev = "dev"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    mandate_env: Environment = Environment.dev
    data_dir: Path = Path("var")
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = Field(default="", repr=False)
    # The service's Ed25519 signing key (PEM, or the 32-byte seed in base64); when unset it is
    # generated into DATA_DIR/signing-key.pem with owner-only permissions.
    signing_key: str = Field(default="", repr=False)
    mail_backend: Literal["maildir", "smtp"] = "maildir"
    maildir: Path | None = None
    mail_from: str = "Mandate <mandate@localhost>"
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    # A transient failure waits base * 2^(attempt - 1) (with jitter), never longer than the maximum.
    mail_retry_base_seconds: float = Field(default=30, gt=0)
    mail_retry_max_seconds: float = Field(default=900, gt=0)
    mail_batch_size: int = Field(default=200, gt=0)
    # `mandate serve` delivers the outbox itself; turn off when a `mandate mail send` worker does.
    mail_send_in_server: bool = True
    # Abuse limits are counted in each process ("memory") or, with several servers on one
    # PostgreSQL database, together in it ("database").
    rate_limit_store: Literal["memory", "database"] = "memory"
    # Each server looks for ballots whose voting starts or closes by the clock; at most once
    # each, however many servers look.
    schedule_in_server: bool = True
    schedule_interval_seconds: float = Field(default=30, gt=0)
    # A staff session ends after this long however active it is (the absolute timeout) ...
    staff_session_hours: int = Field(default=12, gt=0)
    # ... and after this long without a request (the idle timeout).
    staff_idle_minutes: int = Field(default=30, gt=0)
    # How long a transaction waits for a lock before giving up with "busy, try again".
    database_lock_timeout_ms: int = Field(default=30_000, gt=0)
    # Log lines as text or as one JSON object per line; either way each carries its request id.
    log_format: Literal["text", "json"] = "text"
    # DEBUG adds the database's statements (never their values) and the libraries' detail.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Reverse proxies (comma-separated addresses or CIDR ranges) whose X-Forwarded-Proto is
    # believed; from any other address the header is ignored.
    trusted_proxies: str = ""
    # Request bodies over this size are refused with 413 before the app reads them ...
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # ... except a ballot definition (with its documents) and a roll upload.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # The domains a practice's contact addresses may be in (comma-separated); a subdomain of
    # one counts. Links to a personal mailbox outside NHSmail would leave the NHS's controls.
    allowed_email_domains: str = "nhs.net"

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'mandate.db'}"
        if self.maildir is None:
            self.maildir = self.data_dir / "mail"
        if not self.secret_key:
            if self.mandate_env is Environment.production:
                raise ValueError("SECRET_KEY must be set in production (at least 32 characters)")
            self.secret_key = _local_secret(self.data_dir)
        if self.mandate_env is Environment.production and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters in production")
        self.base_url = self.base_url.rstrip("/")
        if not self.email_domains:
            raise ValueError("ALLOWED_EMAIL_DOMAINS must name at least one domain, e.g. nhs.net")
        return self

    @property
    def email_domains(self) -> tuple[str, ...]:
        parts = (d.strip().lower().lstrip("@.") for d in self.allowed_email_domains.split(","))
        return tuple(d for d in parts if d)


def _local_secret(data_dir: Path) -> str:
    """Read, or create with owner-only permissions, the development secret key."""
    # A fixed default would let anyone forge links on a forgotten demo; a per-install key doesn't.
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
