"""The `ingest` command line.

Commands import what they need when they run, so that `ingest --help` and the quick tools
(`ingest rules test`) start in a fraction of a second; keep module-level imports to click.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ingest.settings import Settings

DEFAULT_SETTINGS_FILE = Path("settings.toml")
CHANNELS = ("email", "sms", "whatsapp", "voice", "chat", "web", "logged")

settings_option = click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_SETTINGS_FILE,
    show_default=True,
    help="The settings file; INGEST_<SECTION>__<KEY> variables override it.",
)


Command = TypeVar("Command", bound=Callable[..., Any])
_whole_process = False
"""True when this process is the `ingest` program (not, say, a test calling `main`)."""


def short_lived(command: Command) -> Command:
    """For the quick tools: no garbage collection while the command runs, and in the `ingest`
    program none at exit either. Their imports and rules make some 60,000 objects and hardly
    any garbage, and the collector's passes over them (during the imports, and once more at
    exit) took about a quarter of a `rules test`'s CPU time. What a long golden test file
    leaves in reference cycles (some 40 kB a sample) waits for the process to end."""

    @functools.wraps(command)
    def collector_off(*args: Any, **kwargs: Any) -> Any:
        gc.disable()
        try:
            return command(*args, **kwargs)
        finally:
            if _whole_process:
                gc.freeze()  # the interpreter's last collection skips what is left
            gc.enable()

    return collector_off  # type: ignore[return-value]


def program() -> None:
    """The `ingest` executable (and `python -m ingest`)."""
    global _whole_process
    _whole_process = True
    # NumPy's OpenBLAS starts a thread per core at import and lets it spin: some 90 ms of CPU
    # in a `rules test`, and cores the daemon's event loop and parsing workers need. Nothing
    # here does linear algebra large enough to gain from it. Before NumPy is imported; the
    # parsing workers inherit it. An admin's own setting stays.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()


def _load(settings_path: Path) -> Settings:
    from ingest.settings import SettingsError, load_settings

    try:
        return load_settings(settings_path)
    except SettingsError as error:
        click.echo(f"ingest: invalid settings: {error}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="omnichannel-ingest")
def main() -> None:
    """Omnichannel message ingestion for customer support."""


@main.command()
@settings_option
@click.option(
    "--role",
    type=click.Choice(["all", "channels", "dispatcher"]),
    default="all",
    show_default=True,
    help="Run every part, only the channels, or only the dispatcher.",
)
def run(settings_path: Path, role: str) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    import asyncio

    from ingest.daemon import StartupError, serve
    from ingest.logs import configure_logging

    settings = _load(settings_path)
    configure_logging(settings.log)
    try:
        # The standard event loop: under uvloop, every process of the fault soak stopped
        # reconnecting for good once the broker was stopped (aio-pika's connect never returned).
        asyncio.run(serve(settings, role, settings_path))  # type: ignore[arg-type]
    except (OSError, StartupError) as error:
        click.echo(f"ingest: cannot start: {error}", err=True)
        sys.exit(1)


@main.group()
def settings() -> None:
    """Inspect the settings."""


@settings.command("check")
@settings_option
def settings_check(settings_path: Path) -> None:
    """Validate the settings file and environment; print the result with secrets hidden."""
    import json

    from ingest.redact import shown_settings

    loaded = _load(settings_path)
    click.echo(json.dumps(shown_settings(loaded), indent=2))
    if loaded.channels.web.api_keys:
        count = len(loaded.channels.web.api_keys)
        click.echo(
            f"recommendation: [channels.web] api_keys holds {count} key(s) in plain text, each "
            "with every scope and no record of its use; make one key per integration with "
            "`ingest keys create NAME` (only a hash is stored; scoped, revocable without a "
            "restart), switch the integrations over, then remove api_keys",
            err=True,
        )


@main.command()
@settings_option
@click.option(
    "--role",
    type=click.Choice(["all", "channels", "dispatcher"]),
    default="all",
    show_default=True,
    help="The role whose needs to check (the broker queues it uses, the store).",
)
def doctor(settings_path: Path, role: str) -> None:
    """Check the settings, broker, topology, store, disk and certificates: one line each,
    with what to do; exit 1 when any check fails."""
    from ingest.doctor import Check, run_checks

    loaded = _load(settings_path)
    click.echo(Check("settings", "ok", str(settings_path)).line())
    checks = run_checks(loaded, settings_path, role)
    for check in checks:
        click.echo(check.line())
    sys.exit(1 if any(check.status == "FAIL" for check in checks) else 0)


@main.command()
@settings_option
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
def backup(settings_path: Path, target: Path) -> None:
    """Copy the SQLite store (online), spool, quarantine and blobs into TARGET, a new folder;
    safe while the daemon runs. README "Running in production" says how to restore."""
    from ingest.backup import BackupError
    from ingest.backup import backup as take

    try:
        manifest = take(_load(settings_path), target)
    except (BackupError, OSError) as error:
        raise click.ClickException(str(error)) from None
    store = "the store and " if manifest["store_file"] else "(store not SQLite: use pg_dump) "
    click.echo(f"backed up {store}{manifest['data_files']} data files into {target}")


@main.group()
def broker() -> None:
    """Set up the broker."""


@broker.command("declare")
@settings_option
@click.option(
    "--url",
    envvar="INGEST_BROKER_ADMIN_URL",
    help="Connect as this user (one that may configure, e.g. ingest-admin); default: the "
    "settings' [broker] url. Also read from INGEST_BROKER_ADMIN_URL.",
)
def broker_declare(settings_path: Path, url: str | None) -> None:
    """Declare the queues and exchanges the settings name, idempotently (what the daemon does
    on connect unless [broker] declare_topology is off)."""
    import asyncio

    from ingest.topology import declare_with

    loaded = _load(settings_path)
    try:
        asyncio.run(declare_with(url or loaded.broker.url, loaded))
    except Exception as error:  # one line, whatever the client library raised
        click.echo(f"ingest: cannot declare the topology: {error}", err=True)
        sys.exit(1)
    click.echo("topology declared")


@main.group()
def rules() -> None:
    """Check the triage rules and try them on a sample message."""


@rules.command("check")
@settings_option
@short_lived
def rules_check(settings_path: Path) -> None:
    """Validate the rules in the settings and the files they include, and run the golden
    tests `[triage] tests` names; exit 1 on any problem or failing test."""
    from dispatcher.triage import RulesError
    from ingest.rules_tool import ack_warnings, golden_check, rules_from

    loaded = _load(settings_path)
    golden = golden_check(loaded)
    try:
        rule_set = rules_from(loaded, settings_path, golden)
    except RulesError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        click.echo(f"ingest: {len(error.problems)} problem(s) in the rules", err=True)
        sys.exit(1)
    tests = f"; {golden.passed} golden test(s) passed" if golden.passed else ""
    for warning in ack_warnings(loaded, settings_path):
        click.echo(warning, err=True)
    click.echo(f"{len(rule_set.rules)} rules OK from {', '.join(rule_set.sources)}{tests}")


@rules.command("test")
@settings_option
@click.argument("sample", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--expect",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A golden test file: run every sample in it, print a table, exit 1 on a mismatch.",
)
@click.option(
    "--channel",
    type=click.Choice(CHANNELS),
    default="email",
    show_default=True,
    help="The channel of a plain-text SAMPLE or --text.",
)
@click.option("--text", help="The message text, instead of a SAMPLE file.")
@click.option("--subject", help="The subject (email, web).")
@click.option("--from", "sender", help="The sender: address, phone or Telegram user id.")
@click.option("--name", "sender_name", help="The sender's display name.")
@click.option("--to", help="Where it arrived: our address, number, bot or agent.")
@click.option("--language", help="Take this language instead of detecting one.")
@click.option("--header", multiple=True, metavar="'NAME: VALUE'", help="A mail header.")
@click.option("--field", multiple=True, metavar="NAME=VALUE", help="A structured field (web).")
@click.option("--attachment", multiple=True, metavar="TYPE[:BYTES]", help="e.g. image/png:200000")
@click.option("--tier", help="The customer's tier in the directory (makes them known).")
@click.option("--known/--unknown", default=False, show_default=True, help="A known customer?")
@click.option("--follow-up", is_flag=True, help="Evaluate as a follow-up of an open case.")
@click.option("--open-cases", type=int, default=0, show_default=True)
@click.option("--contacts-7d", type=int, default=0, show_default=True)
@click.option("--contacts-30d", type=int, default=0, show_default=True)
@click.option("--contacts-90d", type=int, default=0, show_default=True)
@click.option("--repeat", is_flag=True, help="The repeat-contact flag is set.")
@click.option("--last-queue", help="The queue that last served this customer.")
@click.option(
    "--kb",
    multiple=True,
    metavar="ID:SCORE[:TAGS]",
    help="A knowledge-base suggestion, best first: refunds:0.8:billing,refund",
)
@click.option("--incident", metavar="SIZE[:CUSTOMERS]", help="Part of an incident: 12:10")
@click.option(
    "--at",
    help="When it arrives: 2026-11-28T10:00+01:00, or a local time in the calendar's zone "
    "('2026-11-28 10:00'), or one with a zone ('2026-11-28 10:00 Europe/Copenhagen').",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.option("--why-not", metavar="RULE", help="Say why RULE did not match.")
@click.option("-v", "--verbose", is_flag=True, help="Every rule, matched or why not.")
@short_lived
def rules_test(settings_path: Path, sample: Path | None, expect: Path | None, **given: Any) -> None:
    """Show what SAMPLE (an .eml, a .json case-open or web API message, or a plain-text
    file of --channel) or --text would get, and why; or run a golden test file (--expect).

    Nothing is published and nothing is stored.
    """
    from ingest import rules_tool

    loaded = _load(settings_path)
    try:
        if expect is not None:
            passed = rules_tool.expect_command(loaded, settings_path, expect)
            sys.exit(0 if passed else 1)
        click.echo(rules_tool.test_command(loaded, settings_path, sample, given))
    except rules_tool.ToolError as error:
        raise click.ClickException(str(error)) from None


@rules.command("replay")
@settings_option
@click.option(
    "--rules",
    "proposed_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="A settings file whose [triage] section (and its includes) is the proposed rule set.",
)
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="How far back: 12h, 7d, 4w.",
)
@click.option("--show", default=50, show_default=True, help="Changed messages to list at most.")
def rules_replay(settings_path: Path, proposed_path: Path, since: str, show: int) -> None:
    """Run proposed rules over the messages the store holds and print what would change.

    Nothing is forwarded, stored or changed.
    """
    from dispatcher.triage import RulesError, load_rules
    from dispatcher.triage.past import past_messages
    from dispatcher.triage.replay import compare
    from ingest import rules_tool
    from ingest.store_ops import read_store

    loaded = _load(settings_path)
    cutoff = rules_tool.since(since)
    try:
        current = rules_tool.rules_from(loaded, settings_path)
        proposed = load_rules(proposed_path, loaded.queues.declared_teams(), loaded.queues.default)
    except RulesError as error:
        raise click.ClickException("invalid rules:\n" + "\n".join(error.problems)) from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    messages = read_store(loaded, past_messages, cutoff)
    report = compare(messages, current, proposed)
    click.echo(rules_tool.replay_summary(report, cutoff, show))


@main.group()
def queue() -> None:
    """Look at what is on the broker."""


@queue.command("peek")
@settings_option
@click.argument("name")
@click.option("-n", "--count", default=10, show_default=True, help="How many messages at most.")
def queue_peek(settings_path: Path, name: str, count: int) -> None:
    """Print up to COUNT messages of queue NAME without taking them off it.

    The messages are returned to the queue; on a quorum queue each peek counts as a delivery
    towards the queue's delivery limit. The partitions of case-open (single active consumer)
    cannot be peeked.
    """
    import asyncio

    from ingest.peek import PeekRefused, peek

    loaded = _load(settings_path)
    try:
        shown = asyncio.run(peek(loaded.broker.url, name, count))
    except PeekRefused as refused:
        raise click.ClickException(str(refused)) from None
    for message in shown:
        click.echo(message)


@main.group()
def quarantine() -> None:
    """Originals that could not become a case-open, kept with their reason."""


def _quarantine(settings: Settings):
    from ingest.blobstore import BlobStore
    from ingest.quarantine import Quarantine

    data_dir = settings.paths.data_dir
    return Quarantine(data_dir / "quarantine", BlobStore(data_dir / "blobs")), data_dir


@quarantine.command("list")
@settings_option
def quarantine_list(settings_path: Path) -> None:
    """One line per kept original: id, when, channel, reason."""
    kept, _ = _quarantine(_load(settings_path))
    entries = kept.entries()
    for entry in entries:
        source = f"{entry.channel}/{entry.adapter}"
        click.echo(f"{entry.id}  {entry.received_at}  {source}  {entry.reason}")
    click.echo(f"{len(entries)} kept", err=True)


@quarantine.command("show")
@settings_option
@click.argument("entry_id")
@click.option("--raw", is_flag=True, help="Print the original bytes instead of the entry.")
def quarantine_show(settings_path: Path, entry_id: str, raw: bool) -> None:
    """Show one kept original's entry (or its bytes with --raw)."""
    import json
    from dataclasses import asdict

    from ingest.blobstore import BlobStore

    kept, data_dir = _quarantine(_load(settings_path))
    try:
        entry = kept.get(entry_id)
    except FileNotFoundError:
        raise click.ClickException(f"no quarantined message {entry_id}") from None
    if raw:
        sys.stdout.buffer.write(BlobStore(data_dir / "blobs").get(entry.raw_ref))
    else:
        click.echo(json.dumps(asdict(entry), indent=2, ensure_ascii=False))


