"""This node's messaging runtime: the receipt writer, the receipt progress notifier, and the
writers of channel messages and of replies.

Created once at start-up (``messaging.feature``) and reached through ``messaging_runtime``;
nothing else keeps messaging state on the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.context import Context

if TYPE_CHECKING:
    from messaging.channel_writer import ChannelWriter
    from messaging.receipts import ReceiptsNotifier, ReceiptWriter
    from messaging.replies import ReplyWriter

EXTENSION = "messaging"


@dataclass
class MessagingRuntime:
    notifier: ReceiptsNotifier
    writer: ReceiptWriter
    channels: ChannelWriter
    replies: ReplyWriter


def install(ctx: Context, runtime: MessagingRuntime) -> None:
    """Start-up: keep the node's runtime on the context."""
    ctx.extensions[EXTENSION] = runtime


def messaging_runtime(ctx: Context) -> MessagingRuntime | None:
    """The node's messaging runtime; None on a context without the messaging feature."""
    runtime = ctx.extensions.get(EXTENSION)
    assert runtime is None or isinstance(runtime, MessagingRuntime)
    return runtime
