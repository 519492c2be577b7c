"""The contact form's words in each language it speaks, and choosing the language."""

from __future__ import annotations

from collections.abc import Sequence

Texts = dict[str, str]

_ENGLISH: Texts = {
    "language_name": "English",
    "language": "Language",
    "title": "Contact us",
    "intro": "Tell us how we can help. We answer by email. Fields marked * are required.",
    "about_you": "About you",
    "your_message": "Your message",
    "name": "Name",
    "email": "Email address",
    "email_hint": "We send our answer here.",
    "phone": "Phone number (optional)",
    "phone_hint": "With the country code, for example +45 12 34 56 78.",
    "subject": "Subject",
    "message": "Message",
    "files": "Attachments (optional)",
    "files_hint": "Up to {count} files of {size} each. Accepted: {types}.",
    "honeypot": "Leave this field empty",
    "send": "Send message",
    "error": "Error:",
    "errors_title": "Please check the fields below",
    "required": "Please fill this in.",
    "bad_email": "Enter an email address like name@example.com.",
    "bad_phone": "Enter a phone number with its country code, like +45 12 34 56 78.",
    "too_long": "Please keep this under {limit} characters.",
    "too_many_files": "Please attach at most {limit} files.",
    "file_too_large": "“{name}” is larger than {limit}.",
    "file_type": "“{name}” is not an accepted type of file ({types}).",
    "file_not_type": "“{name}” does not look like a {type} file.",
    "files_again": "For your safety, files are not kept when the form is shown again: "
    "please choose them again.",
    "unavailable": "We could not take your message just now, and nothing was sent. "
    "Please try again in a minute; what you typed is still here.",
    "thanks_title": "Thank you, we have your message",
    "thanks_body": "We will answer by email as soon as we can.",
    "reference": "Your reference",
    "reference_hint": "Please quote it if you contact us about this again.",
    "another": "Send another message",
    "suggest_title": "Does one of these answer your question?",
    "suggest_intro": "Before we send your message: these articles answer questions like yours.",
    "answer_label": "If it helped, tell us in one line how (optional)",
    "solved_button": "Yes, that solved it",
    "send_intro": "Not what you need? We will send your message as you wrote it.",
    "send_anyway": "No, send my message",
    "solved_title": "Glad that helped",
    "solved_body": "Your message was not sent, so nobody will contact you about it. "
    "You can always write to us again.",
    "forbidden_title": "This form could not be sent",
    "forbidden_body": "The form had expired or was sent from another website. "
    "Please open the form again and send your message from there.",
    "too_many_title": "Too many messages",
    "too_many_body": "Several messages came from you in a short time. "
    "Please wait about {minutes} minutes and try again.",
    "too_large_title": "Your message is too large",
    "too_large_body": "Together, the message and its files are larger than {limit}. "
    "Please send fewer or smaller files.",
    "bad_form_title": "This form could not be read",
    "bad_form_body": "Please open the form again and send your message from there.",
    "back": "Back to the form",
}

