"""OAuth2 tokens against a stand-in provider over real HTTP on loopback: refresh, rotation
saved atomically (mode 0600), a refused refresh token that stays refused until authorized
again, and the device authorization grant (RFC 8628) with its every answer."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from channels.oauth2 import Reauthorize, TokenRefused, TokenSource, TokenStore, endpoints
from channels.oauth2.code import CodeRequest, authorize_by_code
from channels.oauth2.device import AuthorizationFailed, DeviceCode, authorize
from channels.oauth2.store import fingerprint
from channels.settings import OAuth2Settings
from ingest.durable import write_durably
from tests.daemon import clean_environment
from tests.oauth_provider import OAuthProvider

USER = "support@example.com"
COMMAND = "ingest imap authorize support"


@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    server = OAuthProvider().start()
    yield server
    server.stop()


class Clock:
    """The time a TokenSource sees, moved by the test (expiry without waiting for it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(
    provider: OAuthProvider, path: Path, clock: Clock | None = None, **settings: object
) -> tuple[TokenSource, TokenStore]:
    oauth2 = OAuth2Settings.model_validate(provider.settings(**settings))
    store = TokenStore(path, write_durably, oauth2.refresh_token_env)
    tokens = TokenSource(oauth2, endpoints(oauth2, "imap"), store, COMMAND, clock or Clock())
    return tokens, store


def saved(store: TokenStore, refresh_token: str) -> None:
    from channels.oauth2 import Grant

    store.save(Grant(refresh_token))


def test_an_access_token_is_kept_until_shortly_before_it_expires(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    provider.access_lifetime_s = 600
    clock = Clock()
    tokens, store = source(provider, tmp_path / "t.json", clock, refresh_before_s=60)
    saved(store, provider.issue(USER))

    first = tokens.access_token()
    assert provider.valid(first) == USER
    clock.now += 539  # 61 s left: still good
    assert tokens.access_token() == first
    clock.now += 2  # 59 s left: inside refresh_before_s
    second = tokens.access_token()
    assert second != first and provider.valid(second) == USER
    assert provider.grants == ["refresh_token", "refresh_token"]

    tokens.refused(second)  # the server said no to it: the next one is fresh
    assert tokens.access_token() not in (first, second)
    assert tokens.problem is None


def test_a_rotated_refresh_token_is_saved_0600_and_the_old_one_is_not_used_again(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    provider.rotate = True
    path = tmp_path / "oauth2" / "imap-support.json"
    tokens, store = source(provider, path)
    first = provider.issue(USER)
    saved(store, first)

    tokens.access_token()
    grant = store.load()
    assert grant is not None and grant.refresh_token not in (None, first)
    assert grant.refresh_token in provider.refresh_tokens
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob("*.tmp")), "no temporary left behind"

    # A restart reads the rotated token; the retired one would now be refused.
    restarted, _ = source(provider, path)
    assert provider.valid(restarted.access_token()) == USER
    assert first not in provider.refresh_tokens


def test_a_refused_refresh_token_is_a_lasting_error_until_authorized_again(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    tokens, store = source(provider, tmp_path / "t.json")
    saved(store, provider.issue(USER))
    provider.revoke(USER)

    with pytest.raises(Reauthorize) as refused:
        tokens.access_token()
    assert "invalid_grant" in str(refused.value)
    assert refused.value.fix == f"run `{COMMAND}`"
    assert tokens.problem == str(refused.value)
    asked = len(provider.grants)

    # Retries neither ask the provider again nor forget, across a restart too.
    restarted, _ = source(provider, tmp_path / "t.json")
    for again in (tokens, tokens, restarted):
        with pytest.raises(Reauthorize, match="invalid_grant"):
            again.access_token()
    assert len(provider.grants) == asked

    saved(store, provider.issue(USER))  # what `ingest imap authorize` does
    assert provider.valid(tokens.access_token()) == USER
    assert tokens.problem is None


def test_no_refresh_token_at_all_says_to_authorize(provider: OAuthProvider, tmp_path: Path) -> None:
    tokens, _ = source(provider, tmp_path / "t.json")
    with pytest.raises(Reauthorize, match=r"not authorized yet.*ingest imap authorize support"):
        tokens.access_token()
    assert provider.grants == []


def test_a_refused_client_is_a_lasting_error_that_names_the_settings(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    tokens, store = source(provider, tmp_path / "t.json", client_id="someone-else")
    saved(store, provider.issue(USER))
    with pytest.raises(TokenRefused, match=r"invalid_client.*client_id") as refused:
        tokens.access_token()
    assert not isinstance(refused.value, Reauthorize)
    grant = store.load()
    assert grant is not None and grant.refused is None, "the token itself was not refused"


def test_a_token_from_the_environment_is_followed_by_its_rotations_until_replaced(
    provider: OAuthProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.rotate = True
    first = provider.issue(USER)
    monkeypatch.setenv("TEST_REFRESH_TOKEN", first)
    tokens, store = source(provider, tmp_path / "t.json", refresh_token_env="TEST_REFRESH_TOKEN")

    tokens.access_token()
    grant = store.load()
    assert grant is not None and grant.refresh_token != first
    assert grant.from_env == fingerprint(first), "the file follows the variable's token"

    newer = provider.issue(USER)
    monkeypatch.setenv("TEST_REFRESH_TOKEN", newer)  # an admin puts a new token in
    assert store.load() == type(grant)(newer, from_env=fingerprint(newer))


class Consent:
    """Stands for the admin at the browser: after `after` polls, does `act` to the code."""

    def __init__(self, provider: OAuthProvider, act: str, after: int = 2) -> None:
        self.provider = provider
        self.act = act
        self.after = after
        self.waits: list[float] = []
        self.shown: list[DeviceCode] = []

    def show(self, code: DeviceCode) -> None:
        self.shown.append(code)

    def wait(self, seconds: float) -> None:
        """Polls at the interval asked for are recorded, not slept."""
        self.waits.append(seconds)
        if len(self.waits) == self.after:
            getattr(self.provider, self.act)(self.shown[0].user_code)


def device_authorize(
    provider: OAuthProvider, tmp_path: Path, consent: Consent
) -> tuple[TokenStore, OAuth2Settings]:
    oauth2 = OAuth2Settings.model_validate(provider.settings())
    store = TokenStore(tmp_path / "oauth2" / "t.json", write_durably, None)
    authorize(oauth2, endpoints(oauth2, "imap"), store, consent.show, consent.wait)
    return store, oauth2


def test_the_device_grant_shows_the_code_polls_until_consent_and_saves_the_token(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    consent = Consent(provider, "approve", after=3)
    store, _ = device_authorize(provider, tmp_path, consent)

    [code] = consent.shown
    assert code.verification_uri == f"{provider.url}/device" and code.user_code
    assert consent.waits == [1.0, 1.0, 1.0]  # the provider's interval, until consent
    grant = store.load()
    assert grant is not None and grant.refresh_token in provider.refresh_tokens
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_slow_down_makes_the_polls_five_seconds_slower(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    consent = Consent(provider, "approve", after=1)
    original = consent.show

    def show_and_slow(code: DeviceCode) -> None:
        original(code)
        provider.slow_down(code.user_code, 2)

    consent.show = show_and_slow  # type: ignore[method-assign]
    device_authorize(provider, tmp_path, consent)
    assert consent.waits == [1.0, 6.0, 11.0]


@pytest.mark.parametrize(
    ("act", "message"),
    [("deny", "declined"), ("expire_code", "expired")],
)
def test_a_declined_or_expired_code_is_an_error_and_saves_nothing(
    provider: OAuthProvider, tmp_path: Path, act: str, message: str
) -> None:
    consent = Consent(provider, act, after=1)
    with pytest.raises(AuthorizationFailed, match=message):
        device_authorize(provider, tmp_path, consent)
    assert not (tmp_path / "oauth2" / "t.json").exists()


def test_provider_presets_fill_in_endpoints_and_scopes_and_settings_override_them() -> None:
    microsoft = OAuth2Settings(provider="microsoft", client_id="c", tenant="contoso.com")
    base = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0"
    imap = endpoints(microsoft, "imap")
    assert (imap.token_url, imap.device_authorization_url) == (
        f"{base}/token",
        f"{base}/devicecode",
    )
    assert imap.scope == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert endpoints(microsoft, "smtp").scope == (
        "https://outlook.office.com/SMTP.Send offline_access"
    )
    google = endpoints(OAuth2Settings(provider="google", client_id="c"), "smtp")
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scope == "https://mail.google.com/"
    own = OAuth2Settings(provider="google", client_id="c", scope="s", token_url="https://t/")
    assert (endpoints(own, "imap").token_url, endpoints(own, "imap").scope) == ("https://t/", "s")


def browser(url: str) -> str:
    """The user's browser: opens the address, consents, and is sent on; the address it was
    sent to (which does not load: nothing listens on the loopback redirect)."""
    response = httpx.get(url, follow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def code_authorize(
    provider: OAuthProvider, tmp_path: Path, ask: Callable[[CodeRequest], str]
) -> TokenStore:
    authorization_url = f"{provider.url}/authorize"
    oauth2 = OAuth2Settings.model_validate(provider.settings(authorization_url=authorization_url))
    store = TokenStore(tmp_path / "oauth2" / "t.json", write_durably, None)
    authorize_by_code(oauth2, endpoints(oauth2, "imap"), store, ask)
    return store


def test_the_code_flow_redeems_the_pasted_address_with_the_pkce_verifier(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    store = code_authorize(provider, tmp_path, lambda request: browser(request.url))
    grant = store.load()
    assert grant is not None and grant.refresh_token in provider.refresh_tokens
    assert provider.grants == ["authorization_code"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("paste", "message"),
    [
        (lambda url: browser(url).replace("state=", "state=x"), "not the answer to this request"),
        (lambda url: browser(url).replace("code=", "other="), "no code in that address"),
    ],
)
def test_a_pasted_address_that_does_not_answer_this_request_is_refused(
    provider: OAuthProvider, tmp_path: Path, paste: Callable[[str], str], message: str
) -> None:
    with pytest.raises(AuthorizationFailed, match=message):
        code_authorize(provider, tmp_path, lambda request: paste(request.url))
    assert not (tmp_path / "oauth2" / "t.json").exists()


def test_a_declined_consent_in_the_code_flow_is_an_error(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    provider.consent = False
    with pytest.raises(AuthorizationFailed, match="access_denied"):
        code_authorize(provider, tmp_path, lambda request: browser(request.url))


def test_imap_authorize_paste_on_the_command_line(provider: OAuthProvider, tmp_path: Path) -> None:
    oauth2 = provider.settings(authorization_url=f"{provider.url}/authorize")
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in oauth2.items())
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/var"\n[channels.imap]\nenabled = true\n'
        f'[[channels.imap.accounts]]\nname = "gmail"\nhost = "imap.example"\nuser = "{USER}"\n'
        f'auth = "oauth2"\noauth2 = {{ {table} }}\n'
    )
    command = [sys.executable, "-m", "ingest", "imap", "authorize", "gmail", "--paste"]
    with subprocess.Popen(
        [*command, "--settings", str(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clean_environment(),
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert "To authorize gmail (support@example.com)" in lines[0]
        url = lines[1].strip()
        assert url.startswith(f"{provider.url}/authorize?") and "code_challenge=" in url
        output, _ = process.communicate(browser(url) + "\n", timeout=30)
    assert process.returncode == 0, output
    path = tmp_path / "var" / "oauth2" / "imap-gmail.json"
    assert f"authorized: refresh token saved in {path} (mode 0600)" in output
    assert json.loads(path.read_text())["refresh_token"] in provider.refresh_tokens


def test_the_doctor_reports_what_the_daemon_recorded(tmp_path: Path) -> None:
    from channels.oauth2 import Grant
    from ingest.doctor import oauth2_check

    store = TokenStore(tmp_path / "oauth2" / "t.json", write_durably, None)
    missing = oauth2_check("imap support", store, COMMAND)
    assert (missing.status, missing.fix) == ("FAIL", f"run `{COMMAND}`")
    assert "not authorized" in missing.detail

    store.save(Grant("rt-1"))
    assert oauth2_check("imap support", store, COMMAND).status == "ok"
    store.path.chmod(0o644)
    loose = oauth2_check("imap support", store, COMMAND)
    assert (loose.status, loose.fix) == ("warn", f"chmod 600 {store.path}")

    store.save(Grant("rt-1", refused="invalid_grant: revoked"))
    refused = oauth2_check("imap support", store, COMMAND)
    assert refused.status == "FAIL" and "invalid_grant: revoked" in refused.detail
    assert refused.line().endswith(f"-> run `{COMMAND}`")


def test_a_refusal_does_not_overwrite_a_token_authorized_meanwhile(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    from channels.oauth2 import Grant

    path = tmp_path / "t.json"
    store = TokenStore(path, write_durably, None)
    old = provider.issue(USER)
    store.save(Grant(old))
    provider.revoke(USER)
    fresh = provider.issue(USER)
    # The daemon spent `old` and was refused; `authorize` wrote `fresh` in between.
    store.save(Grant(fresh))
    assert not store.save_if_current(old, Grant(old, refused="invalid_grant"))
    grant = store.load()
    assert grant is not None and (grant.refresh_token, grant.refused) == (fresh, None)
    assert store.save_if_current(fresh, Grant(fresh, refused="invalid_grant"))


def test_a_missing_client_secret_variable_is_a_lasting_error_naming_it(
    provider: OAuthProvider, tmp_path: Path
) -> None:
    tokens, store = source(provider, tmp_path / "t.json", client_secret_env="TEST_NO_SUCH_SECRET")
    saved(store, provider.issue(USER))
    with pytest.raises(TokenRefused, match="TEST_NO_SUCH_SECRET is not set"):
        tokens.access_token()
    assert tokens.problem is not None and provider.grants == []
