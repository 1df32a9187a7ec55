"""Recordings when things go wrong: a killed process, a full disk, files repaired at start."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from io import FileIO
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from structlog.testing import capture_logs

import telephony_agent
from telephony_agent.records.recording import CallRecording, RecordingSink
from telephony_agent.records.repair import RepairedFile, repair_recordings, wav_header

REPO_ROOT = Path(telephony_agent.__file__).resolve().parent.parent

# Sample i of a recording written by the child processes below: left and right are two
# different ramps, so every frame of a file can be checked against its position.
SIGNAL = """
import numpy as np

def frame(tick, n, factor):
    i = np.arange(tick * n, (tick + 1) * n, dtype=np.int64)
    return ((i * factor) % 65536 - 32768).astype(np.int16)
"""

CRASH_CHILD = (
    SIGNAL
    + """
import sys, time
from pathlib import Path
from telephony_agent.records.recording import CallRecording, RecordingSink

sink = RecordingSink(header_every_s=1.0)
sink.start()
rec = CallRecording(sink, Path(sys.argv[1]), 16000)
tick = 0
while True:
    rec.add(frame(tick, 320, 1), frame(tick, 320, 7))
    tick += 1
    if tick % 25 == 0:
        time.sleep(0.02)
"""
)

DISK_FULL_CHILD = (
    SIGNAL
    + """
import json, resource, signal, sys
from pathlib import Path
from structlog.testing import capture_logs
from telephony_agent.records.recording import CallRecording, RecordingSink

folder, limit = Path(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
seen = {"big": [], "small": []}
with capture_logs() as logs:
    sink = RecordingSink(header_every_s=0.0)
    sink.start()
    big = CallRecording(sink, folder / "big.wav", 48000,
                        on_status=lambda s, r: seen["big"].append([s, r]))
    small = CallRecording(sink, folder / "small.wav", 8000,
                          on_status=lambda s, r: seen["small"].append([s, r]))
    for tick in range(250):  # 5 s at 48 kHz: 960 kB, far past the limit
        big.add(frame(tick, 960, 1), frame(tick, 960, 7))
        if tick < 100:
            small.add(frame(tick, 160, 1), frame(tick, 160, 7))
        elif tick == 100:
            small.close()
    big.close()
    sink.close_sync()
print(json.dumps({
    "big": [big.status, big.reason, big.frames_written],
    "small": [small.status, small.reason, small.frames_written],
    "seen": seen,
    "failures": sink.stats.failures,
    "events": [e["event"] for e in logs],
}))
"""
)


def expected(frames: int, factor: int) -> NDArray[np.int16]:
    i = np.arange(frames, dtype=np.int64)
    return ((i * factor) % 65536 - 32768).astype(np.int16)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def read_stereo(path: Path) -> tuple[NDArray[np.int16], int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        frames = wav.readframes(wav.getnframes())
        assert len(frames) == wav.getnframes() * 4
        return np.frombuffer(frames, dtype="<i2").reshape(-1, 2), wav.getframerate()


def header_sizes(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:44] if path.exists() else b""
    if len(head) < 44:
        return -1, -1
    return struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]


def write_foreign_files(folder: Path) -> dict[Path, bytes]:
    """Files with a .wav name that are not recordings of ours; repair must not touch them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.wav").write_text("these are notes, not audio\n" * 4)
    (folder / "tiny.WAV").write_bytes(b"RIFF\x00")
    with wave.open(str(folder / "mono.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x02" * 1001)
    tagged = wav_header(8000, 400) + bytes(400) + b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
    (folder / "tagged.wav").write_bytes(tagged)  # tags after the audio: complete, not ours
    return {p: p.read_bytes() for p in sorted(folder.iterdir())}


SKIPPED = {
    "notes.wav": "not a RIFF/WAVE file",
    "tiny.WAV": "shorter than a WAV header",
    "mono.wav": "another format (channels 1, bits 16, format code 1)",
    "tagged.wav": "another WAV layout (chunks after the audio)",
}


def test_a_killed_recorder_leaves_a_file_that_repair_makes_whole(tmp_path: Path) -> None:
    path = tmp_path / "records" / "2024" / "call.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(path)], env=child_env(), cwd=tmp_path
    )
    chunk_bytes = 25 * 320 * 4
    updates: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while True:  # kill it after a few header updates, well between two of them
            assert time.monotonic() < deadline, "the child never got far enough"
            assert child.poll() is None, "the child died by itself"
            data_size = header_sizes(path)[1]
            if data_size > 0:
                updates.add(data_size)
            if len(updates) >= 2 and path.stat().st_size >= 44 + data_size + 4 * chunk_bytes:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        child.kill()
        child.wait()
    size = path.stat().st_size
    assert (size - 44) % 4 == 0
    stale = header_sizes(path)[1]
    assert stale < size - 44  # the header lags: a plain reader would lose the tail
    with path.open("ab") as file:
        file.write(b"\x11\x22\x33")  # and a torn last frame, as a lost power cut would leave
    foreign = write_foreign_files(tmp_path / "records" / "other")

    with capture_logs() as logs:
        results = repair_recordings(tmp_path / "records")
    assert [(e["event"], e["path"]) for e in logs] == [("recording_repaired", str(path))]

    frames = (size - 44) // 4
    assert results[0] == RepairedFile(
        path,
        "repaired",
        f"header said {stale} bytes of audio, the file holds {size - 44}; cut 3 trailing bytes",
        frames=frames,
    )
    assert {r.path.name: (r.action, r.detail) for r in results[1:]} == {
        name: ("skipped", why) for name, why in SKIPPED.items()
    }
    samples, rate = read_stereo(path)
    assert rate == 16000 and len(samples) == frames
    np.testing.assert_array_equal(samples[:, 0], expected(frames, 1))
    np.testing.assert_array_equal(samples[:, 1], expected(frames, 7))
    repaired = path.read_bytes()
    again = repair_recordings(tmp_path / "records")
    assert [r.action for r in again] == ["skipped"] * len(SKIPPED)
    assert path.read_bytes() == repaired
    assert {p: p.read_bytes() for p in foreign} == foreign


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_a_real_file_size_limit_makes_one_recording_partial(tmp_path: Path) -> None:
    limit = 44 + 2 * 96000 + 7957  # two chunks, then a write cut short inside a frame
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(tmp_path), str(limit)],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    frames = (limit - 44) // 4  # the torn frame is cut away
    reason = "file size limit reached after 1.0 s"
    assert report["big"] == ["partial", reason, frames]
    assert report["seen"]["big"] == [["partial", reason], ["partial", reason]]
    assert report["small"] == ["complete", None, 100 * 160]
    assert report["seen"]["small"] == [["complete", None]]
    assert report["failures"] == 1
    assert report["events"].count("recording_stopped") == 1
    big, rate = read_stereo(tmp_path / "big.wav")
    assert rate == 48000 and len(big) == frames
    assert (tmp_path / "big.wav").stat().st_size == 44 + frames * 4
    np.testing.assert_array_equal(big[:, 0], expected(frames, 1))
    np.testing.assert_array_equal(big[:, 1], expected(frames, 7))
    small, rate = read_stereo(tmp_path / "small.wav")
    assert rate == 8000
    np.testing.assert_array_equal(small[:, 1], expected(100 * 160, 7))
    assert repair_recordings(tmp_path) == []  # nothing left for the next start to fix


