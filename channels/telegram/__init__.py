"""The Telegram channel (python-telegram-bot): long polling or a webhook, one case per message.

An update counts as handled only once its case-open is safe (see `polling.py` and
`webhook.py` for how each mode keeps that promise); a crash before that means Telegram serves
the update again, and the dispatcher's dedup on channel + source id absorbs any repeat.
"""

from channels.telegram.setup import build, telegram_channel

__all__ = ["build", "telegram_channel"]
