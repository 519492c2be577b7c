"""Settings sections of the channel adapters; `channels.registry` assembles `[channels]` from
the records that name them, and `ingest.settings` the whole file."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ChannelSection(BaseModel):
    """Base of a channel's settings: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class WebChannelSettings(ChannelSection):
    """The JSON API (`POST /api/v1/messages`)."""

    enabled: bool = True
    api_keys: list[str] = Field(
        default_factory=list,
        description="Bearer keys with every scope; INGEST_CHANNELS__WEB__API_KEYS. Prefer keys "
        "made with `ingest keys create` (hashed in the store, scoped, revocable).",
    )
    rate_limit_per_key: int = Field(
        default=120, ge=1, description="Requests per window for one key (a key may set its own)."
    )
    rate_limit_per_client: int = Field(
        default=240, ge=1, description="Requests per window from one client address."
    )
    rate_window_s: int = Field(default=60, ge=1, le=86_400)
    idempotency_hours: int = Field(
        default=24, ge=24, description="How long an Idempotency-Key stands for its first answer."
    )
    touchpoint: str = "api"
    max_body_bytes: int = Field(default=262_144, ge=1024)
    default_phone_region: str | None = Field(
        default=None, description="Region for numbers given without +country code, e.g. 'DE'."
    )


CONTACT_LANGUAGES = ("en", "da", "de")
"""Languages the contact form has texts for."""


class ContactFormSettings(ChannelSection):
    """The website contact form (`GET/POST /contact`)."""

    enabled: bool = True
    touchpoint: str = Field(default="contact-form", description="Recorded as the form's name.")
    languages: list[str] = Field(
        default_factory=lambda: list(CONTACT_LANGUAGES),
        min_length=1,
        description="Languages offered, chosen by ?lang= or Accept-Language.",
    )
    default_language: str = "en"
    max_body_bytes: int = Field(
        default=26_214_400, ge=4096, description="The whole submission, files included."
    )
    max_files: int = Field(default=5, ge=0, le=50)
    max_file_bytes: int = Field(default=10_485_760, ge=1)
    file_types: list[str] = Field(
        default_factory=lambda: [
            "application/pdf",
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "text/plain",
        ],
        description="Media types accepted for attachments.",
    )
    max_message_chars: int = Field(default=20_000, ge=100)
    rate_limit_per_email: int = Field(default=5, ge=1, description="Submissions per window.")
    rate_limit_per_ip: int = Field(default=20, ge=1, description="Submissions per window.")
    rate_window_s: int = Field(default=3600, ge=1)
    csrf_secret: SecretStr | None = Field(
        default=None,
        description="Signs form tokens; INGEST_CHANNELS__CONTACT__CSRF_SECRET. Unset: a random "
        "one per start (forms open across a restart must then be reloaded).",
    )
    form_max_age_s: int = Field(default=7200, ge=60, description="How long a form is valid.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the daemon's own that may post the form, e.g. a proxy's.",
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, values: list[str]) -> list[str]:
        unknown = sorted(set(values) - set(CONTACT_LANGUAGES))
        if unknown:
            raise ValueError(f"no texts for {unknown}; known: {list(CONTACT_LANGUAGES)}")
        return list(dict.fromkeys(values))

    @field_validator("file_types")
    @classmethod
    def _lower_types(cls, values: list[str]) -> list[str]:
        return [value.strip().lower() for value in values]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"https?://[^/\s]+", value):
                raise ValueError(f"{value!r} is not an origin like https://www.example.com")
        return [value.lower() for value in values]

    @model_validator(mode="after")
    def _default_offered(self) -> ContactFormSettings:
        if self.default_language not in self.languages:
            raise ValueError(f"default_language {self.default_language!r} is not in languages")
        return self


class SmtpChannelSettings(ChannelSection):
    """Inbound SMTP from a site's MTA (or as the MX behind a firewall)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    hostname: str = Field(default="localhost", description="The name in the SMTP greeting.")
    lmtp: bool = Field(default=False, description="Speak LMTP instead, for MTAs that deliver so.")
    addresses: list[str] = Field(
        default_factory=lambda: ["support@localhost"],
        description="Touchpoint addresses accepted as recipients.",
    )
    domains: list[str] = Field(
        default_factory=list, description="Domains whose every address is accepted."
    )
    max_message_bytes: int = Field(default=26_214_400, ge=1024)
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain); when set, STARTTLS is offered."
    )
    tls_key_file: Path | None = None
    require_starttls: bool = False
    auth_user: str | None = Field(
        default=None, description="When set, clients must AUTH (over TLS) as this user."
    )
    auth_password: SecretStr | None = Field(
        default=None, description="Set it in the environment: INGEST_CHANNELS__SMTP__AUTH_PASSWORD."
    )

    @model_validator(mode="after")
    def _complete(self) -> SmtpChannelSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.auth_user is None) != (self.auth_password is None):
            raise ValueError("auth_user and auth_password go together")
        if self.auth_user and self.tls_cert_file is None:
            raise ValueError("AUTH needs TLS: set tls_cert_file and tls_key_file")
        return self

    @field_validator("addresses", "domains")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.strip().lower() for value in values]

    def accepts(self, address: str) -> bool:
        """Whether mail to this address is ours; anything else is refused (no open relay)."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return address in self.addresses or (bool(domain) and domain in self.domains)


