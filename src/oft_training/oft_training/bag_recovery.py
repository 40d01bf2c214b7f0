"""Recover a rosbag2 recording whose writer died: the analogue of ``ros2 bag reindex``.

A recorder killed by SIGKILL, an OOM kill, a power cut or a full disk leaves its bag
directory without ``metadata.yaml``, and (mcap) a file without its summary and footer,
possibly ending in half a record. No rosbag2 reader opens that. Recovery, in place:

1. Scan the mcap file record by record from its start. Every complete record is kept;
   a chunk counts only if it decompresses and its CRC (when written) matches. The scan
   stops at the first record that is cut off or damaged.
2. Truncate the file there and append what a closed file ends with: a data-end record,
   a summary (schemas, channels, statistics, chunk indexes) and the footer.
3. Write ``metadata.yaml`` (atomically, last) from what the repaired file holds, so the
   bag's duration and counts are the recording's true ones.

Each step is safe to repeat: a recovery that is itself interrupted is recovered again.
The result opens in every rosbag2 reader (rosbags, ``ros2 bag info``, the mcap tools).

A sqlite3 recording keeps what its writer committed (the recorder commits every flush
interval; sqlite rolls back the rest on the next open): recovery only writes its
``metadata.yaml`` from the database's tables.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Dict, List, Optional

from rosbags.rosbag2.storage_mcap import decompress

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
OP_CHUNK, OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x06, 0x07, 0x08, 0x0B, 0x0F
RECORD_PREFIX = 9  # opcode (1 byte) + content length (8 bytes)
RECOVERED_KEY = "oft_recovered"  # custom_data key in metadata.yaml of a recovered bag


class RecoveryError(ValueError):
    """The directory holds no recording that can be recovered."""


@dataclass
class _Chunk:
    start: int
    length: int
    start_time: int
    end_time: int
    compression: str
    compressed_size: int
    uncompressed_size: int
    index_offsets: Dict[int, int] = field(default_factory=dict)
    index_length: int = 0
    messages: Dict[int, list] = field(default_factory=dict)  # channel -> [(log_time, offset in the chunk)]


@dataclass
class _Scan:
    """What the complete records of a data section hold."""

    data_start: int = 0
    good_end: int = 0  # end of the last complete record: everything after it is dropped
    closed: bool = False  # the file reached its data-end record (only its metadata.yaml is missing)
    schemas: Dict[int, bytes] = field(default_factory=dict)  # id -> record content, written back as it was
    channels: Dict[int, bytes] = field(default_factory=dict)
    counts: Dict[int, int] = field(default_factory=dict)
    start_time: int = 2**64 - 1
    end_time: int = 0
    chunks: List[_Chunk] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())


@dataclass
class RecoveryReport:
    """What a recovery kept and dropped."""

    path: Path
    message_counts: Dict[str, int]
    duration_s: float
    dropped_bytes: int
    reason: str

    @property
    def total(self) -> int:
        return sum(self.message_counts.values())

    def summary(self) -> str:
        return (f"recovered crashed recording {self.path}: {self.total} messages over {self.duration_s:.2f} s "
                f"({self.dropped_bytes} bytes of an unfinished record dropped; {self.reason})")


def _u16(data: bytes, offset: int) -> int:
    return struct.unpack_from("<H", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _u64(data: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", data, offset)[0]


def _string(data: bytes, offset: int):
    size = _u32(data, offset)
    return data[offset + 4: offset + 4 + size].decode(), offset + 4 + size


def _records(data: bytes, start: int, end: int):
    """(opcode, content start, content end) of each complete record; stops at a cut-off one."""
    offset = start
    while offset + RECORD_PREFIX <= end:
        opcode = data[offset]
        length = _u64(data, offset + 1)
        content = offset + RECORD_PREFIX
        if content + length > end:
            return
        yield opcode, content, content + length
        offset = content + length


def _note_content(scan: _Scan, opcode: int, content: bytes, chunk: Optional[_Chunk], offset: int = 0) -> None:
    """Schemas, channels and messages, at top level or inside a chunk (``offset``: the record's, in it)."""
    if opcode == OP_SCHEMA:
        scan.schemas[_u16(content, 0)] = content
    elif opcode == OP_CHANNEL:
        channel_id = _u16(content, 0)
        scan.channels[channel_id] = content
    elif opcode == OP_MESSAGE:
        channel_id, log_time = _u16(content, 0), _u64(content, 6)
        scan.counts[channel_id] = scan.counts.get(channel_id, 0) + 1
        scan.start_time, scan.end_time = min(scan.start_time, log_time), max(scan.end_time, log_time)
        if chunk is not None:
            chunk.messages.setdefault(channel_id, []).append((log_time, offset))


def _read_chunk(data: bytes, start: int, content_start: int, content_end: int) -> tuple:
    """A chunk record -> (_Chunk, its records' bytes); raises if it is damaged."""
    content = data[content_start:content_end]
    start_time, end_time, size, crc = _u64(content, 0), _u64(content, 8), _u64(content, 16), _u32(content, 24)
    compression, offset = _string(content, 28)
    compressed_size = _u64(content, offset)
    payload = content[offset + 8: offset + 8 + compressed_size]
    if len(payload) != compressed_size:
        raise ValueError("chunk shorter than its declared size")
    records = decompress(payload, compression, size, crc)  # rosbags' own check of size and CRC
    chunk = _Chunk(start, content_end - start, start_time, end_time, compression, compressed_size, size)
    return chunk, records


KNOWN_OPCODES = set(range(0x01, 0x10))


def scan_mcap(data) -> _Scan:
    """Every complete, intact record of an mcap file's data section (``data``: bytes or an mmap)."""
    if data[:len(MAGIC)] != MAGIC:
        raise RecoveryError("not an mcap file (bad magic)")
    header = next(_records(data, len(MAGIC), len(data)), None)
    if header is None or header[0] != OP_HEADER:
        raise RecoveryError("mcap file has no complete header record")
    scan = _Scan(data_start=header[2], good_end=header[2], stop_reason="end of file")
    current: Optional[_Chunk] = None
    for opcode, start, end in _records(data, header[2], len(data)):
        if opcode in (OP_DATA_END, OP_FOOTER):  # the summary after it is written anew
            scan.closed, scan.stop_reason = True, "data section complete"
            break
        if opcode not in KNOWN_OPCODES:  # a zero-filled or overwritten tail
            scan.stop_reason = f"no record at byte {start - RECORD_PREFIX} (opcode {opcode:#04x})"
            break
        try:
            current = _note_record(scan, data, opcode, start, end, current)
        except Exception as error:  # a damaged record: keep what came before it
            scan.stop_reason = f"damaged record at byte {start - RECORD_PREFIX}: {type(error).__name__}: {error}"
            break
        scan.good_end = end
    else:
        if scan.good_end < len(data):
            scan.stop_reason = f"record cut off at byte {scan.good_end}"
    return scan


def _note_record(scan: _Scan, data, opcode: int, start: int, end: int, current: Optional[_Chunk]):
    """Take one top-level record into the scan; returns the chunk its message indexes belong to."""
    if opcode == OP_CHUNK:
        chunk, records = _read_chunk(data, start - RECORD_PREFIX, start, end)
        for inner_op, inner_start, inner_end in _records(records, 0, len(records)):
            _note_content(scan, inner_op, records[inner_start:inner_end], chunk, inner_start - RECORD_PREFIX)
        scan.chunks.append(chunk)
        return chunk
    if opcode == OP_MESSAGE_INDEX and current is not None:
        current.index_offsets[_u16(data, start)] = start - RECORD_PREFIX
        current.index_length += end - start + RECORD_PREFIX
        return current
    _note_content(scan, opcode, bytes(data[start:end]), None)
    return current


def _record(opcode: int, content: bytes) -> bytes:
    return struct.pack("<BQ", opcode, len(content)) + content


def _pack_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<I", len(raw)) + raw


def _message_index(channel_id: int, entries: list) -> bytes:
    packed = b"".join(struct.pack("<QQ", log_time, offset) for log_time, offset in sorted(entries))
    return _record(OP_MESSAGE_INDEX, struct.pack("<HI", channel_id, len(packed)) + packed)


def _chunk_index(chunk: _Chunk) -> bytes:
    entries = b"".join(struct.pack("<HQ", cid, off) for cid, off in sorted(chunk.index_offsets.items()))
    return (struct.pack("<QQQQ", chunk.start_time, chunk.end_time, chunk.start, chunk.length)
            + struct.pack("<I", len(entries)) + entries + struct.pack("<Q", chunk.index_length)
            + _pack_string(chunk.compression) + struct.pack("<QQ", chunk.compressed_size, chunk.uncompressed_size))


def _statistics(scan: _Scan) -> bytes:
    entries = b"".join(struct.pack("<HQ", cid, n) for cid, n in sorted(scan.counts.items()))
    start = scan.start_time if scan.message_count else 0
    return (struct.pack("<QHIIII", scan.message_count, len(scan.schemas), len(scan.channels), 0, 0, len(scan.chunks))
            + struct.pack("<QQ", start, scan.end_time) + struct.pack("<I", len(entries)) + entries)


def summary_tail(scan: _Scan, offset: int) -> bytes:
    """Data end, summary and footer for a data section that ends at ``offset``."""
    tail = BytesIO()
    for chunk in scan.chunks:
        if set(chunk.messages) - set(chunk.index_offsets):
            # A kill between a chunk and its message indexes: index it anew, here (readers such as
            # rosbags count a chunk's messages from its indexes, and skip a chunk that has none).
            chunk.index_offsets, chunk.index_length = {}, 0
            for channel_id, entries in sorted(chunk.messages.items()):
                record = _message_index(channel_id, entries)
                chunk.index_offsets[channel_id] = offset + tail.tell()
                chunk.index_length += len(record)
                tail.write(record)
    tail.write(_record(OP_DATA_END, struct.pack("<I", 0)))
    summary_start = offset + tail.tell()
    for schema_id in sorted(scan.schemas):
        tail.write(_record(OP_SCHEMA, scan.schemas[schema_id]))
    for channel_id in sorted(scan.channels):
        tail.write(_record(OP_CHANNEL, scan.channels[channel_id]))
    tail.write(_record(OP_STATISTICS, _statistics(scan)))
    for chunk in scan.chunks:
        tail.write(_record(OP_CHUNK_INDEX, _chunk_index(chunk)))
    tail.write(_record(OP_FOOTER, struct.pack("<QQI", summary_start, 0, 0)))
    tail.write(MAGIC)
    return tail.getvalue()


def _repair_mcap(path: Path) -> tuple:
    """Truncate at the last complete record and close the file; (dropped bytes, reason)."""
    import mmap

    with path.open("r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise RecoveryError("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:  # not read into memory
            scan = scan_mcap(data)
            complete = scan.closed and data[-len(MAGIC):] == MAGIC
        if complete:
            return 0, scan.stop_reason  # a complete file: only metadata.yaml is missing
        tail = summary_tail(scan, scan.good_end)
        handle.truncate(scan.good_end)
        handle.seek(scan.good_end)
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())  # on the disk before metadata.yaml says the bag is whole
    return size - scan.good_end, scan.stop_reason


def _refuse_if_recording(file: Path) -> None:
    """A recorder holds an exclusive lock on the file it writes: a live recording is not recovered."""
    import fcntl

    with file.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecoveryError(f"{file.name} is being written by a running recorder; not touching it") from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def is_unfinished_bag(path) -> bool:
    """A directory with mcap or sqlite3 files but no metadata.yaml: a recording whose writer died."""
    path = Path(path)
    return (path.is_dir() and not (path / "metadata.yaml").exists()
            and any([*path.glob("*.mcap"), *path.glob("*.db3")]))


def _type_hash(msgtype: str, msgdef: str) -> str:
    from oft_training import msgtypes

    typestore = msgtypes.new_typestore()
    try:
        if msgtype not in typestore.fielddefs:
            from rosbags.typesys import get_types_from_msg

            typestore.register(get_types_from_msg(msgdef, msgtype))
        return typestore.hash_rihs01(msgtype)
    except Exception:  # an IDL or unparsable definition: rosbag2 accepts an empty hash
        return ""


@dataclass
class _FileContents:
    """One storage file's topics (topic_metadata, count) and time span."""

    topics: List[tuple]
    message_count: int
    start: int
    end: int


def _mcap_contents(file: Path) -> _FileContents:
    from rosbags.rosbag2.metadata import dump_qos_v9
    from rosbags.rosbag2.storage_mcap import McapReader

    reader = McapReader(file)
    reader.open()
    try:
        meta = reader.metadata
        topics = [({"name": c.topic, "type": c.msgtype, "serialization_format": c.ext.serialization_format,
                    "offered_qos_profiles": dump_qos_v9(c.ext.offered_qos_profiles),
                    "type_description_hash": _type_hash(c.msgtype, c.msgdef.data)}, c.msgcount)
                  for c in reader.connections]
    finally:
        reader.close()
    if not meta.message_count:
        return _FileContents(topics, 0, 0, 0)
    return _FileContents(topics, meta.message_count, meta.start_time, meta.end_time - 1)


def _sqlite_contents(file: Path) -> _FileContents:
    import sqlite3

    from ruamel.yaml import YAML

    # Read-write: opening rolls back the transaction a killed writer left in its journal.
    with contextlib.closing(sqlite3.connect(str(file))) as db:
        spans = {row[0]: row[1:] for row in db.execute(
            "SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id")}
        columns = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
        digest_column = "type_description_hash" if "type_description_hash" in columns else "''"  # v8: none
        rows = db.execute("SELECT id, name, type, serialization_format, offered_qos_profiles, "
                          f"{digest_column} FROM topics").fetchall()
    topics = [({"name": name, "type": msgtype, "serialization_format": fmt,
                "offered_qos_profiles": YAML(typ="safe").load(qos) or [], "type_description_hash": digest},
               spans.get(topic_id, (0,))[0]) for topic_id, name, msgtype, fmt, qos, digest in rows]
    if not spans:
        return _FileContents(topics, 0, 0, 0)
    return _FileContents(topics, sum(v[0] for v in spans.values()), min(v[1] for v in spans.values()),
                         max(v[2] for v in spans.values()))


def write_metadata(path: Path, files: List[Path], note: str) -> Dict[str, int]:
    """metadata.yaml (rosbag2 version 9) from what the closed storage files hold; topic -> count."""
    from ruamel.yaml import YAML

    storage = "sqlite3" if files[0].suffix == ".db3" else "mcap"
    read = _sqlite_contents if storage == "sqlite3" else _mcap_contents
    topics: Dict[tuple, dict] = {}
    file_entries, counts = [], {}
    start_all, end_all = 2**63 - 1, 0
    for file in files:
        contents = read(file)
        for topic_metadata, count in contents.topics:
            entry = topics.setdefault((topic_metadata["name"], topic_metadata["type"]),
                                      {"topic_metadata": topic_metadata, "message_count": 0})
            entry["message_count"] += count
            counts[topic_metadata["name"]] = counts.get(topic_metadata["name"], 0) + count
        file_entries.append({"path": file.name, "starting_time": {"nanoseconds_since_epoch": contents.start},
                             "duration": {"nanoseconds": contents.end - contents.start},
                             "message_count": contents.message_count})
        if contents.message_count:
            start_all, end_all = min(start_all, contents.start), max(end_all, contents.end)
    total = sum(entry["message_count"] for entry in file_entries)
    information = {
        "version": 9,
        "storage_identifier": storage,
        "relative_file_paths": [file.name for file in files],
        "duration": {"nanoseconds": end_all - start_all if total else 0},
        "starting_time": {"nanoseconds_since_epoch": start_all if total else 0},
        "message_count": total,
        "topics_with_message_count": list(topics.values()),
        "compression_format": "",
        "compression_mode": "",
        "files": file_entries,
        "custom_data": {RECOVERED_KEY: note},
        "ros_distro": "rosbags",
    }
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    tmp = path / "metadata.yaml.tmp"
    with tmp.open("w", encoding="utf8") as handle:
        yaml.dump({"rosbag2_bagfile_information": information}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path / "metadata.yaml")
    return counts


def recover_bag(path) -> RecoveryReport:
    """Make an unfinished recording at ``path`` a complete rosbag2, in place."""
    path = Path(path)
    if not is_unfinished_bag(path):
        raise RecoveryError(f"{path} is not an unfinished recording (it has metadata.yaml, or no .mcap or .db3 file)")
    files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    for file in files:
        _refuse_if_recording(file)
    sqlite = files[0].suffix == ".db3"
    dropped, reasons = 0, ["sqlite3 keeps what it committed"] if sqlite else []
    try:
        for file in () if sqlite else files:
            file_dropped, reason = _repair_mcap(file)
            dropped += file_dropped
            reasons.append(reason)
        note = f"{dropped} bytes dropped; " + "; ".join(sorted(set(reasons)))
        counts = write_metadata(path, files, note)  # reads every repaired file back first
    except RecoveryError:
        raise
    except Exception as error:  # rosbags, sqlite3 and OS errors on what is left of the files
        raise RecoveryError(f"cannot recover {path}: {type(error).__name__}: {error}") from error
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:  # proves the result opens, and reads its true duration
            duration_s = reader.duration / 1e9 if reader.message_count else 0.0
    except Exception as error:
        (path / "metadata.yaml").unlink(missing_ok=True)  # leave it unfinished: it can be tried again
        raise RecoveryError(f"{path} does not open after recovery: {error}") from error
    return RecoveryReport(path, counts, duration_s, dropped, "; ".join(sorted(set(reasons))))
