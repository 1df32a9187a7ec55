"""Call recordings on real files: exact stereo samples, a header valid mid-call, no blocking."""

from __future__ import annotations

import struct
import threading
import time
import wave
from collections.abc import Callable, Iterator
from io import FileIO
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from structlog.testing import capture_logs

from telephony_agent.records.recording import CallRecording, RecordingSink

Status = tuple[str, str | None, str]  # status, reason, name of the thread that reported it


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


def tone(freq: float, amplitude: float, rate: int, tick: int) -> NDArray[np.int16]:
    n = rate // 50
    t = (np.arange(n) + tick * n) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def read_stereo(path: Path) -> tuple[NDArray[np.int16], int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        frames = wav.readframes(wav.getnframes())
        assert len(frames) == wav.getnframes() * 4
        return np.frombuffer(frames, dtype="<i2").reshape(-1, 2), wav.getframerate()


def header_data_size(path: Path) -> int:
    if not path.exists():
        return -1
    with path.open("rb") as file:
        head = file.read(44)
    return int(struct.unpack_from("<I", head, 40)[0]) if len(head) == 44 else -1


def recorder(statuses: list[Status]) -> Callable[[str, str | None], None]:
    def on_status(status: str, reason: str | None) -> None:
        statuses.append((status, reason, threading.current_thread().name))

    return on_status


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    sink = RecordingSink()
    sink.start()
    yield sink
    sink.close_sync()


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_round_trip_is_sample_exact(tmp_path: Path, sink: RecordingSink, rate: int) -> None:
    statuses: list[Status] = []
    path = tmp_path / "calls" / "day" / "call.wav"  # parent folders are created
    rec = CallRecording(sink, path, rate, on_status=recorder(statuses))
    n = rate // 50
    left = np.zeros((200, n), dtype=np.int16)
    right = np.zeros((200, n), dtype=np.int16)
    for tick in range(200):
        caller = None if 50 <= tick < 60 or tick % 17 == 0 else tone(440, 8000, rate, tick)
        agent = None if 100 <= tick < 130 or tick == 199 else tone(1000, 5000, rate, tick)
        if caller is not None:
            left[tick] = caller
        if agent is not None:
            right[tick] = agent
        rec.add(caller, agent)
    assert rec.status == "recording"
    rec.close()
    rec.close()  # idempotent
    sink.close_sync()

    samples, got_rate = read_stereo(path)
    assert got_rate == rate
    assert samples.shape == (200 * n, 2)
    np.testing.assert_array_equal(samples[:, 0], left.reshape(-1))
    np.testing.assert_array_equal(samples[:, 1], right.reshape(-1))
    assert (rec.frames, rec.frames_written, rec.bad_frames) == (200 * n, 200 * n, 0)
    assert rec.status == "complete" and rec.reason is None
    assert statuses == [("complete", None, "recording-writer")]
    stats = sink.stats
    assert (stats.chunks_written, stats.bytes_written) == (8, 200 * n * 4)
    assert (stats.dropped_chunks, stats.failures, stats.queued_chunks) == (0, 0, 0)


def test_tail_and_malformed_frames(tmp_path: Path, sink: RecordingSink) -> None:
    path = tmp_path / "odd.wav"
    rec = CallRecording(sink, path, 8000, chunk_ticks=5)
    ramp = np.arange(160, dtype=np.int16)
    long_frame = np.arange(200, dtype=np.int16)  # cut to 160
    short_frame = np.arange(100, dtype=np.int16) + 1  # padded with silence
    rec.add(long_frame, short_frame)
    rec.add(ramp.reshape(8, 20), ramp)  # the right number of samples in the wrong shape
    rec.add(["not", "audio"], np.full(160, np.nan))  # type: ignore[arg-type]
    for _ in range(4):  # 7 ticks in all: one chunk of 5 and a tail of 2
        rec.add(ramp, -ramp)
    rec.close()
    sink.close_sync()

    samples, _ = read_stereo(path)
    assert samples.shape == (7 * 160, 2)
    np.testing.assert_array_equal(samples[:160, 0], long_frame[:160])
    np.testing.assert_array_equal(samples[:100, 1], short_frame)
    assert not samples[100:160, 1].any()
    np.testing.assert_array_equal(samples[160:320, 0], ramp)
    assert not samples[320:480].any()  # what was not audio became silence
    np.testing.assert_array_equal(samples[480:, 0], np.tile(ramp, 4))
    np.testing.assert_array_equal(samples[480:, 1], np.tile(-ramp, 4))
    assert rec.bad_frames == 5
    assert rec.status == "complete"


def test_header_is_valid_mid_call_and_a_prefix_of_the_final_file(tmp_path: Path) -> None:
    sink = RecordingSink(header_every_s=0.0)  # update the header after every chunk
    sink.start()
    path = tmp_path / "live.wav"
    rec = CallRecording(sink, path, 16000)
    wait_until(lambda: header_data_size(path) == 0)
    assert read_stereo(path)[0].shape == (0, 2)  # playable from the first moment
    for tick in range(110):  # 4 chunks handed over, 10 ticks still in the buffer
        rec.add(tone(300, 9000, 16000, tick), tone(700, 4000, 16000, tick))
    wait_until(lambda: header_data_size(path) == 4 * 25 * 320 * 4)
    middle, rate = read_stereo(path)
    assert rate == 16000 and middle.shape == (4 * 25 * 320, 2)
    for tick in range(110, 150):
        rec.add(tone(300, 9000, 16000, tick), None)
    rec.close()
    sink.close_sync()
    final, _ = read_stereo(path)
    assert final.shape == (150 * 320, 2)
    np.testing.assert_array_equal(final[: len(middle)], middle)


def test_header_is_updated_at_most_every_header_every_s(tmp_path: Path) -> None:
    sink = RecordingSink(header_every_s=3600.0)
    sink.start()
    path = tmp_path / "slow-header.wav"
    rec = CallRecording(sink, path, 8000)
    for tick in range(100):
        rec.add(tone(300, 9000, 8000, tick), None)
    wait_until(lambda: sink.stats.chunks_written == 4)
    assert path.stat().st_size == 44 + 100 * 160 * 4
    assert read_stereo(path)[0].shape == (0, 2)  # valid, and it admits only what it covers
    rec.close()
    sink.close_sync()
    assert read_stereo(path)[0].shape == (100 * 160, 2)


class StalledSink(RecordingSink):
    """A sink whose disk does not answer until `gate` is set."""

    def __init__(self, max_queue_chunks: int) -> None:
        super().__init__(max_queue_chunks=max_queue_chunks)
        self.gate = threading.Event()

    def _write_some(self, file: FileIO, data: memoryview) -> int:
        self.gate.wait(30)
        return super()._write_some(file, data)


def test_add_never_waits_for_a_stalled_disk(tmp_path: Path) -> None:
    sink = StalledSink(max_queue_chunks=8)
    sink.start()
    statuses: list[Status] = []
    path = tmp_path / "stalled.wav"
    rec = CallRecording(sink, path, 48000, on_status=recorder(statuses))
    frames = [tone(500 + tick, 7000, 48000, tick) for tick in range(1000)]
    try:
        with capture_logs() as logs:
            started = time.perf_counter()
            for frame in frames:
                rec.add(frame, frame)
            elapsed = time.perf_counter() - started
    finally:
        sink.gate.set()
    assert elapsed / 1000 < 0.0003, f"{elapsed / 1000 * 1e6:.0f} µs per add"
    # 40 chunks: 8 fit in the queue (the writer is stuck creating the file), 32 dropped.
    assert (sink.stats.dropped_chunks, rec.dropped_chunks) == (32, 32)
    assert rec.status == "partial" and rec.reason == "audio dropped: disk too slow"
    assert [e["event"] for e in logs] == ["recording_chunks_dropped"]  # once per 10 s
    assert logs[0]["dropped"] == 1  # logged at the first drop, the rest counted silently
    rec.close()
    sink.close_sync()

    samples, _ = read_stereo(path)
    kept = 8 * 25
    assert samples.shape == (kept * 960, 2)
    np.testing.assert_array_equal(samples[:, 0], np.concatenate(frames[:kept]))
    assert rec.frames == 1000 * 960 and rec.frames_written == kept * 960
    assert [s[:2] for s in statuses] == [
        ("partial", "audio dropped: disk too slow"),
        ("partial", "16.0 s dropped: disk too slow"),
    ]
    assert {s[2] for s in statuses} == {"recording-writer"}


def test_a_file_that_cannot_be_created_does_not_stop_the_others(
    tmp_path: Path, sink: RecordingSink
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    statuses: list[Status] = []
    bad = CallRecording(sink, tmp_path / "taken" / "call.wav", 8000, on_status=recorder(statuses))
    good = CallRecording(sink, tmp_path / "ok.wav", 8000)
    with capture_logs() as logs:
        for tick in range(60):
            bad.add(tone(300, 9000, 8000, tick), None)
            good.add(tone(300, 9000, 8000, tick), None)
        wait_until(lambda: bad.status == "partial")
        bad.close()
        good.close()
        sink.close_sync()
    assert [e["event"] for e in logs] == ["recording_stopped"]
    reason = "could not create the file: a parent is not a folder"
    assert [s[:2] for s in statuses] == [("partial", reason), ("partial", reason)]
    assert sink.stats.failures == 1
    assert good.status == "complete" and read_stereo(tmp_path / "ok.wav")[0].shape == (9600, 2)


async def test_async_close_finalises_recordings_still_open(tmp_path: Path) -> None:
    sink = RecordingSink()  # never started: close still creates and finalises the file
    path = tmp_path / "open.wav"
    rec = CallRecording(sink, path, 8000)
    for tick in range(30):
        rec.add(tone(300, 9000, 8000, tick), None)
    await sink.close()
    assert rec.status == "partial"
    assert rec.reason == "recorder stopped before the call ended"
    assert read_stereo(path)[0].shape == (25 * 160, 2)  # the tail was never handed over
    rec.add(tone(300, 9000, 8000, 0), None)  # ignored, no error
    rec.close()
    late = CallRecording(sink, tmp_path / "late.wav", 8000)
    assert late.status == "partial" and not (tmp_path / "late.wav").exists()
    with pytest.raises(RuntimeError, match="closed"):
        sink.start()


def test_bad_arguments_are_refused(tmp_path: Path, sink: RecordingSink) -> None:
    with pytest.raises(ValueError, match="multiple of 50"):
        CallRecording(sink, tmp_path / "x.wav", 8001)
    with pytest.raises(ValueError, match="chunk_ticks"):
        CallRecording(sink, tmp_path / "x.wav", 8000, chunk_ticks=0)
    with pytest.raises(ValueError, match="max_queue_chunks"):
        RecordingSink(max_queue_chunks=0)
    with pytest.raises(ValueError, match="header_every_s"):
        RecordingSink(header_every_s=float("nan"))
