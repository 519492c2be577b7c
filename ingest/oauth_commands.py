"""`ingest imap authorize ACCOUNT` and `ingest outbound authorize`: OAuth 2.0 for a mailbox
or the acknowledgements' relay, by the device authorization grant (RFC 8628).

The admin is shown an address and a code; once they have signed in as the mailbox's user
there, the refresh token is saved under the data folder (mode 0600). A running daemon picks
it up at its next login attempt, without a restart, and a refusal it recorded is cleared.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from channels.oauth2 import Service
    from channels.oauth2.device import DeviceCode
    from channels.oauth2.store import TokenStore
    from channels.settings import OAuth2Settings
    from ingest.settings import Settings


def register(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    """Add the `imap` and `outbound` groups to the CLI."""

    @main.group()
    def imap() -> None:
        """IMAP mailboxes: authorize an OAuth2 account."""

    paste_option = click.option(
        "--paste",
        is_flag=True,
        help="The authorization code flow instead (Google): open the address shown, consent, "
        "then paste the address the browser was sent to (a page that does not load).",
    )

    @imap.command("authorize")
    @settings_option
    @click.argument("account")
    @paste_option
    def imap_authorize(settings_path: Path, account: str, paste: bool) -> None:
        """Sign ACCOUNT in with OAuth2 (Microsoft 365, Google, or a generic provider):
        shows an address and a code to enter there, waits, saves the refresh token."""
        from channels.oauth2 import TokenStore, token_path

        settings = load(settings_path)
        accounts = {found.name: found for found in settings.channels.imap.accounts}
        chosen = accounts.get(account)
        if chosen is None:
            known = ", ".join(accounts) or "none"
            raise click.ClickException(f"no IMAP account {account!r} (accounts: {known})")
        if chosen.auth != "oauth2" or chosen.oauth2 is None:
            raise click.ClickException(f"account {account!r} has auth = {chosen.auth!r}")
        path = token_path(settings.paths.data_dir, f"imap-{chosen.name}")
        store = TokenStore(path, _write_durably(), chosen.oauth2.refresh_token_env)
        _authorize(chosen.oauth2, "imap", store, f"{chosen.name} ({chosen.user})", paste)

    @main.group()
    def outbound() -> None:
        """The outbound mail relay of acknowledgements: authorize OAuth2."""

    @outbound.command("authorize")
    @settings_option
    @paste_option
    def outbound_authorize(settings_path: Path, paste: bool) -> None:
        """Sign the relay's user ([outbound.mail] user) in with OAuth2; saves the token."""
        from channels.oauth2 import TokenStore, token_path

        settings = load(settings_path)
        mail = settings.outbound.mail
        if mail.auth != "oauth2" or mail.oauth2 is None:
            raise click.ClickException(f"[outbound.mail] has auth = {mail.auth!r}")
        path = token_path(settings.paths.data_dir, "outbound-mail")
        store = TokenStore(path, _write_durably(), mail.oauth2.refresh_token_env)
        _authorize(mail.oauth2, "smtp", store, f"the relay's user {mail.user}", paste)


def _write_durably() -> Callable[[Path, bytes], None]:
    from ingest.durable import write_durably

    return write_durably


def _authorize(
    settings: OAuth2Settings, service: Service, store: TokenStore, who: str, paste: bool
) -> None:
    from channels.oauth2 import endpoints
    from channels.oauth2.code import CodeRequest, authorize_by_code
    from channels.oauth2.device import AuthorizationFailed, authorize

    def show(code: DeviceCode) -> None:
        minutes = max(1, round(code.expires_in / 60))
        click.echo(f"To authorize {who}, open {code.verification_uri}")
        click.echo(f"and enter the code {code.user_code} (valid {minutes} min).")
        if code.verification_uri_complete:
            click.echo(f"Or open {code.verification_uri_complete}")
        click.echo("Sign in as the mailbox's user. Waiting...")
        sys.stdout.flush()

    def ask(request: CodeRequest) -> str:
        click.echo(f"To authorize {who}, open this address and sign in as the mailbox's user:")
        click.echo(request.url)
        click.echo("The browser is then sent to http://127.0.0.1:... (a page that does not load).")
        return str(click.prompt("Paste that address here", prompt_suffix=": "))

    try:
        if paste:
            authorize_by_code(settings, endpoints(settings, service), store, ask)
        else:
            authorize(settings, endpoints(settings, service), store, show)
    except (AuthorizationFailed, LookupError) as error:
        raise click.ClickException(f"not authorized: {error}") from None
    click.echo(f"authorized: refresh token saved in {store.path} (mode 0600)")