class FullDiskSink(RecordingSink):
    """A disk that takes `room` bytes in all and then answers ENOSPC (after a short write)."""

    def __init__(self, room: int) -> None:
        super().__init__(header_every_s=0.0)
        self.room = room

    def _write_some(self, file: FileIO, data: memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = super()._write_some(file, data[: self.room])
        self.room -= written
        return written


def test_disk_full_stops_only_that_recording_with_a_valid_file(tmp_path: Path) -> None:
    sink = FullDiskSink(room=44 + 3 * 32000 + 2)  # a header, 3 chunks and half a frame
    sink.start()
    first = CallRecording(sink, tmp_path / "first.wav", 16000)
    ramp = np.arange(320, dtype=np.int16)
    with capture_logs() as logs:
        for _ in range(100):  # 4 chunks of 32000 bytes
            first.add(ramp, -ramp)
        first.close()
        second = CallRecording(sink, tmp_path / "second.wav", 8000)
        second.add(None, None)
        second.close()
        sink.close_sync()
    assert first.status == "partial" and first.reason == "disk full after 1.5 s"
    assert first.frames_written == 3 * 8000
    assert read_stereo(tmp_path / "first.wav")[0].shape == (3 * 8000, 2)
    assert second.status == "partial"
    assert second.reason == "could not create the file: disk full"
    assert not (tmp_path / "second.wav").exists()  # no header would fit: no file at all
    assert [e["event"] for e in logs] == ["recording_stopped", "recording_stopped"]
    assert sink.stats.failures == 2


def test_repair_fixes_a_header_that_claims_too_much(tmp_path: Path) -> None:
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(8000, 100_000) + bytes(range(256)) * 4 + b"\x01")
    with capture_logs() as logs:
        [result] = repair_recordings(tmp_path)
    assert [e["event"] for e in logs] == ["recording_repaired"]
    assert (result.action, result.frames) == ("repaired", 256)
    assert (
        result.detail
        == "header said 100000 bytes of audio, the file holds 1024; cut 1 trailing bytes"
    )
    samples, rate = read_stereo(path)
    assert rate == 8000 and samples.tobytes() == bytes(range(256)) * 4


def test_repair_leaves_good_files_alone_and_ignores_a_missing_folder(tmp_path: Path) -> None:
    good = tmp_path / "a" / "good.wav"
    good.parent.mkdir()
    good.write_bytes(wav_header(48000, 8) + bytes(8))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_header(8000, 0))
    os.utime(good, (1_000_000, 1_000_000))
    assert repair_recordings(tmp_path) == []
    assert good.stat().st_mtime == 1_000_000
    assert repair_recordings(tmp_path / "missing") == []