@quarantine.command("replay")
@settings_option
@click.argument("entry_id")
def quarantine_replay(settings_path: Path, entry_id: str) -> None:
    """Run a kept original through the pipeline again (after the cause is fixed)."""
    import asyncio

    from ingest.replay import ReplayError, replay
    from normalizer.errors import Unprocessable

    settings = _load(settings_path)
    try:
        case_id = asyncio.run(replay(settings, entry_id))
    except FileNotFoundError:
        raise click.ClickException(f"no quarantined message {entry_id}") from None
    except (ReplayError, Unprocessable) as error:
        raise click.ClickException(f"still cannot be used: {error}") from None
    except OSError as error:
        raise click.ClickException(f"broker unreachable, try again later: {error}") from None
    click.echo(f"replayed {entry_id} as case-open {case_id}")


@main.command()
@click.argument(
    "name", default="case-open/1", type=click.Choice(["case-open/1", "acknowledgement/1"])
)
@click.option("--write", is_flag=True, help="Rewrite every committed schema file instead.")
def schema(name: str, write: bool) -> None:
    """Print the JSON Schema of a message (case-open/1 or acknowledgement/1)."""
    from normalizer.schema import render_schema, write_schema

    if write:
        for path in write_schema():
            click.echo(f"wrote {path}")
    else:
        click.echo(render_schema(name), nl=False)


def _register_store_commands() -> None:
    from ingest import (
        intake_commands,
        key_commands,
        oauth_commands,
        report_command,
        store_commands,
    )

    store_commands.register(main, settings_option, _load)
    report_command.register(main, settings_option, _load)
    key_commands.register(main, settings_option, _load)
    intake_commands.register(main, settings_option, _load)
    oauth_commands.register(main, settings_option, _load)


_register_store_commands()
