"""Settings: the shipped file, environment overrides, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.database import driver_url
from ingest.settings import SettingsError, load_settings
from tests.daemon import run_ingest

ROOT = Path(__file__).resolve().parent.parent


IMAP_ACCOUNT = '[[channels.imap.accounts]]\nname = "a"\nhost = "imap.example"\nuser = "u"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_shipped_settings_load_with_the_documented_defaults() -> None:
    settings = load_settings(ROOT / "settings.toml")
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8080
    assert settings.channels.smtp.port == 2525
    assert settings.queues.default == "support.general"
    assert settings.queues.case_open == "case-open"
    assert settings.paths.data_dir == ROOT / "var"
    assert settings.store.url == f"sqlite:///{ROOT}/var/ingest.db"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[http]\nport = 8080\n")
    monkeypatch.setenv("INGEST_HTTP__PORT", "9000")
    monkeypatch.setenv("INGEST_CHANNELS__WEB__API_KEYS", '["one", "two"]')
    monkeypatch.setenv("INGEST_QUEUES__TEAMS", '["support.general", "billing"]')
    settings = load_settings(path)
    assert settings.http.port == 9000
    assert settings.channels.web.api_keys == ["one", "two"]
    assert settings.queues.declared_teams() == ["support.general", "billing"]


def test_relative_paths_are_relative_to_the_settings_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[paths]\ndata_dir = "data"\n[store]\nurl = "sqlite:///db/x.db"\n')
    settings = load_settings(path)
    assert settings.paths.data_dir == tmp_path / "data"
    assert settings.store.url == f"sqlite:///{tmp_path}/db/x.db"


def test_store_urls_get_their_driver() -> None:
    assert driver_url("sqlite:///var/ingest.db").drivername == "sqlite+pysqlite"
    assert driver_url("postgresql://ingest@db.example/ingest").drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[http]\nport = 70000\n", "http.port: Input should be less than or equal to 65535"),
        ("[http]\nprot = 1\n", "http.prot: Extra inputs are not permitted"),
        ('[store]\nurl = "mysql://x/y"\n', "store.url: Value error, only sqlite:/// and postgres"),
        ('[broker]\nurl = "http://x"\n', "broker.url: Value error, must be an amqp://"),
        ("[http\nport = 1\n", "not valid TOML"),
        (
            IMAP_ACCOUNT + 'password_env = "pass word"\n',
            "channels.imap.accounts.0.password_env: String should match pattern",
        ),
        (
            IMAP_ACCOUNT + 'password_env = "P"\n' + IMAP_ACCOUNT + 'password_env = "P"\n',
            "channels.imap: Value error, account names must be unique",
        ),
        (IMAP_ACCOUNT + 'password_env = "P"\nafter = "delete"\n', "channels.imap.accounts.0.after"),
        (
            IMAP_ACCOUNT,
            "channels.imap.accounts.0: Value error, auth = 'password' needs password_env",
        ),
        (
            IMAP_ACCOUNT + 'auth = "oauth2"\n',
            "channels.imap.accounts.0: Value error, auth = 'oauth2' needs an oauth2 table",
        ),
        (
            IMAP_ACCOUNT + 'auth = "oauth2"\noauth2 = { client_id = "c" }\n',
            "channels.imap.accounts.0.oauth2: Value error, the generic provider needs token_url",
        ),
        (
            IMAP_ACCOUNT + 'auth = "oauth2"\noauth2 = { provider = "yahoo", client_id = "c" }\n',
            "channels.imap.accounts.0.oauth2.provider: Input should be 'microsoft', 'google'",
        ),
        (
            '[outbound.mail]\nauth = "oauth2"\noauth2 = { provider = "google", client_id = "c" }\n',
            "outbound.mail: Value error, auth = 'oauth2' needs user and an oauth2 table",
        ),
        (
            '[channels.contact]\nlanguages = ["en", "fr"]\n',
            "channels.contact.languages: Value error, no texts for ['fr']",
        ),
        (
            '[channels.contact]\nlanguages = ["en", "da"]\ndefault_language = "de"\n',
            "channels.contact: Value error, default_language 'de' is not in languages",
        ),
        (
            '[channels.contact]\nallowed_origins = ["www.example.com"]\n',
            "channels.contact.allowed_origins: Value error, 'www.example.com' is not an origin",
        ),
        (
            "[dispatcher.retention]\nfingerprint_h = 1\n",
            "dispatcher: Value error, retention.fingerprint_h must be at least "
            "dedup.duplicate_window_h",
        ),
        (
            '[dispatcher.dedup]\nconversation_channels = ["pigeon"]\n',
            "dispatcher.dedup.conversation_channels.0: Input should be 'email'",
        ),
    ],
)
def test_invalid_settings_name_file_key_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert expected in str(raised.value)


def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_HTTP__PORT", "eighty")
    with pytest.raises(SettingsError, match=r"^environment INGEST_HTTP__PORT: http\.port: "):
        load_settings(write(tmp_path, ""))


def test_toml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nhost = "x"\nport = = 1\n')
    with pytest.raises(SettingsError, match="line 3"):
        load_settings(path)


def test_run_refuses_invalid_settings_with_one_line_and_nonzero_exit(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = -1\n")
    result = run_ingest(path, "run")
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert stderr.count("\n") == 1
    assert f"{path}: http.port: Input should be greater than or equal to 0" in stderr
