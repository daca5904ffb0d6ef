"""Hybrid attendance: remote participants over WebRTC (aiortc), the floor heard by all.

Layers: ``routes`` (signalling over the meeting API) → ``service`` (permissions, events,
recordings table) → ``engine`` (aiortc in its own thread: peers, rooms) → ``floor`` (mix
and encode the floor once, hand the same packets to every listener) and ``recorder``.
"""