_DANISH: Texts = {
    "language_name": "Dansk",
    "language": "Sprog",
    "title": "Kontakt os",
    "intro": "Fortæl os, hvordan vi kan hjælpe. Vi svarer på e-mail. "
    "Felter markeret med * skal udfyldes.",
    "about_you": "Om dig",
    "your_message": "Din besked",
    "name": "Navn",
    "email": "E-mailadresse",
    "email_hint": "Vi sender vores svar hertil.",
    "phone": "Telefonnummer (valgfrit)",
    "phone_hint": "Med landekode, for eksempel +45 12 34 56 78.",
    "subject": "Emne",
    "message": "Besked",
    "files": "Vedhæftede filer (valgfrit)",
    "files_hint": "Op til {count} filer på hver højst {size}. Tilladt: {types}.",
    "honeypot": "Lad dette felt være tomt",
    "send": "Send besked",
    "error": "Fejl:",
    "errors_title": "Kontrollér venligst felterne nedenfor",
    "required": "Udfyld venligst dette felt.",
    "bad_email": "Skriv en e-mailadresse som navn@eksempel.dk.",
    "bad_phone": "Skriv et telefonnummer med landekode, som +45 12 34 56 78.",
    "too_long": "Skriv venligst under {limit} tegn.",
    "too_many_files": "Vedhæft højst {limit} filer.",
    "file_too_large": "“{name}” er større end {limit}.",
    "file_type": "“{name}” er ikke en tilladt filtype ({types}).",
    "file_not_type": "“{name}” ligner ikke en {type}-fil.",
    "files_again": "Af sikkerhedshensyn gemmes filer ikke, når formularen vises igen: "
    "vælg dem venligst igen.",
    "unavailable": "Vi kunne ikke modtage din besked lige nu, og intet blev sendt. "
    "Prøv igen om et minut; det, du skrev, står her stadig.",
    "thanks_title": "Tak, vi har modtaget din besked",
    "thanks_body": "Vi svarer på e-mail så hurtigt, vi kan.",
    "reference": "Dit referencenummer",
    "reference_hint": "Oplys det venligst, hvis du kontakter os om dette igen.",
    "another": "Send en ny besked",
    "suggest_title": "Besvarer en af disse dit spørgsmål?",
    "suggest_intro": "Før vi sender din besked: disse artikler besvarer spørgsmål som dit.",
    "answer_label": "Hvis det hjalp, så fortæl os med én linje hvordan (valgfrit)",
    "solved_button": "Ja, det løste det",
    "send_intro": "Ikke det, du har brug for? Så sender vi din besked, som du skrev den.",
    "send_anyway": "Nej, send min besked",
    "solved_title": "Godt, at det hjalp",
    "solved_body": "Din besked blev ikke sendt, så ingen kontakter dig om den. "
    "Du kan altid skrive til os igen.",
    "forbidden_title": "Formularen kunne ikke sendes",
    "forbidden_body": "Formularen var udløbet eller blev sendt fra et andet websted. "
    "Åbn formularen igen, og send din besked derfra.",
    "too_many_title": "For mange beskeder",
    "too_many_body": "Vi har modtaget flere beskeder fra dig på kort tid. "
    "Vent venligst omkring {minutes} minutter, og prøv igen.",
    "too_large_title": "Din besked er for stor",
    "too_large_body": "Beskeden og filerne fylder tilsammen mere end {limit}. "
    "Send venligst færre eller mindre filer.",
    "bad_form_title": "Formularen kunne ikke læses",
    "bad_form_body": "Åbn formularen igen, og send din besked derfra.",
    "back": "Tilbage til formularen",
}

