"""An .xlsx archive from members deflated once, byte for byte what zipfile writes for xlsxwriter.

A year's templates share nearly all their members (see assets/templates.py): deflating the same styles,
theme and sheets again for each of thousands of projects was most of a template's cost, and zipfile has no
way to write a member that is already deflated. So the archive is laid out here, in the ZIP format's own
terms (APPNOTE.TXT 4.3: a local header and the data per member, then the central directory and its end
record), with every field as zipfile's writestr sets it for xlsxwriter's members: deflated at zlib's
default level, stamped 1980-01-01 00:00, read-write for the owner, no zip64 (a template is ~50 KB).
tests/test_templates.py holds the two writers to the same bytes.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_VERSION = 20  # zipfile's DEFAULT_VERSION: what a deflated member needs to be extracted
_DEFLATED = zipfile.ZIP_DEFLATED
_DOS_DATE_1980_01_01 = (1980 - 1980) << 9 | 1 << 5 | 1  # at 00:00:00 (DOS time 0)
_OWNER_READ_WRITE = 0o600 << 16  # zipfile's default external attributes for a member written from bytes
_SYSTEM = zipfile.ZipInfo().create_system  # as zipfile stamps it on this platform (3, Unix; 0 on Windows)


@dataclass(frozen=True)
class Member:
    name: bytes  # ASCII, as every member xlsxwriter writes
    crc: int
    size: int
    deflated: bytes

    @classmethod
    def of(cls, name: str, data: bytes, level: int = zlib.Z_DEFAULT_COMPRESSION) -> Member:
        # At the default level, what zipfile's compressor for ZIP_DEFLATED gives for one write of the whole
        # member. Any level reads the same (the ZIP format does not record it).
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        return cls(name.encode("ascii"), zlib.crc32(data), len(data), deflate.compress(data) + deflate.flush())

    @classmethod
    def taken_from(cls, archive_bytes: bytes, info: zipfile.ZipInfo) -> Member:
        """A deflated member of an archive zipfile wrote (xlsxwriter's), as it is: not inflated and deflated
        again."""
        if info.compress_type != _DEFLATED:
            raise ValueError(f"{info.filename} is not deflated")
        header = _LOCAL_HEADER.unpack_from(archive_bytes, info.header_offset)
        start = info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1]  # after its name and extra field
        return cls(info.filename.encode("ascii"), info.CRC, info.file_size,
                   archive_bytes[start:start + info.compress_size])


def archive(members: Iterable[Member]) -> bytes:
    out, central, count = bytearray(), bytearray(), 0
    for m in members:
        offset = len(out)
        out += _LOCAL_HEADER.pack(b"PK\x03\x04", _VERSION, 0, 0, _DEFLATED, 0, _DOS_DATE_1980_01_01, m.crc,
                                  len(m.deflated), m.size, len(m.name), 0)
        out += m.name
        out += m.deflated
        central += _CENTRAL_ENTRY.pack(b"PK\x01\x02", _VERSION, _SYSTEM, _VERSION, 0, 0, _DEFLATED, 0,
                                       _DOS_DATE_1980_01_01, m.crc, len(m.deflated), m.size, len(m.name), 0, 0, 0,
                                       0, _OWNER_READ_WRITE, offset)
        central += m.name
        count += 1
    end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + end)
