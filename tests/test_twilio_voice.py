"""Twilio voice end to end: the greeting TwiML, callbacks in either order, one case per call."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import Daemon, DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.twilio_client import (
    OUR_NUMBER,
    PUBLIC_URL,
    TOKEN_ENV,
    call_fields,
    new_sid,
    post,
    recording_fields,
    recording_url,
    transcription_fields,
    twilio_settings,
)
from tests.waiting import until

TRANSCRIPT = "Hi, this is Ann. My router has been down since Monday, please call me back."


@pytest.fixture
async def daemon(make_daemon: Callable[..., LocalDaemon]) -> DaemonBase:
    running = make_daemon(extra=twilio_settings()).start(env=TOKEN_ENV)
    await running.wait_ready()
    return running


async def start_call(daemon: DaemonBase, call_sid: str) -> ET.Element:
    response = await post(daemon, "/twilio/voice", call_fields(call_sid, CallStatus="ringing"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.text)


async def record(daemon: DaemonBase, call_sid: str, recording_sid: str) -> None:
    """What Twilio posts when the recording ends: the <Record> action, then the status callback."""
    action = call_fields(call_sid) | {
        "RecordingUrl": recording_url(recording_sid),
        "RecordingDuration": "14",
        "RecordingSid": recording_sid,
        "Digits": "hangup",
    }
    answer = await post(daemon, "/twilio/voice/recording", action)
    assert answer.status_code == 200, answer.text
    assert ET.fromstring(answer.text).find("Hangup") is not None
    callback = await post(
        daemon, "/twilio/voice/recording", recording_fields(call_sid, recording_sid)
    )
    assert callback.status_code == 200, callback.text


async def transcribe(daemon: DaemonBase, call_sid: str, recording_sid: str, **kw: str) -> None:
    fields = transcription_fields(call_sid, recording_sid, TRANSCRIPT, **kw)
    response = await post(daemon, "/twilio/voice/transcription", fields)
    assert response.status_code == 200, response.text


def assert_voicemail(case: dict, call_sid: str, recording_sid: str, transcript: str) -> None:
    assert (case["channel"], case["adapter"], case["source_id"]) == ("voice", "twilio", call_sid)
    assert case["sender"]["kind"] == "phone"
    assert case["sender"]["address"] == "+442079460958"
    assert case["touchpoints"] == [{"kind": "number", "address": OUR_NUMBER}]
    assert case["subject"] == "Voicemail from +442079460958"
    assert case["text"] == transcript
    assert case["flags"]["callback_requested"] is False
    [recording] = case["attachments"]
    assert recording["url"] == recording_url(recording_sid)
    assert recording["duration_s"] == 14
    assert recording["media_type"] == "audio/x-wav"
    assert recording["name"] == f"voicemail-{recording_sid}.wav"


async def test_the_greeting_records_a_transcribed_voicemail(daemon: DaemonBase) -> None:
    twiml = await start_call(daemon, new_sid("CA"))
    say, record_verb, hangup = list(twiml)
    assert (say.tag, say.get("language")) == ("Say", "en-GB")
    assert say.text and say.text.startswith("Thank you for calling")
    assert record_verb.tag == "Record"
    assert record_verb.get("action") == f"{PUBLIC_URL}/twilio/voice/recording"
    assert record_verb.get("recordingStatusCallback") == f"{PUBLIC_URL}/twilio/voice/recording"
    assert record_verb.get("transcribe") == "true"
    assert record_verb.get("transcribeCallback") == f"{PUBLIC_URL}/twilio/voice/transcription"
    assert record_verb.get("maxLength") == "30"
    assert hangup.tag == "Hangup"


async def test_recording_then_transcript_open_one_case(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(daemon, call_sid)
    await start_call(daemon, call_sid)  # Twilio asking again changes nothing
    await record(daemon, call_sid, recording_sid)
    await transcribe(daemon, call_sid, recording_sid)
    await post(daemon, "/twilio/voice/status", call_fields(call_sid, CallStatus="completed"))

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, TRANSCRIPT)


async def test_transcript_then_recording_open_one_case(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(daemon, call_sid)
    await transcribe(daemon, call_sid, recording_sid)
    await record(daemon, call_sid, recording_sid)

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, TRANSCRIPT)


@pytest.mark.slow
async def test_without_a_transcript_the_case_opens_with_the_recording_alone(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(daemon, call_sid)
    await record(daemon, call_sid, recording_sid)
    # transcript_wait_s = 2: during the first second the call still waits for its transcript.
    assert await collect(amqp, daemon.names.default, expected=1, timeout_s=1.0) == []

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, "")

    # The transcript that comes too late opens nothing new.
    await transcribe(daemon, call_sid, recording_sid)
    assert await forwarded_behind(amqp, daemon.names) == []


async def test_a_failed_transcription_opens_the_case_at_once(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(daemon, call_sid)
    await record(daemon, call_sid, recording_sid)
    await transcribe(daemon, call_sid, recording_sid, status="failed")
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1, timeout_s=1.5))
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, "")


@pytest.mark.parametrize("how", ["call status callback", "recording absent"])
async def test_a_call_without_a_recording_asks_for_a_callback(
    daemon: DaemonBase, amqp: AbstractChannel, how: str
) -> None:
    call_sid = new_sid("CA")
    await start_call(daemon, call_sid)
    if how == "call status callback":
        fields = call_fields(call_sid, CallStatus="completed", CallDuration="4")
        response = await post(daemon, "/twilio/voice/status", fields)
    else:
        fields = recording_fields(call_sid, new_sid("RE")) | {"RecordingStatus": "absent"}
        del fields["RecordingUrl"]
        response = await post(daemon, "/twilio/voice/recording", fields)
    assert response.status_code == 200, response.text

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert len(forwarded) == 1
    case = forwarded[0]
    assert (case["channel"], case["source_id"]) == ("voice", call_sid)
    assert case["flags"]["callback_requested"] is True
    assert case["subject"] == "Callback requested by +442079460958"
    assert case["attachments"] == []
    assert case["sender"]["address"] == "+442079460958"


@pytest.mark.slow
async def test_a_pending_call_survives_a_crash(
    make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    first = make_process(extra=twilio_settings(transcript_wait_s=60)).start(env=TOKEN_ENV)
    await first.wait_ready()
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(first, call_sid)
    await record(first, call_sid, recording_sid)
    first.kill()  # SIGKILL: only what was on disk when Twilio got its 200 remains

    second = make_process(extra=twilio_settings(transcript_wait_s=60)).start(env=TOKEN_ENV)
    await second.wait_ready()
    await transcribe(second, call_sid, recording_sid)

    forwarded = bodies(await collect(amqp, second.names.default, expected=1))
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, TRANSCRIPT)
    assert "pending calls resumed" in second.log_text()


async def test_bad_voice_callbacks_get_http_errors(daemon: DaemonBase) -> None:
    call_sid = new_sid("CA")
    checks = [
        (await post(daemon, "/twilio/voice/recording", {"CallSid": call_sid}), 422),
        (await post(daemon, "/twilio/voice/recording", {"CallSid": "CA../../etc"}), 422),
        (
            await post(
                daemon,
                "/twilio/voice/recording",
                recording_fields(call_sid, new_sid("RE")) | {"RecordingDuration": "long"},
            ),
            422,
        ),
        (
            await post(
                daemon,
                "/twilio/voice/recording",
                recording_fields(call_sid, new_sid("RE")) | {"RecordingUrl": "file:///etc/passwd"},
            ),
            422,
        ),
        (await post(daemon, "/twilio/voice/transcription", {"CallSid": call_sid}), 422),
        (await post(daemon, "/twilio/voice/status", {"CallSid": call_sid}), 422),
        (await post(daemon, "/twilio/voice", call_fields(call_sid), signed=False), 403),
    ]
    for response, status in checks:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert checks[0][0].json()["errors"] == [{"field": "RecordingUrl", "message": "missing"}]
    assert daemon.alive()


async def test_a_withheld_caller_id_is_kept_in_quarantine(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    call_sid = new_sid("CA")
    response = await post(daemon, "/twilio/voice", call_fields(call_sid, caller="anonymous"))
    assert response.status_code == 200, response.text
    ended = call_fields(call_sid, caller="anonymous", CallStatus="completed")
    assert (await post(daemon, "/twilio/voice/status", ended)).status_code == 200

    await daemon.wait_counted(1, "ingest_quarantined_total", channel="voice")
    assert await daemon.counted("ingest_case_opens_total") == 0
    kept = [
        json.loads(path.read_text())
        for path in (daemon.workdir / "var" / "quarantine").glob("*.json")
    ]
    assert [(entry["channel"], entry["source_id"]) for entry in kept] == [("voice", call_sid)]
    assert "not a phone number" in kept[0]["reason"]
    # Logged once the call is marked done, just after the quarantine counted it.
    await until(lambda: "call quarantined" in daemon.log_text(), "the call's log line")


async def test_a_callback_that_cannot_be_kept_gets_503_and_its_retry_counts(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    book = daemon.workdir / "var" / "twilio-calls"
    shutil.rmtree(book)
    book.write_bytes(b"")  # a file where the folder should be: nothing can be written
    call_sid = new_sid("CA")
    refused = await post(daemon, "/twilio/voice", call_fields(call_sid))
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["content-type"] == "application/problem+json"

    book.unlink()
    book.mkdir()
    await start_call(daemon, call_sid)  # Twilio's retry
    ended = call_fields(call_sid, CallStatus="completed")
    assert (await post(daemon, "/twilio/voice/status", ended)).status_code == 200
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert [(case["source_id"], case["flags"]["callback_requested"]) for case in forwarded] == [
        (call_sid, True)
    ]


@pytest.mark.slow
async def test_a_call_that_cannot_be_made_safe_is_opened_later(
    make_daemon: Callable[..., LocalDaemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(proxy.amqp_url, extra=twilio_settings()).start(env=TOKEN_ENV)
    await daemon.wait_ready()
    call_sid, recording_sid = new_sid("CA"), new_sid("RE")
    await start_call(daemon, call_sid)
    await record(daemon, call_sid, recording_sid)
    spool = daemon.workdir / "var" / "spool"
    await proxy.cut()  # no broker, and no spool: the case-open cannot be made safe
    shutil.rmtree(spool)
    spool.write_bytes(b"")
    await transcribe(daemon, call_sid, recording_sid)  # still answered: the book keeps it

    await until(lambda: "call not opened yet" in daemon.log_text(), "the call kept for later")
    spool.unlink()
    (spool / "incoming").mkdir(parents=True)
    await proxy.start()

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1, timeout_s=40))
    assert len(forwarded) == 1
    assert_voicemail(forwarded[0], call_sid, recording_sid, TRANSCRIPT)