_GERMAN: Texts = {
    "language_name": "Deutsch",
    "language": "Sprache",
    "title": "Kontakt",
    "intro": "Sagen Sie uns, wie wir helfen können. Wir antworten per E-Mail. "
    "Mit * markierte Felder sind Pflichtfelder.",
    "about_you": "Über Sie",
    "your_message": "Ihre Nachricht",
    "name": "Name",
    "email": "E-Mail-Adresse",
    "email_hint": "Hierhin senden wir unsere Antwort.",
    "phone": "Telefonnummer (optional)",
    "phone_hint": "Mit Ländervorwahl, zum Beispiel +49 30 1234567.",
    "subject": "Betreff",
    "message": "Nachricht",
    "files": "Anhänge (optional)",
    "files_hint": "Bis zu {count} Dateien mit je höchstens {size}. Erlaubt: {types}.",
    "honeypot": "Dieses Feld bitte leer lassen",
    "send": "Nachricht senden",
    "error": "Fehler:",
    "errors_title": "Bitte prüfen Sie die Felder unten",
    "required": "Bitte füllen Sie dieses Feld aus.",
    "bad_email": "Geben Sie eine E-Mail-Adresse wie name@beispiel.de ein.",
    "bad_phone": "Geben Sie eine Telefonnummer mit Ländervorwahl ein, wie +49 30 1234567.",
    "too_long": "Bitte schreiben Sie weniger als {limit} Zeichen.",
    "too_many_files": "Bitte hängen Sie höchstens {limit} Dateien an.",
    "file_too_large": "„{name}“ ist größer als {limit}.",
    "file_type": "„{name}“ ist kein erlaubter Dateityp ({types}).",
    "file_not_type": "„{name}“ sieht nicht wie eine {type}-Datei aus.",
    "files_again": "Aus Sicherheitsgründen werden Dateien nicht behalten, wenn das Formular "
    "erneut angezeigt wird: Bitte wählen Sie sie noch einmal aus.",
    "unavailable": "Wir konnten Ihre Nachricht gerade nicht annehmen, es wurde nichts gesendet. "
    "Bitte versuchen Sie es in einer Minute erneut; Ihre Eingaben sind noch da.",
    "thanks_title": "Danke, Ihre Nachricht ist angekommen",
    "thanks_body": "Wir antworten so bald wie möglich per E-Mail.",
    "reference": "Ihre Referenz",
    "reference_hint": "Bitte geben Sie sie an, wenn Sie uns dazu erneut schreiben.",
    "another": "Weitere Nachricht senden",
    "suggest_title": "Beantwortet einer dieser Artikel Ihre Frage?",
    "suggest_intro": "Bevor wir Ihre Nachricht senden: Diese Artikel beantworten ähnliche Fragen.",
    "answer_label": "Wenn es geholfen hat, sagen Sie uns in einer Zeile wie (optional)",
    "solved_button": "Ja, das hat geholfen",
    "send_intro": "Nicht das Richtige? Dann senden wir Ihre Nachricht so, wie Sie sie "
    "geschrieben haben.",
    "send_anyway": "Nein, Nachricht senden",
    "solved_title": "Schön, dass es geholfen hat",
    "solved_body": "Ihre Nachricht wurde nicht gesendet; niemand wird Sie dazu kontaktieren. "
    "Sie können uns jederzeit wieder schreiben.",
    "forbidden_title": "Das Formular konnte nicht gesendet werden",
    "forbidden_body": "Das Formular war abgelaufen oder wurde von einer anderen Website "
    "gesendet. Bitte öffnen Sie das Formular erneut und senden Sie Ihre Nachricht von dort.",
    "too_many_title": "Zu viele Nachrichten",
    "too_many_body": "Von Ihnen kamen in kurzer Zeit mehrere Nachrichten. "
    "Bitte warten Sie etwa {minutes} Minuten und versuchen Sie es dann erneut.",
    "too_large_title": "Ihre Nachricht ist zu groß",
    "too_large_body": "Nachricht und Dateien sind zusammen größer als {limit}. "
    "Bitte senden Sie weniger oder kleinere Dateien.",
    "bad_form_title": "Das Formular konnte nicht gelesen werden",
    "bad_form_body": "Bitte öffnen Sie das Formular erneut und senden Sie Ihre Nachricht von dort.",
    "back": "Zurück zum Formular",
}

TEXTS: dict[str, Texts] = {"en": _ENGLISH, "da": _DANISH, "de": _GERMAN}


def choose_language(
    asked: str | None, accept_language: str | None, offered: Sequence[str], default: str
) -> str:
    """`?lang=` when offered, else the best offered match of Accept-Language, else `default`."""
    if asked and asked.lower() in offered:
        return asked.lower()
    for tag in _by_preference(accept_language or ""):
        primary = tag.split("-")[0]
        if primary in offered:
            return primary
    return default


def _by_preference(header: str) -> list[str]:
    """Language tags of an Accept-Language header, most wanted first; q=0 means 'not this'."""
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, position, tag.lower()))
    return [tag for _, _, tag in sorted(weighted)]


def size_text(size: int) -> str:
    """A byte count as people read it: 512 bytes, 200 KB, 10 MB."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    megabytes = size / (1024 * 1024)
    return f"{megabytes:.0f} MB" if megabytes >= 10 else f"{megabytes:.1f} MB".replace(".0 ", " ")
