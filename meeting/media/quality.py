"""A remote participant's connection quality, as rules on the media worker's measurements.

Pure functions, no clock and no aiortc: the worker measures (round-trip time from the
tablet's RTCP receiver reports, the fraction of the tablet's packets lost, seconds since
its last media, ICE state) and these rules name the result for the chair.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Connection(enum.StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    # Nothing arrives (ICE disconnected, or no media for the audio-lost time).
    LOST = "lost"


# Speech stays natural below these (ITU-T G.114 puts one-way delay under 150 ms as good);
# Opus conceals a few per cent of loss well, past ~8 % words go missing.
GOOD_RTT_SECS = 0.3
FAIR_RTT_SECS = 0.6
GOOD_LOSS = 0.02
FAIR_LOSS = 0.08
# ICE states in which nothing gets through.
LOST_ICE_STATES = frozenset({"disconnected", "failed", "closed"})


@dataclass(frozen=True)
class PeerStats:
    """What the worker measured of one remote participant."""

    session_id: str
    meeting_id: int
    user_id: int
    ice_state: str
    # Seconds since the participant's last audio (or any media for a listen-only peer).
    idle_secs: float
    sends_audio: bool
    rtt_secs: float | None = None
    loss: float | None = None


def rate(stats: PeerStats, audio_lost_secs: float) -> Connection:
    """The connection quality the chair sees for these measurements."""
    if stats.ice_state in LOST_ICE_STATES:
        return Connection.LOST
    if stats.sends_audio and stats.idle_secs > audio_lost_secs:
        return Connection.LOST
    rtt = stats.rtt_secs or 0.0
    loss = stats.loss or 0.0
    if rtt <= GOOD_RTT_SECS and loss <= GOOD_LOSS:
        return Connection.GOOD
    if rtt <= FAIR_RTT_SECS and loss <= FAIR_LOSS:
        return Connection.FAIR
    return Connection.POOR
