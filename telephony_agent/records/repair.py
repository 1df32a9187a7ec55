"""The bytes of a call recording: the stereo WAV layout, the writer's file handle, repair.

Why these live together: one invariant keeps a recording playable at every moment — the
header's RIFF and data sizes cover whole stereo frames that really are in the file. The
writer thread keeps it while it writes (`RecordingFile`: header first with no data, sizes
patched after the data they cover). A crash between two header updates leaves more audio
than the header admits, or a torn last frame; `repair_recordings` restores the invariant
at the next start. It reads one header and one size per file, so thousands of good files
cost almost nothing, and it never touches a file whose layout is not ours.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Final, Literal

import structlog

__all__ = [
    "FRAME_BYTES",
    "HEADER_BYTES",
    "MAX_DATA_BYTES",
    "RecordingFile",
    "RepairedFile",
    "describe_os_error",
    "repair_recordings",
    "wav_header",
]

log = structlog.get_logger(__name__)

HEADER_BYTES: Final = 44
FRAME_BYTES: Final = 4  # one stereo frame: two 16-bit samples
MAX_DATA_BYTES: Final = (0xFFFFFFFF - 36) // FRAME_BYTES * FRAME_BYTES  # RIFF sizes are 32-bit
_RIFF_SIZE_AT: Final = 4
_DATA_SIZE_AT: Final = 40
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_ERRNO_WORDS: Final = {
    errno.ENOSPC: "disk full",
    errno.EFBIG: "file size limit reached",
    errno.EIO: "disk I/O error",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.ENOTDIR: "a parent is not a folder",
    **({errno.EDQUOT: "disk quota exceeded"} if hasattr(errno, "EDQUOT") else {}),
}


def wav_header(rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of a 16-bit stereo integer-PCM WAV holding `data_bytes` of samples."""
    fmt = (16, 1, 2, rate, rate * FRAME_BYTES, FRAME_BYTES, 16)  # PCM, 2 channels, 16 bits
    return _HEADER.pack(b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", *fmt, b"data", data_bytes)


def describe_os_error(exc: OSError) -> str:
    """A few words for an OS error, without the path (callers log the path separately)."""
    words = _ERRNO_WORDS.get(exc.errno or 0)
    return words or (exc.strerror or type(exc).__name__).lower()


def _write_sizes(fd: int, data_bytes: int) -> None:
    for offset, value in ((_RIFF_SIZE_AT, 36 + data_bytes), (_DATA_SIZE_AT, data_bytes)):
        if os.pwrite(fd, struct.pack("<I", value), offset) != 4:
            raise OSError(errno.EIO, "short header write")


class RecordingFile:
    """The writer thread's handle on one recording file; no other thread may touch it.

    Unbuffered on purpose: `file_bytes` counts only bytes the OS accepted, so after a
    failed write the header can be made to cover exactly the whole frames on disk.
    """

    def __init__(self, path: Path, rate: int, write_some: Callable[[FileIO, memoryview], int]):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:  # a file stands where a folder should
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", exc.filename) from exc
        self._file = FileIO(path, "wb")
        self._write_some = write_some
        self.file_bytes = 0
        try:
            self.append(memoryview(wav_header(rate, 0)))
        except BaseException:
            self._file.close()
            path.unlink(missing_ok=True)  # a torn header is not a WAV: leave nothing
            raise
        self.header_at = time.monotonic()

    @property
    def data_bytes(self) -> int:
        return max(0, self.file_bytes - HEADER_BYTES)

    def append(self, data: memoryview) -> None:
        """Write all of `data` (bytes); after an error `file_bytes` still counts what landed."""
        while data:
            written = self._write_some(self._file, data)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress")
            self.file_bytes += written
            data = data[written:]

    def sync_header(self) -> None:
        """Patch the RIFF and data sizes to the whole frames written so far."""
        _write_sizes(self._file.fileno(), self.data_bytes // FRAME_BYTES * FRAME_BYTES)
        self.header_at = time.monotonic()

    def finish(self) -> None:
        """Cut a torn last frame, make the header match and close; closes even on error."""
        if self._file.closed:
            return
        try:
            torn = self.data_bytes % FRAME_BYTES
            if torn:
                os.ftruncate(self._file.fileno(), self.file_bytes - torn)
                self.file_bytes -= torn
            if self.file_bytes >= HEADER_BYTES:
                self.sync_header()
        finally:
            self._file.close()


@dataclass(frozen=True, slots=True)
class RepairedFile:
    """What `repair_recordings` did to one file (good files are not reported)."""

    path: Path
    action: Literal["repaired", "skipped", "failed"]
    detail: str
    frames: int = 0  # whole stereo frames the file holds after a repair


def repair_recordings(folder: Path) -> list[RepairedFile]:
    """Fix the headers a crash left in the recordings under `folder` (recursive).

    Run it at service start, before a sink writes there: a live file's header lags its
    data on purpose. Files that are not 16-bit stereo PCM WAVs laid out as we write them
    are left alone and reported as skipped; a folder that does not exist holds nothing.
    """
    results: list[RepairedFile] = []
    for path in _wav_files(Path(folder)):
        outcome = _repair_one(path)
        if outcome is None:
            continue
        results.append(outcome)
        if outcome.action != "skipped":
            log.info(f"recording_{outcome.action}", path=str(path), detail=outcome.detail)
    return results


def _wav_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):  # does not descend into linked folders
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".wav"):
                yield Path(root, name)


