"""The messaging feature as the core sees it: routes, topic authorizer, delivery handler,
signals, socket ops (read, ack), presence hooks, background tasks (receipt progress,
reminders, presence), start-up (unit channels) and the demo hook."""

from __future__ import annotations

from server.context import Context
from server.demo import DemoCity
from server.features import Feature


async def _start(ctx: Context) -> None:
    from messaging.attachments import index_earlier_attachments
    from messaging.channel_writer import ChannelWriter
    from messaging.channels import ensure_unit_channels
    from messaging.presence import PresenceTracker
    from messaging.receipts import ReceiptsNotifier, ReceiptWriter
    from messaging.receipts_export import city_zone
    from messaging.reminders import ReminderScheduler
    from messaging.replies import ReplyWriter
    from messaging.runtime import MessagingRuntime, install

    city_zone(ctx.settings.city_timezone)  # a misspelt zone stops the server here, not later
    install(
        ctx,
        MessagingRuntime(
            notifier=ReceiptsNotifier(ctx),
            writer=ReceiptWriter(ctx),
            reminders=ReminderScheduler(ctx),
            presence=PresenceTracker(ctx),
            channels=ChannelWriter(ctx),
            replies=ReplyWriter(ctx),
        ),
    )
    await ensure_unit_channels(ctx)
    await index_earlier_attachments(ctx)


async def _demo(ctx: Context, city: DemoCity) -> list[str]:
    from messaging.channels import ensure_unit_channels

    made = await ensure_unit_channels(ctx)
    return [f"channels: {made} unit channels"]


def feature() -> Feature:
    from messaging.attachments import reindex_attachment
    from messaging.channel_routes import routes as channel_routes
    from messaging.channel_writer import run_channel_writer
    from messaging.channels import may_follow_channel
    from messaging.directive_routes import routes as directive_routes
    from messaging.events import EVENT_TYPES
    from messaging.presence import on_connection, presence_signal, run_presence, typing_signal
    from messaging.receipt_ops import SOCKET_OPS
    from messaging.receipts import record_deliveries, run_receipt_writer, run_receipts_notifier
    from messaging.reminders import run_reminders
    from messaging.replies import run_reply_writer
    from messaging.visibility import (
        DIRECTIVE_ISSUED,
        DIRECTIVE_NEWS,
        attachment_readable_sql,
        directive_news_as_seen,
        issued_directive_as_seen,
    )

    return Feature(
        name="messaging",
        routes=[*directive_routes, *channel_routes],
        topic_authorizers={"channel": may_follow_channel},
        received_handlers=[record_deliveries],
        signal_handlers={"typing": typing_signal, "presence": presence_signal},
        socket_ops=list(SOCKET_OPS),
        connection_hooks=[on_connection],
        background=[
            run_receipts_notifier,
            run_receipt_writer,
            run_channel_writer,
            run_reply_writer,
            run_reminders,
            run_presence,
        ],
        startup=[_start],
        demo=[_demo],
        file_access_rules=[attachment_readable_sql],
        file_text_handlers=[reindex_attachment],
        event_views={
            DIRECTIVE_ISSUED: issued_directive_as_seen,
            **dict.fromkeys(DIRECTIVE_NEWS, directive_news_as_seen),
        },
        event_types=list(EVENT_TYPES),
    )
