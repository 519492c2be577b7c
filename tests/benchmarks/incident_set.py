"""Writes the generated incident set (tests/data/incident-set.jsonl), deterministically.

A day of ordinary traffic (2,000 messages from about 1,400 customers, in English, Danish,
Chinese and Japanese, on 24 everyday topics with varied wording and details) and three
storms of 30 customers each within about 40 minutes, paraphrased: A in English (the app's
login fails), B in English and Danish (the internet is down in one town), C in Chinese and
English (the TV service shows one error). Each line is one message: id, received_at,
sender, subject, text, language, and `storm` (A, B, C, or null for ordinary traffic).

    .venv/bin/python -m tests.benchmarks.incident_set      # rewrite the file
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "incident-set.jsonl"
DAY = datetime(2026, 11, 24, tzinfo=UTC)
SEED = 16

NAMES = ["Ann", "Bo", "Carla", "Dev", "Emil", "Freja", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea"]
TOWNS = ["Odense", "Vejle", "Kolding", "Esbjerg", "Roskilde", "Horsens", "Randers", "Viborg"]

# Ordinary topics: (language, subjects, sentences); a message takes a subject and 2-4
# sentences, with details filled in, so that two messages on one topic still differ.
TOPICS: list[tuple[str, list[str], list[str]]] = [
    (
        "en",
        ["Password reset", "Can't sign in", "Locked out"],
        [
            "I forgot the password for my account {email}.",
            "The reset link expired before I used it.",
            "It says my account is locked after I tried {n} times.",
            "Could you unlock it please?",
            "I changed phones and lost my authenticator.",
            "My username is {name}{n}.",
        ],
    ),
    (
        "en",
        ["Invoice question", "Bill too high", "Charges on invoice {n}"],
        [
            "My invoice {n} is {amount} kroner higher than last month.",
            "What is the one-off charge on it?",
            "I did not order the extra TV channels listed.",
            "Please explain the discount line.",
            "My customer number is {n}.",
            "I pay by card every month.",
        ],
    ),
    (
        "en",
        ["Refund", "Charged twice", "Money back"],
        [
            "I was charged twice for order {n}.",
            "Please refund {amount} kroner to my card.",
            "The second payment was on the {day}th.",
            "I cancelled before the start date.",
            "When will I see the money?",
            "Bank reference {n}.",
        ],
    ),
    (
        "en",
        ["Moving", "New address", "Relocation on {day} December"],
        [
            "We are moving to {town} on the {day}th.",
            "Can I take my plan to the new address?",
            "Do I need a technician at the new flat?",
            "The new address is {street} {n}.",
            "Please stop the service at the old address.",
            "Is there a fee for moving?",
        ],
    ),
    (
        "en",
        ["Upgrade", "Faster plan", "Price of Fiber 1000"],
        [
            "I want to upgrade to Fiber 1000.",
            "What does the faster plan cost per month?",
            "We work from home and need more upload speed.",
            "Is there a campaign price now?",
            "Can I upgrade without a new router?",
            "We have {n} people streaming at night.",
        ],
    ),
    (
        "en",
        ["Slow Wi-Fi", "Wireless keeps dropping", "Bad signal upstairs"],
        [
            "The Wi-Fi is slow in the bedroom upstairs.",
            "Speed test shows {n} Mbit over wireless.",
            "With a cable it is fine.",
            "Should I buy a mesh extender?",
            "The signal drops every evening around {day} o'clock.",
            "The router is in the cellar.",
        ],
    ),
    (
        "en",
        ["Email on phone", "Mail settings", "Can't send mail"],
        [
            "How do I set up my Example mailbox on my iPhone?",
            "Sending fails with an SMTP error.",
            "Which port should I use for IMAP?",
            "Android says the certificate is wrong.",
            "My address is {email}.",
            "Receiving works but sending does not.",
        ],
    ),
    (
        "en",
        ["TV remote", "Remote control broken", "New remote"],
        [
            "The remote for the TV box stopped working.",
            "I changed the batteries already.",
            "Can you send a new remote to {street} {n}?",
            "The light on the box does not blink.",
            "The dog chewed it.",
            "Is there an app I can use instead?",
        ],
    ),
    (
        "en",
        ["Order {n}", "Where is my router", "Delivery"],
        [
            "I ordered a new router {day} days ago.",
            "The tracking number {n} shows nothing.",
            "Can it be delivered to a parcel shop in {town}?",
            "Nobody was home when it came.",
            "Please send it again.",
            "My order number is {n}.",
        ],
    ),
    (
        "en",
        ["Cancel", "Cancel subscription", "Terminate contract"],
        [
            "I want to cancel my subscription from next month.",
            "How do I return the router?",
            "Is there a binding period on my plan?",
            "We are moving abroad to {town}.",
            "Please confirm the last invoice date.",
            "Customer number {n}.",
        ],
    ),
    (
        "en",
        ["Feedback", "Thank you", "Great service"],
        [
            "Your technician {name} was very helpful today.",
            "The installation went quickly.",
            "Just wanted to say thanks.",
            "The new router is much better than the old one.",
            "Keep up the good work.",
            "Five stars from {town}.",
        ],
    ),
    (
        "en",
        ["Business quote", "Offer for {n} offices", "Fiber for our company"],
        [
            "We are a [company|firm|school|practice] with {n} [employees|people|staff] in {town}.",
            "Please send [a quote|an offer|prices] for "
            "[business fiber|a company line|our office connection].",
            "We need [a fixed IP address|static IPs|a VPN to the head office].",
            "[Do you offer|Is there|Can we get] "
            "[a service level agreement|4 hour repair|priority support]?",
            "Our contract with another provider ends in {day} weeks.",
            "Contact me at {email}.",
        ],
    ),
    (
        "da",
        ["Faktura", "Spørgsmål til regning", "Betaling"],
        [
            "Min faktura {n} er for høj.",
            "Jeg har betalt via Betalingsservice.",
            "Hvorfor er der et gebyr på {amount} kr?",
            "Kan jeg få fakturaen på e-mail?",
            "Mit kundenummer er {n}.",
            "Rykkeren kom selvom jeg har betalt.",
        ],
    ),
    (
        "da",
        ["Flytning", "Ny adresse", "Vi flytter"],
        [
            "Vi flytter til {town} [den {day}. december|om en måned|i næste uge].",
            "Kan vi [tage abonnementet med|beholde vores aftale|flytte internettet]?",
            "[Skal der komme|Kommer der|Behøver vi] en tekniker?",
            "Den nye adresse er {street} {n}.",
            "Hvornår [virker nettet|er der forbindelse|kan vi komme på] på den nye adresse?",
            "Tak for hjælpen.",
        ],
    ),
    (
        "da",
        ["Opsigelse", "Opsige abonnement", "Afmelding"],
        [
            "Jeg [vil gerne|ønsker at|skal] opsige [mit abonnement|min aftale|mit internet].",
            "Hvordan [sender|returnerer|afleverer] jeg [routeren|boksen|udstyret]?",
            "Hvornår er [sidste betalingsdag|sidste faktura|opsigelsen gældende]?",
            "Vi har [fundet en anden løsning|fået fiber fra kommunen|flyttet sammen].",
            "Mit kundenummer er {n}.",
            "Bekræft venligst på {email}.",
        ],
    ),
    (
        "da",
        ["TV-pakke", "Flere kanaler", "Skift pakke"],
        [
            "Jeg [vil gerne have|ønsker|overvejer] den [store|mellemste|fulde] TV-pakke.",
            "Hvad koster [sportskanalerne|filmkanalerne|børnekanalerne] [om måneden|ekstra]?",
            "[Kan|Må] jeg skifte pakke [midt i måneden|med det samme|fra den {day}.]?",
            "Vi [mangler|kan ikke se|savner] [DR2|TV2 Charlie|Kanal 5|TV3 Sport] på boksen.",
            "[Fjernbetjeningen|Boksen|Appen] [virker ikke|driller|er gået i stykker].",
            "Mit kundenummer er {n}.",
        ],
    ),
    (
        "da",
        ["Langsomt internet", "Wi-Fi driller", "Dårlig forbindelse"],
        [
            "Internettet er langsomt om aftenen.",
            "Hastighedstesten viser {n} Mbit.",
            "Routeren står i stuen.",
            "Skal jeg genstarte den?",
            "Det trådløse net falder ud på første sal.",
            "Hilsen {name}.",
        ],
    ),
    (
        "zh",
        ["发票", "账单问题", "付款", "[这个月|上个月]的账单"],
        [
            "[我的|这张|{day}号的]发票金额[不对|有问题|好像错了]。",
            "[这个月|上个月]多[收|扣]了{amount}元。",
            "请问[怎么|在哪里]下载[电子发票|发票]？",
            "我的客户编号是{n}。",
            "我已经用[信用卡|支付宝|银行卡]付[款|过钱]了。",
            "[请帮我|麻烦]查一下。",
            "发票抬头要写公司名称。",
            "为什么[有|多了]一笔服务费？",
        ],
    ),
    (
        "zh",
        ["密码", "无法登录", "账户被锁", "登录问题"],
        [
            "[我忘记了|想不起]密码。",
            "重置密码的[邮件|短信]没有收到。",
            "账户被锁[定了|住了][怎么办|，请帮忙]？",
            "我的邮箱是{email}。",
            "[请尽快|麻烦]帮我处理。",
            "手机换了，验证码收不到。",
            "[昨天|今天]输错了{day}次密码。",
        ],
    ),
    (
        "zh",
        ["搬家", "新地址", "迁移服务", "地址变更"],
        [
            "我们[下个月|{day}号]搬到{town}。",
            "[网络|宽带]可以一起[搬|迁]过去吗？",
            "需要[技术人员|师傅]上门吗？",
            "新地址是{street} {n}号。",
            "旧地址的服务请[停止|取消]。",
            "搬家[要|需要]收费吗？",
        ],
    ),
    (
        "ja",
        ["請求書について", "料金の確認", "支払い", "[今月|先月]の請求"],
        [
            "[今月|先月]の請求書の金額が[違います|おかしいです]。",
            "{amount}円[多く|余分に]請求されて[います|いるようです]。",
            "お客様番号は{n}です。",
            "[クレジットカード|口座振替|コンビニ]で支払いました。",
            "請求書を[メール|郵送]で送ってください。",
            "手数料の内訳を教えてください。",
        ],
    ),
    (
        "ja",
        ["パスワード", "ログインできない", "アカウント", "ログインについて"],
        [
            "パスワードを[忘れました|忘れてしまいました]。",
            "再設定の[メール|SMS]が届きません。",
            "アカウントが[ロックされました|使えなくなりました]。",
            "メールアドレスは{email}です。",
            "[早めに|至急]対応をお願いします。",
            "[スマホ|携帯]を[変えました|機種変更しました]。",
        ],
    ),
    (
        "ja",
        ["引っ越し", "住所変更", "移転", "転居の手続き"],
        [
            "[来月|{day}日に]{town}に引っ越します。",
            "[インターネット|光回線]はそのまま使えますか？",
            "[工事|立ち会い]は必要ですか？",
            "新しい住所は{street} {n}です。",
            "旧住所の[解約|停止]をお願いします。",
            "費用はかかりますか？",
        ],
    ),
    (
        "ja",
        ["テレビ", "チャンネル追加", "リモコン", "番組について"],
        [
            "[スポーツ|映画|子供向けの]チャンネルを追加したいです。",
            "リモコンが[壊れました|反応しません]。",
            "[料金|月額]はいくらですか？",
            "お客様番号は{n}です。",
            "[録画|再生]がうまくできません。",
            "[ご確認ください|教えてください]。",
        ],
    ),
]

STORMS: dict[str, list[tuple[str, list[str], list[str]]]] = {
    "A": [
        (
            "en",
            [
                "App login fails",
                "Can't log in to the app",
                "Login error in My Example app",
                "app won't let me log in",
                "Login broken",
            ],
            [
                "The My Example app says login failed with error 403 since this morning.",
                "I cannot log in to the My Example app, error 403.",
                "Login in the app fails every time (error 403), my password is correct.",
                "Error 403 when I log in to the app on my phone.",
                "The app keeps rejecting my login with error 403.",
                "Since about {clock} the My Example app gives error 403 at login.",
                "My Example app login is broken: 403.",
            ],
        ),
    ],
    "B": [
        (
            "en",
            [
                "Internet down in Aarhus",
                "No internet",
                "FiberBox E-1043",
                "Outage Aarhus?",
                "internet not working",
            ],
            [
                "Our internet is down in Aarhus, the FiberBox shows E-1043.",
                "No internet since {clock} in Aarhus C. FiberBox light red, error E-1043.",
                "FiberBox says E-1043 and there is no internet connection here in Aarhus.",
                "Internet stopped working in Aarhus, router FiberBox error E-1043, "
                "restarted it twice.",
                "Is there an outage in Aarhus? FiberBox E-1043, no internet.",
            ],
        ),
        (
            "da",
            [
                "Internettet er nede i Aarhus",
                "Ingen internet",
                "FiberBox E-1043",
                "Nedbrud Aarhus?",
                "internet virker ikke",
            ],
            [
                "Vores internet er nede i Aarhus, FiberBox viser E-1043.",
                "Ingen internet siden {clock} i Aarhus. FiberBox lyser rødt, fejl E-1043.",
                "FiberBox siger E-1043 og der er ingen internet her i Aarhus.",
                "Internettet virker ikke i Aarhus, FiberBox fejl E-1043, genstartet to gange.",
                "Er der nedbrud i Aarhus? FiberBox E-1043, intet internet.",
            ],
        ),
    ],
    "C": [
        (
            "zh",
            ["Example TV 无法播放", "电视错误 TV-503", "Example TV 出错", "TV-503"],
            [
                "Example TV 无法播放，屏幕显示错误 TV-503。",
                "从{clock}开始 Example TV 一直显示 TV-503。",
                "电视盒子报错 TV-503，Example TV 所有频道都看不了。",
                "Example TV 错误 TV-503，重启了也没用。",
            ],
        ),
        (
            "en",
            ["Example TV not working", "TV-503 error", "Example TV error TV-503", "TV won't play"],
            [
                "Example TV will not play, the screen shows error TV-503.",
                "Since {clock} Example TV keeps showing TV-503.",
                "The TV box says TV-503, no channels on Example TV.",
                "Example TV error TV-503, restarting did not help.",
            ],
        ),
    ],
}
# Everyday context customers add, in their own words; one or two go into most messages.
CONTEXT = {
    "en": [
        "I have been a customer for {n} years.",
        "We live in {town} with two kids.",
        "I work nights so mornings are best to call.",
        "My husband usually handles this.",
        "This is the second time I write about it.",
        "I tried the chat first.",
        "You can reach me on {n} after five.",
        "I am travelling until the {day}th.",
        "Our neighbour {name} had the same question last year.",
        "I read the FAQ already.",
        "I am not very technical, sorry.",
        "It is not urgent.",
        "Please answer by email.",
        "I use a laptop from {n}.",
        "We got the flyer in the mail.",
        "Thanks in advance.",
    ],
    "da": [
        "Jeg har været kunde i {n} år.",
        "Vi bor i {town} med to børn.",
        "Jeg arbejder om natten.",
        "Min mand plejer at ordne det.",
        "Det haster ikke.",
        "Jeg har prøvet chatten først.",
        "Ring gerne på {n} efter klokken fem.",
        "Jeg er ude at rejse til den {day}.",
        "Vores nabo {name} spurgte om det samme.",
        "Jeg har læst jeres FAQ.",
        "Svar gerne på mail.",
        "På forhånd tak.",
    ],
    "zh": [
        "我是老客户了，用了{n}年。",
        "我们住在{town}。",
        "白天我在上班。",
        "不着急。",
        "之前在线客服没有回复。",
        "请发邮件给我。",
        "我的电话是{n}。",
        "提前谢谢。",
    ],
    "ja": [
        "{n}年ほど利用しています。",
        "{town}に住んでいます。",
        "平日の昼間は仕事です。",
        "急ぎではありません。",
        "チャットでも問い合わせました。",
        "メールで返信してください。",
        "電話番号は{n}です。",
        "よろしくお願いいたします。",
    ],
}
DROP = 0.25
"""Each word of a template is left out with this chance: people never write a sentence the
same way twice."""

STORM_START = {"A": (9, 12), "B": (13, 40), "C": (19, 5)}
STORM_MINUTES = 40
ORDINARY = 2000
STORM_CUSTOMERS = 30


CHOICE = re.compile(r"\[([^\]]+)\]")


def fill(rng: random.Random, template: str) -> str:
    """The template with each [a|b] choice made and each {slot} filled."""
    template = CHOICE.sub(lambda found: rng.choice(found.group(1).split("|")), template)
    return template.format(
        n=rng.randint(10, 99999),
        amount=rng.choice([49, 99, 129, 199, 250, 399]),
        day=rng.randint(1, 28),
        town=rng.choice(TOWNS),
        street=rng.choice(["Parkvej", "Skolegade", "Main Street", "Elm Road", "Søndergade"]),
        name=rng.choice(NAMES),
        email=f"{rng.choice(NAMES).lower()}{rng.randint(1, 999)}@mail.example",
        clock=f"{rng.randint(6, 11)}:{rng.choice(['00', '15', '30', '45'])}",
    )


def own_words(rng: random.Random, sentence: str, language: str) -> str:
    """The sentence with some words left out (not in Chinese or Japanese, written without
    spaces): the same thing said a little differently."""
    if language in ("zh", "ja"):
        return sentence
    words = sentence.split()
    kept = [word for word in words if rng.random() >= DROP] or words[:1]
    return " ".join(kept)


def ordinary_message(
    rng: random.Random, at: datetime, sender: str, topic: tuple[str, list[str], list[str]]
) -> dict[str, object]:
    language, subjects, sentences = topic
    chosen = rng.sample(sentences, rng.randint(2, min(3, len(sentences))))
    chosen += rng.sample(CONTEXT[language], rng.randint(0, 2))
    rng.shuffle(chosen)
    joiner = "" if language in ("zh", "ja") else " "
    greeting = {"en": "Hi,", "da": "Hej,", "zh": "您好，", "ja": "こんにちは。"}[language]
    body = joiner.join(own_words(rng, fill(rng, s), language) for s in chosen)
    text = f"{greeting}{joiner}{body}" if rng.random() < 0.5 else body
    return {
        "received_at": at.isoformat(),
        "sender": sender,
        "subject": fill(rng, rng.choice(subjects)),
        "text": text,
        "language": language,
    }


def generate() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    messages: list[dict[str, object]] = []
    customers = [f"c{n}@people.example" for n in range(1400)]
    for _ in range(ORDINARY):
        at = DAY + timedelta(seconds=rng.uniform(0, 86400))
        message = ordinary_message(rng, at, rng.choice(customers), rng.choice(TOPICS))
        messages.append(message | {"storm": None})
    for storm, variants in STORMS.items():
        hour, minute = STORM_START[storm]
        start = DAY + timedelta(hours=hour, minutes=minute)
        for n in range(STORM_CUSTOMERS):
            at = start + timedelta(seconds=rng.uniform(0, STORM_MINUTES * 60))
            language, subjects, sentences = variants[n % len(variants)]
            text = own_words(rng, fill(rng, rng.choice(sentences)), language)
            if rng.random() < 0.4:
                joiner = "" if language in ("zh", "ja") else " "
                text += joiner + fill(rng, rng.choice(CONTEXT[language]))
            messages.append(
                {
                    "received_at": at.isoformat(),
                    "sender": f"{storm.lower()}{n}@storm.example",
                    "subject": fill(rng, rng.choice(subjects)),
                    "text": text,
                    "language": language,
                    "storm": storm,
                }
            )
    messages.sort(key=lambda m: str(m["received_at"]))
    for number, message in enumerate(messages):
        message["id"] = f"m{number:05d}"
    return messages


def main() -> None:
    messages = generate()
    with OUT.open("w", encoding="utf-8") as out:
        for message in messages:
            out.write(json.dumps(message, ensure_ascii=False) + "\n")
    print(f"wrote {len(messages)} messages to {OUT}")


if __name__ == "__main__":
    main()
