"""Electronic voting on a meeting: open and secret polls, rules of majority, receipts."""

from __future__ import annotations

from server.features import Feature


def feature() -> Feature:
    from meeting.minutes import routes as minutes_routes
    from meeting.polls.ballot_box import run_ballot_box
    from meeting.polls.closer import run_closer
    from meeting.polls.log_hardening import keep_ballots_out_of_logs
    from meeting.polls.progress import run_progress
    from meeting.polls.routes import routes
    from meeting.polls.scrubbing import run_scrubber

    return Feature(
        name="polls",
        routes=[*routes, *minutes_routes],
        background=[run_ballot_box, run_closer, run_progress, run_scrubber],
        startup=[keep_ballots_out_of_logs],
    )
