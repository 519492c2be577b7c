"""Voice webhooks: greet and record a voicemail, then collect what Twilio reports about it.

`POST /twilio/voice` answers TwiML that greets, records (transcribed) and hangs up. The
`<Record>` action and its recording status callback both post to `/twilio/voice/recording`,
the transcription to `/twilio/voice/transcription`, and the number's call status callback
(optional, set on the number in Twilio's console) to `/twilio/voice/status`. Each request
only updates the call in the durable `CallBook` and is answered once that is on disk; the
`CallOpener` turns a complete (or long enough waited for) call into ONE case-open.

A call with no recording is recognised by the recording's absence, not by any one callback:
Twilio skips the `<Record>` action when nothing was said, and the status callback is optional
(it lives on the number, not in TwiML). So the call waits a bounded time (`calls.due_at`) and
then opens as a callback request; the status callback, a "completed" call, or a recording
status of "absent" only shorten that wait.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response
from twilio.twiml.voice_response import VoiceResponse

from channels.problems import Problem
from channels.settings import TwilioChannelSettings
from channels.twilio.calls import CallBook, PendingCall
from channels.twilio.webhook import (
    RETRY_AFTER_S,
    Form,
    Gate,
    invalid,
    required,
    sid,
    twiml,
    webhook_openapi,
)

log = structlog.get_logger("channels.twilio")

RECORDING_PATH = "/twilio/voice/recording"
TRANSCRIPTION_PATH = "/twilio/voice/transcription"
ENDED = {"completed", "busy", "failed", "no-answer", "canceled"}
"""Final call statuses: the call is over."""
NO_RECORDING = {"absent", "failed"}
"""Recording statuses that mean there will be no recording."""
RETRY = {"Retry-After": RETRY_AFTER_S}
MAX_NUMBER = 128
MAX_URL = 2048


def voice_router(settings: TwilioChannelSettings, gate: Gate, book: CallBook) -> APIRouter:
    """The voice webhooks, bound to their settings and the book of pending calls."""
    router = APIRouter(prefix="/twilio/voice", tags=["twilio"])

    @router.post(
        "",
        **webhook_openapi(
            "Twilio voice webhook: greet, record a voicemail; TwiML.", "CallSid", "From", "To"
        ),
    )
    async def call(request: Request) -> Response:
        form = await gate.form(request)
        call_sid = sid(form, "CallSid")
        caller, called = required(form, "From", "To")
        if max(len(caller), len(called)) > MAX_NUMBER:
            raise invalid(["From", "To"], f"at most {MAX_NUMBER} characters")
        await _keep(book, call_sid, lambda call: _caller(call, caller, called))
        return twiml(_greeting(settings))

    @router.post(
        "/recording",
        **webhook_openapi("Record action and recording status callback.", "CallSid"),
    )
    async def recording(request: Request) -> Response:
        form = await gate.form(request)
        call_sid = sid(form, "CallSid")
        status = form.get("RecordingStatus", "completed").strip().lower()
        if status in NO_RECORDING:
            await _keep(book, call_sid, _without_recording)
        else:
            url = _recording_url(form, needed=True)
            duration = _duration(form)
            recording_sid = form.get("RecordingSid") or None
            await _keep(
                book,
                call_sid,
                lambda call: _recorded(_known(call, form), url, recording_sid, duration),
            )
        return twiml(_hang_up())

    @router.post(
        "/transcription",
        **webhook_openapi("Transcription callback.", "CallSid", "TranscriptionStatus"),
    )
    async def transcription(request: Request) -> Response:
        form = await gate.form(request)
        call_sid = sid(form, "CallSid")
        [status] = required(form, "TranscriptionStatus")
        text = form.get("TranscriptionText", "") if status.lower() == "completed" else ""
        url = _recording_url(form, needed=False)
        await _keep(book, call_sid, lambda call: _transcribed(_known(call, form), text, url))
        return twiml(VoiceResponse())

    @router.post(
        "/status",
        **webhook_openapi("Call status callback (set on the number).", "CallSid", "CallStatus"),
    )
    async def status(request: Request) -> Response:
        form = await gate.form(request)
        call_sid = sid(form, "CallSid")
        [call_status] = required(form, "CallStatus")
        if call_status.lower() in ENDED:
            await _keep(book, call_sid, lambda call: _ended(_known(call, form)))
        return twiml(VoiceResponse())

    return router


async def _keep(book: CallBook, call_sid: str, apply: Callable[[PendingCall], PendingCall]) -> None:
    """Write the change durably before Twilio gets its answer; 503 (retry) if it cannot be."""
    try:
        await book.change(call_sid, apply)
    except OSError as error:
        log.error("pending call not written", call_sid=call_sid, error=repr(error))
        raise Problem(
            503, "Service Unavailable", "the call cannot be stored right now", headers=RETRY
        ) from None


def _greeting(settings: TwilioChannelSettings) -> VoiceResponse:
    response = VoiceResponse()
    response.say(settings.voice_greeting, language=settings.voice_language)
    response.record(
        action=settings.url(RECORDING_PATH),
        method="POST",
        max_length=settings.voice_max_recording_s,
        play_beep=True,
        recording_status_callback=settings.url(RECORDING_PATH),
        recording_status_callback_method="POST",
        transcribe=settings.transcribe,
        transcribe_callback=settings.url(TRANSCRIPTION_PATH) if settings.transcribe else None,
    )
    # Reached only when nothing was recorded (Twilio skips the action then).
    response.hangup()
    return response


def _hang_up() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response


def _now() -> datetime:
    return datetime.now(UTC)


def _caller(call: PendingCall, caller: str, called: str) -> PendingCall:
    return call.model_copy(update={"caller": caller, "called": called})


def _known(call: PendingCall, form: Form) -> PendingCall:
    """Fill in the numbers from a callback that carries them, if the call did not."""
    update = {}
    caller, called = form.get("From", "").strip(), form.get("To", "").strip()
    if not call.caller and 0 < len(caller) <= MAX_NUMBER:
        update["caller"] = caller
    if not call.called and 0 < len(called) <= MAX_NUMBER:
        update["called"] = called
    return call.model_copy(update=update) if update else call


def _recorded(
    call: PendingCall, url: str, recording_sid: str | None, duration: float | None
) -> PendingCall:
    if call.recording_at is not None and call.duration_s is not None:
        return call  # the action and the status callback both report the same recording
    return call.model_copy(
        update={
            "recording_url": url,
            "recording_sid": recording_sid or call.recording_sid,
            "duration_s": duration if duration is not None else call.duration_s,
            "recording_at": call.recording_at or _now(),
        }
    )


def _transcribed(call: PendingCall, text: str, url: str | None) -> PendingCall:
    if call.transcript_at is not None:
        return call
    return call.model_copy(
        update={
            "transcript": text or None,
            "transcript_at": _now(),
            "recording_url": call.recording_url or url,
        }
    )


def _ended(call: PendingCall) -> PendingCall:
    return call if call.ended_at else call.model_copy(update={"ended_at": _now()})


def _without_recording(call: PendingCall) -> PendingCall:
    return call.model_copy(update={"recording_absent": True, "ended_at": call.ended_at or _now()})


def _recording_url(form: Form, *, needed: bool) -> str | None:
    if not needed and not form.get("RecordingUrl", "").strip():
        return None
    [url] = required(form, "RecordingUrl")
    if len(url) > MAX_URL or not url.startswith(("https://", "http://")):
        raise invalid(["RecordingUrl"], f"an http(s) URL of at most {MAX_URL} characters")
    return url


def _duration(form: Form) -> float | None:
    raw = form.get("RecordingDuration", "").strip()
    if not raw:
        return None
    try:
        duration = float(raw)
    except ValueError:
        raise invalid(["RecordingDuration"], "a number of seconds") from None
    if not 0 <= duration < 86_400:
        raise invalid(["RecordingDuration"], "a number of seconds")
    return duration