class MailSettings(ChannelSection):
    """What the email normaliser needs, shared by SMTP and IMAP."""

    case_ref_pattern: str | None = Field(
        default=r"\[#(C-\d+)\]",
        description="Regular expression of a case reference in subjects; group 1 is the id.",
    )

    @field_validator("case_ref_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value


OAUTH2_PROVIDERS = ("microsoft", "google", "generic")


class OAuth2Settings(ChannelSection):
    """How a mailbox or relay gets its access tokens (OAuth 2.0, refresh token grant).

    The refresh token is kept in a file under the data folder (mode 0600; written by
    `ingest imap authorize` or `ingest outbound authorize`), or given by `refresh_token_env`
    until the provider rotates it (the new one then goes to the file, which wins from then on).
    """

    provider: Literal["microsoft", "google", "generic"] = Field(
        default="generic",
        description="microsoft (Entra ID / Microsoft 365) and google fill in the endpoints "
        "and scopes; generic needs token_url (and device_authorization_url to authorize).",
    )
    client_id: str = Field(min_length=1, description="The application (client) id.")
    client_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the client secret, when the "
        "application has one (Google's do); never in the file.",
    )
    tenant: str = Field(
        default="organizations",
        pattern=r"^[A-Za-z0-9.-]{1,128}$",
        description="Microsoft only: the tenant id or domain (organizations: any work account).",
    )
    token_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    device_authorization_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    authorization_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="The authorization endpoint, for `authorize --paste` (the authorization "
        "code flow; Google's device flow does not allow the Gmail scope).",
    )
    scope: str | None = Field(
        default=None, description="Space-separated scopes; unset: the provider's for the service."
    )
    refresh_token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="An environment variable with the refresh token, instead of authorizing.",
    )
    mechanism: Literal["auto", "xoauth2", "oauthbearer"] = Field(
        default="auto", description="SASL mechanism; auto: OAUTHBEARER when offered, else XOAUTH2."
    )
    refresh_before_s: float = Field(
        default=300.0, ge=0, description="Refresh an access token this long before it expires."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one token request.")

    @model_validator(mode="after")
    def _endpoints(self) -> OAuth2Settings:
        if self.provider == "generic" and self.token_url is None:
            raise ValueError("the generic provider needs token_url")
        return self

    def client_secret(self) -> str | None:
        """Read from the environment when needed, so it is never stored."""
        if self.client_secret_env is None:
            return None
        value = os.environ.get(self.client_secret_env)
        if value is None:
            raise LookupError(f"the environment variable {self.client_secret_env} is not set")
        return value


class ImapAccount(ChannelSection):
    """One mailbox the IMAP adapter watches."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Names the account in logs and state."
    )
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = Field(
        default="tls", description="tls (port 993), starttls, or none (loopback only)."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle to verify the server; unset: the system's."
    )
    user: str
    auth: Literal["password", "oauth2"] = Field(
        default="password", description="password (password_env), or oauth2 ([...oauth2])."
    )
    password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable that holds the password (never the file).",
    )
    oauth2: OAuth2Settings | None = None
    address: str | None = Field(
        default=None, description="The touchpoint address of this mailbox; default: user."
    )
    folder: str = "INBOX"
    after: Literal["seen", "move"] = Field(
        default="seen", description="Once a mail is safe: flag it \\Seen, or move it."
    )
    move_to: str = "Processed"
    unprocessable_folder: str = "Unprocessable"
    max_message_bytes: int = Field(default=26_214_400, ge=1024)
    idle: bool = Field(default=True, description="Use IDLE when the server offers it.")
    idle_renew_s: float = Field(
        default=600.0, gt=0, le=1740, description="Re-issue IDLE this often (RFC 2177: < 29 min)."
    )
    poll_interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    reconnect_max_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _credentials(self) -> ImapAccount:
        if self.auth == "password" and self.password_env is None:
            raise ValueError("auth = 'password' needs password_env")
        if self.auth == "oauth2" and self.oauth2 is None:
            raise ValueError("auth = 'oauth2' needs an oauth2 table (provider, client_id, ...)")
        return self

    @property
    def touchpoint(self) -> str:
        return (self.address or self.user).strip().lower()

    def password(self) -> str:
        """Read the password from the environment when connecting, so it is never stored."""
        if self.password_env is None:
            raise LookupError("no password_env for this account")
        value = os.environ.get(self.password_env)
        if value is None:
            raise LookupError(f"the environment variable {self.password_env} is not set")
        return value


class ImapChannelSettings(ChannelSection):
    """Mailboxes fetched over IMAP (imapclient), with IDLE or polling."""

    enabled: bool = False
    accounts: list[ImapAccount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ImapChannelSettings:
        names = [account.name for account in self.accounts]
        if len(names) != len(set(names)):
            raise ValueError("account names must be unique")
        return self


class TwilioChannelSettings(ChannelSection):
    """SMS, MMS, WhatsApp and voice webhooks from Twilio (`/twilio/...` on the HTTP server)."""

    enabled: bool = False
    auth_token: SecretStr | None = Field(
        default=None,
        description="The account's Auth Token; set INGEST_CHANNELS__TWILIO__AUTH_TOKEN.",
    )
    public_url: str | None = Field(
        default=None,
        description="The base URL Twilio calls, e.g. https://support.example.com; signatures "
        "are checked against it plus the path, never against the request's Host.",
    )
    verify_signatures: bool = Field(
        default=True, description="Off only for local testing: then anyone can post cases."
    )
    account_sid: str | None = Field(
        default=None,
        pattern=r"^AC[0-9a-f]{32}$",
        description="The account SID (AC...): media are fetched with the account's "
        "credentials, and acknowledgements go out as SMS and WhatsApp messages through "
        "Twilio's REST API (with auth_token).",
    )
    fetch_media: bool = Field(
        default=False,
        description="Fetch MMS/WhatsApp media into the blob store after acknowledging.",
    )
    media_max_bytes: int = Field(default=5_242_880, ge=1024)
    media_fetch_timeout_s: float = Field(default=30.0, gt=0)
    media_fetch_attempts: int = Field(default=5, ge=1, le=50)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    acknowledgement: dict[str, str] = Field(
        default_factory=lambda: {
            "en": "Thank you, we have your message. Your reference: {reference}",
        },
        description="Reply text per language; {reference} is the case-open id. Empty: no reply.",
    )
    default_language: str = Field(default="en", description="Used when no region matches.")
    region_languages: dict[str, str] = Field(
        default_factory=dict,
        description="The reply's language by the sender number's region, e.g. {DE = 'de'}.",
    )
    voice_greeting: str = Field(
        default="Thank you for calling. Please leave a message after the tone, "
        "and we will get back to you.",
        min_length=1,
    )
    voice_language: str = Field(default="en-US", description="Language of the spoken greeting.")
    voice_max_recording_s: int = Field(default=120, ge=1, le=3600)
    transcribe: bool = Field(
        default=True, description="Ask Twilio to transcribe voicemails (recordings up to 2 min)."
    )
    transcript_wait_s: float = Field(
        default=300.0,
        ge=0,
        description="How long after the recording a case waits for its transcript.",
    )
    recording_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long after a call ended a case waits for its recording.",
    )
    api_base_url: str = Field(
        default="https://api.twilio.com",
        pattern=r"^https?://[^/?#\s]+/?$",
        description="Twilio's REST API; changed only to point tests at a stand-in.",
    )
    api_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one API request.")
    acknowledge_calls_by_sms: bool = Field(
        default=False,
        description="Acknowledge a call or voicemail by SMS from the number called (it must "
        "be able to send SMS); otherwise calls are not acknowledged.",
    )

    @model_validator(mode="after")
    def _complete(self) -> TwilioChannelSettings:
        if self.enabled and self.verify_signatures:
            if self.auth_token is None:
                raise ValueError("auth_token is needed to verify signatures")
            if self.public_url is None:
                raise ValueError("public_url is needed to verify signatures")
        if self.acknowledgement and self.default_language not in self.acknowledgement:
            raise ValueError("acknowledgement needs a text in default_language")
        if self.account_sid and self.auth_token is None:
            raise ValueError("account_sid needs auth_token")
        return self

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None:
            if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
                raise ValueError("must be an http:// or https:// URL without query")
            value = value.rstrip("/")
        return value

    @field_validator("acknowledgement")
    @classmethod
    def _only_reference(cls, texts: dict[str, str]) -> dict[str, str]:
        for language, text in texts.items():
            try:
                fields = {name for _, name, _, _ in string.Formatter().parse(text) if name}
            except ValueError as error:
                raise ValueError(f"{language}: {error}") from None
            if fields - {"reference"}:
                raise ValueError(f"{language}: only {{reference}} can be filled in")
        return texts

    @field_validator("region_languages")
    @classmethod
    def _upper_regions(cls, regions: dict[str, str]) -> dict[str, str]:
        return {region.upper(): language for region, language in regions.items()}

    def url(self, path: str) -> str:
        """The URL Twilio calls for this path: public_url + path, or the bare path."""
        return f"{self.public_url or ''}{path}"

    def acknowledgement_for(self, region: str | None) -> str | None:
        """The reply text for a sender from this region, or None when replies are off."""
        language = self.region_languages.get(region or "", self.default_language)
        return self.acknowledgement.get(language) or self.acknowledgement.get(self.default_language)


class TelegramChannelSettings(ChannelSection):
    """A Telegram bot: long polling by default, or a webhook on the daemon's HTTP server."""

    enabled: bool = False
    token: SecretStr | None = Field(
        default=None, description="From @BotFather; set INGEST_CHANNELS__TELEGRAM__TOKEN."
    )
    username: str | None = Field(
        default=None,
        pattern=r"^@?[A-Za-z0-9_]{5,64}$",
        description="The bot's @username, recorded as the touchpoint; unset: asked with getMe, "
        "and while the Bot API cannot be reached the touchpoint is the bot's id.",
    )
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout_s: int = Field(
        default=30, ge=1, le=50, description="How long one getUpdates call waits for updates."
    )
    webhook_path: str = Field(default="/telegram/webhook", pattern=r"^/[A-Za-z0-9/_.-]*$")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Checked against X-Telegram-Bot-Api-Secret-Token; set it in the "
        "environment: INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="The public URL of the webhook; when set, it is registered with setWebhook.",
    )
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    greeting: str = Field(
        default="Hello! Write your question here and our support team will answer you.",
        min_length=1,
        max_length=4096,
    )
    max_attachment_bytes: int = Field(default=20_971_520, ge=1024)
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="Connect and read timeout of every other Bot API call."
    )

    @model_validator(mode="after")
    def _complete(self) -> TelegramChannelSettings:
        if self.enabled and self.token is None:
            raise ValueError("an enabled Telegram channel needs a token")
        if self.mode == "webhook" and self.webhook_secret is None:
            raise ValueError("webhook mode needs webhook_secret")
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _secret_alphabet(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token: 1-256 characters A-Z, a-z, 0-9, _ and -.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("use 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value


class OutboundMailSettings(ChannelSection):
    """The SMTP relay acknowledgements by email go out through (the site's MTA or provider)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = Field(
        default="starttls", description="none (loopback only), starttls, or tls (port 465)."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle to verify the relay; unset: the system's."
    )
    user: str | None = Field(default=None, description="When set, log in (AUTH) as this user.")
    auth: Literal["password", "oauth2"] = Field(
        default="password",
        description="AUTH with password, or XOAUTH2 with [outbound.mail.oauth2].",
    )
    password: SecretStr | None = Field(
        default=None, description="Set it in the environment: INGEST_OUTBOUND__MAIL__PASSWORD."
    )
    oauth2: OAuth2Settings | None = None
    from_address: str | None = Field(
        default=None,
        description="The From of every reply; unset: the mailbox the message came to (`via`).",
    )
    from_name: str | None = Field(default=None, description="A display name for From.")
    null_sender: bool = Field(
        default=True,
        description="Send with an empty envelope sender (MAIL FROM:<>), as RFC 3834 asks of "
        "automatic replies, so a bounce of a reply goes nowhere; off for relays that refuse it.",
    )
    helo_name: str | None = Field(default=None, description="Our name in EHLO; unset: the FQDN.")
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> OutboundMailSettings:
        if self.auth == "oauth2":
            if self.user is None or self.oauth2 is None:
                raise ValueError("auth = 'oauth2' needs user and an oauth2 table")
            if self.password is not None:
                raise ValueError("auth = 'oauth2' takes no password")
        elif (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        return self

    @field_validator("from_address")
    @classmethod
    def _lower_address(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None


class OutboundSettings(ChannelSection):
    """Acknowledgements the dispatcher asks for, sent by the channels role."""

    enabled: bool = Field(
        default=True, description="Consume the acknowledgements queue in the channels role."
    )
    concurrency: int = Field(default=8, ge=1, le=200, description="Replies in flight at once.")
    retry_first_s: float = Field(
        default=2.0, gt=0, description="Wait before retrying a transient failure; doubles."
    )
    retry_max_s: float = Field(default=60.0, gt=0)
    mail: OutboundMailSettings = Field(default_factory=OutboundMailSettings)
