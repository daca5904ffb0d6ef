"""This node's messaging runtime: the receipt writer, the receipt progress notifier, the
writers of channel messages and of replies, the reminder scheduler and the presence tracker.

Created once at start-up (``messaging.feature``) and reached through ``messaging_runtime``;
nothing else keeps messaging state on the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.context import Context

if TYPE_CHECKING:
    from messaging.channel_writer import ChannelWriter
    from messaging.presence import PresenceTracker
    from messaging.receipts import ReceiptsNotifier, ReceiptWriter
    from messaging.reminders import ReminderScheduler
    from messaging.replies import ReplyWriter


@dataclass
class MessagingRuntime:
    notifier: ReceiptsNotifier
    writer: ReceiptWriter
    reminders: ReminderScheduler
    presence: PresenceTracker
    channels: ChannelWriter
    replies: ReplyWriter


def install(ctx: Context, runtime: MessagingRuntime) -> None:
    """Start-up: keep the node's runtime on the context."""
    ctx.runtimes.put(runtime)


def messaging_runtime(ctx: Context) -> MessagingRuntime | None:
    """The node's messaging runtime; None on a context without the messaging feature."""
    return ctx.runtimes.get(MessagingRuntime)


def started_runtime(ctx: Context) -> MessagingRuntime:
    """The node's messaging runtime, for code that runs only once the feature started."""
    runtime = messaging_runtime(ctx)
    if runtime is None:
        raise RuntimeError("the messaging feature is not started")
    return runtime