def _repair_one(path: Path) -> RepairedFile | None:
    if path.is_symlink():
        return RepairedFile(path, "skipped", "a symbolic link")
    try:
        with FileIO(path, "rb") as file:
            head = file.read(HEADER_BYTES)
            size = os.fstat(file.fileno()).st_size
            foreign = _foreign_layout(head) or _trailing_chunks(file, head, size)
    except OSError as exc:
        return RepairedFile(path, "failed", f"cannot read: {describe_os_error(exc)}")
    if foreign:
        return RepairedFile(path, "skipped", foreign)
    riff_size, data_size = (
        struct.unpack_from("<I", head, 4)[0],
        struct.unpack_from("<I", head, 40)[0],
    )
    whole = min((size - HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES, MAX_DATA_BYTES)
    if size == HEADER_BYTES + whole and data_size == whole and riff_size == 36 + whole:
        return None
    cut = size - HEADER_BYTES - whole
    try:
        with FileIO(path, "r+b") as file:
            if cut:
                os.ftruncate(file.fileno(), HEADER_BYTES + whole)
            _write_sizes(file.fileno(), whole)
    except OSError as exc:
        return RepairedFile(path, "failed", f"cannot write: {describe_os_error(exc)}")
    detail = f"header said {data_size} bytes of audio, the file holds {whole}"
    if cut:
        detail += f"; cut {cut} trailing bytes"
    return RepairedFile(path, "repaired", detail, frames=whole // FRAME_BYTES)


def _foreign_layout(head: bytes) -> str | None:
    """Why a header is not one we write, or None when it is."""
    if len(head) < HEADER_BYTES:
        return "shorter than a WAV header"
    riff, _, wave, fmt_id, fmt_size, *fmt, data_id, data_size = _HEADER.unpack(head)
    if riff != b"RIFF" or wave != b"WAVE":
        return "not a RIFF/WAVE file"
    code, channels, rate, byte_rate, block, bits = fmt
    if fmt_id != b"fmt " or fmt_size != 16 or data_id != b"data":
        return "another WAV layout (not fmt then data in 44 bytes)"
    if (code, channels, bits, block) != (1, 2, 16, FRAME_BYTES) or rate * FRAME_BYTES != byte_rate:
        return f"another format (channels {channels}, bits {bits}, format code {code})"
    if rate == 0 or data_size % FRAME_BYTES:
        return "another format (zero rate or odd data size)"
    return None


def _trailing_chunks(file: FileIO, head: bytes, size: int) -> str | None:
    """A file whose data is followed by well-formed chunks up to its end (say a LIST of
    tags another tool appended) is someone else's complete WAV, not a crash to repair."""
    offset = HEADER_BYTES + struct.unpack_from("<I", head, _DATA_SIZE_AT)[0]
    chunks = 0
    while offset + 8 <= size and chunks < 64:
        file.seek(offset)
        chunk = file.read(8)
        if len(chunk) < 8 or not all(0x20 <= c <= 0x7E for c in chunk[:4]):
            return None
        length = struct.unpack_from("<I", chunk, 4)[0]
        offset += 8 + length + (length & 1)
        chunks += 1
    if chunks and offset in (size, size + 1):
        return "another WAV layout (chunks after the audio)"
    return None
