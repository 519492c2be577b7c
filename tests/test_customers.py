"""The customer directory from the command line: import (good and bad rows), merge, unmerge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatcher.decide import Decider, Incoming
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from dispatcher.triage import DefaultQueue
from normalizer.model import CaseOpen
from tests.daemon import run_ingest
from tests.test_decide import message

GOOD = """external_id,name,organisation,emails,phones,tier,is_customer
ACME-1,Ann Lee,Acme,Ann@Acme.example; ann.lee@home.example,+49 30 123456,gold,yes
BETA-2,Bob Ray,Beta,bob@beta.example,,silver,no
"""
BAD_ROWS = """external_id,name,emails,phones,is_customer
OK-1,Olga,olga@example.com,,yes
,No Id,noid@example.com,,
BAD-2,Bad Mail,not-an-email,,
BAD-3,Bad Phone,,12345,
OK-1,Twice,,,
BAD-4,Taken,olga@example.com,,
BAD-5,Maybe,,,perhaps
"""


class Directory:
    """A settings file on a store, the CLI on it, and a dispatcher deciding into the same store."""

    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.settings = tmp_path / "settings.toml"
        url = store.engine.url.set(drivername=store.engine.url.get_backend_name())
        self.settings.write_text(
            f'[store]\nurl = "{url.render_as_string(False)}"\nauto_migrate = true\n'
        )
        self.decider = Decider(DispatcherSettings(), "case-update", DefaultQueue("support"))

    def cli(self, *args: str, ok: bool = True) -> tuple[str, str]:
        done = run_ingest(self.settings, *args)
        assert (done.returncode == 0) is ok, done.stderr.decode()
        return done.stdout.decode(), done.stderr.decode()

    def csv(self, name: str, text: str) -> str:
        path = self.tmp_path / name
        path.write_text(text)
        return str(path)

    def show(self, ref: str) -> dict:
        return json.loads(self.cli("customers", "show", ref)[0])

    async def send(self, case: CaseOpen) -> CaseOpen:
        [outcome] = await self.store.run(self.decider.batch, [Incoming(case)])
        assert outcome.forward is not None
        return outcome.forward


@pytest.fixture
async def directory(tmp_path: Path, store_url: str) -> AsyncIterator[Directory]:
    store = await Store.open(store_url, auto_migrate=True)
    yield Directory(tmp_path, store)
    await store.close()


@pytest.mark.slow
async def test_import_upserts_idempotently_and_normalises_addresses(directory: Directory) -> None:
    path = directory.csv("good.csv", GOOD)
    out, _ = directory.cli("customers", "import", path)
    summary = "2 created, 0 updated, 0 unchanged, 0 provisional customers merged, 0 rows rejected"
    assert out == f"{path}: {summary}\n"
    out, _ = directory.cli("customers", "import", path)
    assert "0 created, 0 updated, 2 unchanged" in out
    changed = directory.csv("changed.csv", GOOD.replace("silver", "gold"))
    out, _ = directory.cli("customers", "import", changed)
    assert "0 created, 1 updated, 1 unchanged" in out

    ann = directory.show("phone:+4930123456")
    assert (ann["external_id"], ann["name"], ann["tier"], ann["known"]) == (
        "ACME-1",
        "Ann Lee",
        "gold",
        True,
    )
    assert [(i["kind"], i["address"]) for i in ann["identities"]] == [
        ("email", "ann@acme.example"),
        ("email", "ann.lee@home.example"),
        ("phone", "+4930123456"),
    ]
    assert directory.show("ext:BETA-2")["is_customer"] is False


async def test_bad_rows_are_reported_by_line_and_the_good_ones_applied(
    directory: Directory,
) -> None:
    path = directory.csv("bad.csv", BAD_ROWS)
    out, err = directory.cli("customers", "import", path, ok=False)
    assert out.endswith(
        "1 created, 0 updated, 0 unchanged, 0 provisional customers merged, 6 rows rejected\n"
    )
    assert err.splitlines() == [
        f"{path}:3: external_id is empty",
        f"{path}:4: BAD-2: email 'not-an-email': An email address must have an @-sign.",
        f"{path}:5: BAD-3: phone '12345': write the number with + and its country code",
        f"{path}:6: OK-1: external_id OK-1 already on line 2",
        f"{path}:7: BAD-4: email olga@example.com already given on line 2",
        f"{path}:8: BAD-5: is_customer 'perhaps': write yes or no",
    ]
    assert directory.show("ext:OK-1")["name"] == "Olga"


async def test_an_address_of_another_directory_customer_is_never_moved(
    directory: Directory,
) -> None:
    directory.cli("customers", "import", directory.csv("good.csv", GOOD))
    steal = directory.csv("steal.csv", "external_id,emails\nEVE-9,bob@beta.example\n")
    _, err = directory.cli("customers", "import", steal, ok=False)
    assert err.strip() == (
        f"{steal}:2: EVE-9: email bob@beta.example belongs to ext:BETA-2; "
        "merge them by hand if they are one"
    )
    assert directory.show("email:bob@beta.example")["external_id"] == "BETA-2"


async def test_the_directory_merges_a_provisional_customer_it_names(directory: Directory) -> None:
    before = await directory.send(message("ann@acme.example", "first, unknown", name="A. Lee"))
    assert before.customer is not None and before.customer.known is False
    out, _ = directory.cli("customers", "import", directory.csv("good.csv", GOOD))
    assert "2 created, 0 updated, 0 unchanged, 1 provisional customers merged" in out

    ann = directory.show("ext:ACME-1")
    assert ann["merged"] == [before.customer.id]
    [record] = ann["merges"]
    assert (record["action"], record["actor"]) == ("merge", "import:good.csv")
    after = await directory.send(message("ann@acme.example", "now known"))
    assert after.customer is not None and after.customer.external_id == "ACME-1"
    assert after.history is not None
    assert [c.id for c in after.history.open_cases] == [
        before.dedup.case_id if before.dedup else ""
    ]


@pytest.mark.slow
async def test_merge_and_unmerge_by_hand_leave_an_audit_trail(directory: Directory) -> None:
    by_mail = await directory.send(message("zed@example.org", "by mail"))
    by_phone = await directory.send(message("+14155550123", "by phone", channel="sms"))
    assert by_mail.customer and by_phone.customer
    out, _ = directory.cli(
        "customers",
        "merge",
        "email:zed@example.org",
        "phone:+14155550123",
        "--reason",
        "same person, confirmed on the phone",
    )
    phone_id, mail_id = by_phone.customer.id, by_mail.customer.id
    assert out.strip() == f"merge 1: customer {phone_id} merged into {mail_id} (1 identities moved)"
    merged = await directory.send(message("+14155550123", "again", channel="sms"))
    assert merged.customer and merged.customer.id == by_mail.customer.id
    assert merged.history and len(merged.history.open_cases) == 2

    _, err = directory.cli(
        "customers", "merge", "email:zed@example.org", "phone:+14155550123", ok=False
    )
    assert "cannot be merged into itself" in err
    out, _ = directory.cli("customers", "unmerge", "1", "--reason", "not the same after all")
    assert out.strip().startswith(f"unmerge 2: customer {by_phone.customer.id} separated")
    apart = await directory.send(message("+14155550123", "apart", channel="sms"))
    assert apart.customer and apart.customer.id == by_phone.customer.id
    merges = directory.show("email:zed@example.org")["merges"]
    assert [(m["id"], m["action"], m["undone_by"]) for m in merges] == [
        (1, "merge", 2),
        (2, "unmerge", None),
    ]
    _, err = directory.cli("customers", "unmerge", "1", ok=False)
    assert "merge 1 was already undone by 2" in err
