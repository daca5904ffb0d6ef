"""The floor mixer, listener tracks and the recorder, without a network."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
from av import AudioFrame

from meeting.media.floor import (
    FRAME_SAMPLES,
    LISTENER_BUFFER_PACKETS,
    SAMPLE_RATE,
    SOURCE_BUFFER_FRAMES,
    FloorMixer,
    ListenerTrack,
)
from meeting.media.recorder import Recorder


def tone(frequency: float, start: int = 0, layout: str = "stereo") -> AudioFrame:
    t = (np.arange(FRAME_SAMPLES) + start) / SAMPLE_RATE
    mono = (np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16)
    data = np.repeat(mono, 2) if layout == "stereo" else mono
    frame = AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = SAMPLE_RATE
    frame.pts = start
    frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
    return frame


def peak_hz(samples: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(power.argmax())])


def test_only_the_floor_is_mixed() -> None:
    mixer = FloorMixer()
    mixer.set_sources(["a"])
    mixer.feed("a", tone(440))
    mixer.feed("b", tone(1000))  # not on the floor: dropped as it arrives
    assert not mixer.on_floor("b")
    left = mixer.mix().to_ndarray().reshape(-1, 2)[:, 0].astype(np.float64)
    assert abs(peak_hz(left) - 440) < 60

    mixer.set_sources(["a", "b"])
    mixer.feed("a", tone(440, FRAME_SAMPLES))
    mixer.feed("b", tone(1000, FRAME_SAMPLES, layout="mono"))  # resampled to stereo
    both = mixer.mix().to_ndarray().reshape(-1, 2)[:, 0].astype(np.float64)
    power = np.abs(np.fft.rfft(both))
    freqs = np.fft.rfftfreq(both.size, 1 / SAMPLE_RATE)
    for frequency in (440, 1000):
        assert power[np.abs(freqs - frequency) < 60].max() > 0.3 * power.max()

    # Leaving the floor drops what the source had buffered.
    mixer.feed("b", tone(1000))
    mixer.set_sources(["a"])
    assert np.abs(mixer.mix().to_ndarray()).max() == 0


def test_a_source_buffer_and_a_listener_queue_are_bounded() -> None:
    mixer = FloorMixer()
    mixer.set_sources(["a"])
    for index in range(SOURCE_BUFFER_FRAMES + 5):
        mixer.feed("a", tone(440, index * FRAME_SAMPLES))
    heard = sum(
        1 for _ in range(SOURCE_BUFFER_FRAMES + 5) if np.abs(mixer.mix().to_ndarray()).max() > 0
    )
    assert heard == SOURCE_BUFFER_FRAMES

    track = ListenerTrack()
    for index in range(LISTENER_BUFFER_PACKETS + 3):
        track.offer(av.Packet(bytes([index])))
    assert track.dropped == 3
    assert len(track._items) == LISTENER_BUFFER_PACKETS
    oldest = track._items[0]
    assert isinstance(oldest, av.Packet) and bytes(oldest) == bytes([3])  # the oldest went first


def test_encode_once_hands_the_same_packet_to_every_listener() -> None:
    seen: list[av.Packet] = []
    mixer = FloorMixer(on_packet=seen.append)
    listeners = [ListenerTrack() for _ in range(3)]
    for listener in listeners:
        mixer.add_listener(listener)
    for _ in range(5):
        mixer.tick()
    assert mixer.packets == len(seen) > 0
    for listener in listeners:
        assert [id(p) for p in listener._items] == [id(p) for p in seen]

    naive = FloorMixer(mode="naive")
    listener = ListenerTrack()
    naive.add_listener(listener)
    naive.tick()
    assert isinstance(listener._items[0], AudioFrame) and naive.packets == 0


def test_the_recorder_writes_a_playable_ogg(tmp_path: Path) -> None:
    mixer = FloorMixer()
    recorder = Recorder(tmp_path / "m" / "floor.ogg", mixer.extradata)
    mixer._on_packet = recorder.offer
    mixer.set_sources(["a"])
    for index in range(50):
        mixer.feed("a", tone(440, index * FRAME_SAMPLES))
        mixer.tick()
    summary = recorder.close()
    assert summary.packets == mixer.packets and summary.dropped == 0
    assert summary.size_bytes > 0 and 0.9 < summary.duration_secs < 1.1
    with av.open(str(summary.path), "r") as container:
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert abs(peak_hz(samples.astype(np.float64)) - 440) < 5


def goertzel(samples: np.ndarray, frequency: float) -> float:
    """Power of ``samples`` at ``frequency`` (one DFT bin, Goertzel's recurrence)."""
    coefficient = 2 * np.cos(2 * np.pi * frequency / SAMPLE_RATE)
    s1 = s2 = 0.0
    for sample in samples:
        s1, s2 = sample + coefficient * s1 - s2, s1
    return float(s1 * s1 + s2 * s2 - coefficient * s1 * s2)


def decoded(packets: list[av.Packet]) -> np.ndarray:
    """What a listener would play: the packets decoded, left channel."""
    decoder = av.CodecContext.create("libopus", "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate = SAMPLE_RATE
    decoder.layout = "stereo"
    rows = []
    for packet in packets:
        for frame in decoder.decode(packet):
            data = frame.to_ndarray()
            # Planar: one row per channel; packed: channels interleaved in one row.
            rows.append(data[0] if frame.format.is_planar else data.reshape(-1, 2)[:, 0])
    return np.concatenate(rows).astype(np.float64)


HALL_HZ, SPEAKER_HZ = 500.0, 1200.0


def test_mix_minus_nobody_hears_themself() -> None:
    mixer = FloorMixer()
    mixer.set_sources(["hall", "speaker"])
    hall, speaker = ListenerTrack(), ListenerTrack()
    others = [ListenerTrack() for _ in range(4)]
    mixer.add_listener(hall, own="hall")
    mixer.add_listener(speaker, own="speaker")
    for listener in others:
        mixer.add_listener(listener, own=f"listener-{id(listener)}")  # not on the floor
    assert mixer.mixes() == {"hall", "speaker"}

    heard: dict[ListenerTrack, list[av.Packet]] = {t: [] for t in (hall, speaker, *others)}
    ticks = 50
    for index in range(ticks):
        mixer.feed("hall", tone(HALL_HZ, index * FRAME_SAMPLES))
        mixer.feed("speaker", tone(SPEAKER_HZ, index * FRAME_SAMPLES, layout="mono"))
        mixer.tick()
        for track, packets in heard.items():
            packets.extend(p for p in track._items if isinstance(p, av.Packet))
            track._items.clear()
    # Three distinct mixes (the floor, minus the hall, minus the speaker): three encodes a
    # tick, however many listeners share the full floor.
    assert mixer.encodes == 3 * ticks
    # Every plain listener gets the very same packets.
    assert len({tuple(id(p) for p in heard[t]) for t in others}) == 1

    def levels(track: ListenerTrack) -> tuple[float, float]:
        samples = decoded(heard[track])[FRAME_SAMPLES * 5 :]  # past the decoder's warm-up
        return goertzel(samples, HALL_HZ), goertzel(samples, SPEAKER_HZ)

    hall_hz, speaker_hz = levels(hall)
    assert speaker_hz > 1000 * hall_hz  # the desk hears the speaker, not the hall
    hall_hz, speaker_hz = levels(speaker)
    assert hall_hz > 1000 * speaker_hz  # the speaker hears the hall, not themself
    hall_hz, speaker_hz = levels(others[0])
    assert 0.1 < hall_hz / speaker_hz < 10  # everyone else hears both

    # The speaker leaves the floor: its own mix (and encoder) goes, it hears the floor.
    mixer.set_sources(["hall"])
    assert mixer.mixes() == {"hall"}
    mixer.remove_listener(hall)
    assert mixer.mixes() == frozenset()
    before = mixer.encodes
    mixer.tick()
    assert mixer.encodes == before + 1


def test_naive_mode_offers_each_listener_its_mix_minus() -> None:
    mixer = FloorMixer(mode="naive")
    mixer.set_sources(["hall"])
    hall, other = ListenerTrack(), ListenerTrack()
    mixer.add_listener(hall, own="hall")
    mixer.add_listener(other)
    mixer.feed("hall", tone(HALL_HZ))
    mixer.tick()
    heard_by_hall, heard_by_other = hall._items[0], other._items[0]
    assert isinstance(heard_by_hall, AudioFrame) and isinstance(heard_by_other, AudioFrame)
    assert np.abs(heard_by_hall.to_ndarray()).max() == 0
    assert np.abs(heard_by_other.to_ndarray()).max() > 0
