"""Read-only access to the submission packages in ``<inbox>/<year>/``.

The inbox belongs to the units, not to the pipeline: nothing here writes, moves, extracts or
deletes anything there. Members are read into memory (bounded) or streamed, and a zip is judged
from its central directory before a single byte is inflated (a zip whose only member is a zip, one
level down, the same way), so a hostile or broken package ends
as a PackageError carrying a Chinese detail for the unit, never as a crash or a full disk.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import stat
import sys
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

_CHUNK = 1 << 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SKIPPED_TOP_LEVEL = {"thumbs.db", "desktop.ini"}
_JUNK_BASENAMES = {".ds_store", "thumbs.db", "desktop.ini"}
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
# zipfile inflates bzip2 and lzma chunks without an output bound, so a member lying about its size
# could fill memory before any check of ours runs; unit tools write stored or deflated zips anyway.
_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_DRIVE = re.compile(r"^[A-Za-z]:")
# What a damaged archive or member stream raises inside zipfile/zlib; never our own UnsafePackage.
_CORRUPT = (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, NotImplementedError)


# --- discovery -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageRef:
    name: str
    path: Path
    kind: Literal["zip", "folder", "other"]
    modified_at: datetime  # when the unit last changed it: a folder's newest member file
    size: int
    sha256: str
    # The newest time of anything in it, its folders included (deleting a file changes only its
    # folder's time): what tells the hash cache that a package changed. None: modified_at's.
    changed_ns: int | None = None

    @property
    def cache_key(self) -> tuple[str, int, int]:
        """The ``known_hashes`` key of this package: (name, size, mtime_ns).

        mtime_ns is taken at microsecond precision (the precision ``modified_at`` holds), so a
        caller can rebuild the key from a stored PackageRef alone.
        """
        changed = _datetime_to_ns(self.modified_at) if self.changed_ns is None else self.changed_ns
        return self.name, self.size, changed // 1000 * 1000


def discover_packages(
    year_dir: Path, known_hashes: Mapping[tuple[str, int, int], str] | None = None
) -> list[PackageRef]:
    """Every non-hidden top-level entry of ``year_dir``, sorted by name.

    ``known_hashes`` (from an earlier scan, keyed like ``PackageRef.cache_key``) spares re-hashing
    packages whose name, size and mtime have not changed: a year can hold thousands of them.
    """
    if not year_dir.is_dir():
        return []
    known = known_hashes or {}
    with os.scandir(year_dir) as entries:
        names = sorted(e.name for e in entries if not _is_hidden(e.name))
    return [_describe(year_dir / name, known) for name in names]


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "~$")) or name.lower() in _SKIPPED_TOP_LEVEL


def describe_package(path: Path) -> PackageRef:
    """The PackageRef of one inbox entry (hashed afresh), e.g. to read a stored package's files again."""
    return _describe(path, {})


def _describe(path: Path, known: Mapping[tuple[str, int, int], str]) -> PackageRef:
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode):
        kind = "folder"
        entries = list(_walk(path))
        stats = [entry.stat(follow_symlinks=False) for _, entry in entries]
        files = [s for s in stats if not stat.S_ISDIR(s.st_mode)]
        size = sum(s.st_size for s in files if stat.S_ISREG(s.st_mode))
        # Received when its newest file was written: the folder's own time changes whenever anything
        # is copied into it (or the folder itself is copied). An empty folder has only its own time.
        mtime_ns = max((s.st_mtime_ns for s in files), default=st.st_mtime_ns)
        # Subfolders count for the cache: deleting a file changes its folder's mtime, not any file's.
        changed_ns = max([st.st_mtime_ns, *(s.st_mtime_ns for s in stats)])
    else:
        # lstat, not stat: a link is described (and later refused), never followed.
        is_zip = stat.S_ISREG(st.st_mode) and path.name.lower().endswith(".zip")
        kind = "zip" if is_zip else "other"
        size, mtime_ns = st.st_size, st.st_mtime_ns
        changed_ns = mtime_ns
    modified_at = _EPOCH + timedelta(microseconds=mtime_ns // 1000)
    ref = PackageRef(path.name, path, kind, modified_at, size, "", changed_ns)
    sha = known.get(ref.cache_key)
    if sha is None:
        sha = _folder_sha256(path) if kind == "folder" else _entry_digest(path, st)
    return PackageRef(path.name, path, kind, modified_at, size, sha, changed_ns)


def _datetime_to_ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _walk(root: Path, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], os.DirEntry]]:
    """Every entry below ``root`` with its relative path parts; links are yielded, never entered."""
    with os.scandir(root) as entries:
        for entry in entries:
            parts = (*prefix, entry.name)
            yield parts, entry
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), parts)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_digest(path: Path, st: os.stat_result) -> str:
    # Opening a link would hash something outside the inbox, opening a FIFO would block forever:
    # for those the identity is the link target (or the file type), never the content.
    if stat.S_ISREG(st.st_mode):
        return _file_sha256(path)
    marker = os.readlink(path) if stat.S_ISLNK(st.st_mode) else f"mode {st.st_mode:o}"
    return hashlib.sha256(os.fsencode(marker)).hexdigest()


def _folder_sha256(root: Path) -> str:
    lines = sorted(
        f"{'/'.join(parts)}\t{_entry_digest(Path(entry.path), entry.stat(follow_symlinks=False))}\n"
        for parts, entry in _walk(root)
        if not entry.is_dir(follow_symlinks=False)
    )
    # fsencode gives back the bytes of names that are not valid UTF-8 instead of failing on them.
    return hashlib.sha256(os.fsencode("".join(lines))).hexdigest()


# --- opening ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    max_members: int = 10_000
    max_total_bytes: int = 1 << 30
    max_member_bytes: int = 512 << 20
    max_ratio: int = 200


class PackageError(Exception):
    def __init__(self, detail_zh: str, member: str | None = None):
        super().__init__(detail_zh)
        self.detail_zh = detail_zh
        self.member = member


class UnreadablePackage(PackageError):
    """Rule P001: corrupt, empty, encrypted, or not a zip/folder."""


class UnsafePackage(PackageError):
    """Rule P004: traversal, absolute or link member, bomb, member bigger than declared."""


@dataclass(frozen=True)
class Member:
    path: str
    size: int


class OpenedPackage:
    """A validated package; read members with read/fingerprint, resolve references with find."""

    def __init__(self, members: list[Member]):
        self.members = sorted(members, key=lambda m: m.path)
        self._by_path = {m.path: m for m in self.members}

    def __enter__(self) -> OpenedPackage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release for a folder; the zip subclass closes its file."""

    def read(self, path: str) -> bytes:
        return b"".join(self._chunks(path))

    def fingerprint(self, path: str, n: int = 64) -> tuple[bytes, str]:
        """The member's first n bytes (head's) and its sha256, from one reading of it."""
        digest, head = hashlib.sha256(), b""
        for chunk in self._chunks(path):
            if len(head) < n:
                head += chunk[:n - len(head)]
            digest.update(chunk)
        return head, digest.hexdigest()

    def find(self, reference: str) -> Member | None:
        ref = unicodedata.normalize("NFKC", reference).strip().replace("\\", "/")
        ref = ref.removeprefix("./").lstrip("/")
        if not ref:
            return None
        if ref in self._by_path:
            return self._by_path[ref]
        wanted = _fold(ref)
        same_path = [m for m in self.members if _fold(m.path) == wanted]
        if same_path:
            return same_path[0]
        base = wanted.rsplit("/", 1)[-1]
        same_name = [m for m in self.members if _fold(m.path).rsplit("/", 1)[-1] == base]
        return min(same_name, key=lambda m: (len(m.path), m.path), default=None)

    def _chunks(self, path: str) -> Iterator[bytes]:
        member = self._by_path[path]
        # Ask for one byte more than declared: getting it proves the member lied about its size,
        # and the budget keeps a lying member from inflating past that.
        budget = member.size + 1
        try:
            with self._open(member) as f:
                while chunk := f.read(min(_CHUNK, budget)):
                    budget -= len(chunk)
                    if budget == 0:
                        raise UnsafePackage(f"成员“{path}”的实际大小超过声明的 {member.size} 字节", path)
                    yield chunk
        except _CORRUPT as exc:
            raise _damaged(path) from exc
        if budget != 1:  # fewer bytes than declared: the data was cut short
            raise _damaged(path)

    def _open(self, member: Member) -> IO[bytes]:
        """A stream of the member's real bytes, not cut at its declared size."""
        raise NotImplementedError


class _FolderPackage(OpenedPackage):
    def __init__(self, files: dict[str, tuple[Path, int]]):
        super().__init__([Member(p, size) for p, (_, size) in files.items()])
        self._real = {p: real for p, (real, _) in files.items()}

    def _open(self, member: Member) -> IO[bytes]:
        return self._real[member.path].open("rb")


class _ZipPackage(OpenedPackage):
    def __init__(self, fp: IO[bytes], archive: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]):
        super().__init__([Member(p, i.file_size) for p, i in infos.items()])
        self._fp = fp
        self._archive = archive
        self._infos = infos

    def close(self) -> None:
        self._archive.close()  # does not close a file object it was handed
        self._fp.close()

    def _open(self, member: Member) -> IO[bytes]:
        # zipfile cuts a member at its declared size and then fails the CRC of the cut part, which
        # would make a member holding more than it declared look merely damaged. A copy declaring
        # no size leaves the CRC check to the real end of data and the size check to _chunks.
        info = copy.copy(self._infos[member.path])
        info.file_size = sys.maxsize
        return self._archive.open(info)


def open_package(ref: PackageRef, limits: Limits = Limits()) -> OpenedPackage:
    """Validate a package and open it for reading; the caller closes it (``with``)."""
    if ref.path.is_symlink():
        raise UnsafePackage(f"“{ref.name}”是链接")
    if ref.kind == "folder":
        return _open_folder(ref.path, limits)
    if ref.kind == "zip":
        return _open_zip(ref.path, limits)
    raise UnreadablePackage("不是 zip 压缩包或文件夹")


def _open_folder(root: Path, limits: Limits) -> OpenedPackage:
    files: dict[str, tuple[Path, int]] = {}
    for parts, entry in _walk(root):
        rel = "/".join(_decode_name(os.fsencode(part)) for part in parts)
        if entry.is_symlink():
            raise UnsafePackage(f"成员“{rel}”是链接", rel)
        if entry.is_dir(follow_symlinks=False):
            continue
        if not entry.is_file(follow_symlinks=False):
            raise UnsafePackage(f"成员“{rel}”不是普通文件", rel)
        if not _is_junk(rel):
            files[rel] = (Path(entry.path), entry.stat(follow_symlinks=False).st_size)
    _check_sizes([(p, size, None) for p, (_, size) in files.items()], limits)
    if not files:
        raise UnreadablePackage("文件夹为空，里面没有任何材料文件")
    return _FolderPackage(files)


def _open_zip(path: Path, limits: Limits) -> OpenedPackage:
    # Opened here rather than by zipfile so that a permission problem stays an operations error
    # instead of being reported to the unit as a damaged package.
    fp = path.open("rb")
    if os.fstat(fp.fileno()).st_size == 0:
        fp.close()
        raise UnreadablePackage("压缩包是 0 字节的空文件")
    package = _zip_package(fp, limits)
    inner = _only_zip(package)
    if inner is None:
        return package
    # Units zip the zip they were sent or made: a zip whose only member is a zip is that member,
    # opened in memory (within the member limit) and judged like any package, one level only.
    with package:
        data = package.read(inner)
    if not data:
        raise UnreadablePackage(f"压缩包中的“{inner}”是 0 字节的空文件", inner)
    return _zip_package(io.BytesIO(data), limits)


def _zip_package(fp: IO[bytes], limits: Limits) -> _ZipPackage:
    """An archive judged from its central directory; closes fp when it is refused."""
    try:
        try:
            archive = zipfile.ZipFile(fp)
        except _CORRUPT as exc:
            raise UnreadablePackage("压缩包已损坏") from exc
        infos = _validate_zip(archive.infolist(), limits)
    except BaseException:
        fp.close()
        raise
    return _ZipPackage(fp, archive, infos)


def _only_zip(package: OpenedPackage) -> str | None:
    """The path of the package's only member when that member is itself a zip."""
    if len(package.members) == 1 and package.members[0].path.lower().endswith(".zip"):
        return package.members[0].path
    return None


def open_quarantined(ref: PackageRef, limits: Limits = Limits()) -> OpenedPackage:
    """A zip already refused as unsafe, reduced to its members that are safe one by one.

    Only to learn what the package names (its workbook says which project it belongs to), so the
    refusal reaches the right unit. The refusal stands: nothing from here is ever accepted.
    """
    if ref.kind != "zip":
        raise UnreadablePackage("不是 zip 压缩包")
    fp = ref.path.open("rb")
    try:
        archive = zipfile.ZipFile(fp)
        safe: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist()[: limits.max_members]:
            try:
                files = _validate_zip([info], limits)
            except PackageError:
                continue
            for rel, checked in files.items():
                safe.setdefault(rel, checked)
        if not safe:
            raise UnreadablePackage("没有可安全读取的成员")
    except BaseException as exc:
        fp.close()
        if isinstance(exc, PackageError):
            raise
        if isinstance(exc, _CORRUPT):
            raise UnreadablePackage("压缩包已损坏") from exc
        raise
    return _ZipPackage(fp, archive, safe)


def _validate_zip(infos: list[zipfile.ZipInfo], limits: Limits) -> dict[str, zipfile.ZipInfo]:
    """Judge every entry from the central directory alone; return the readable files by path."""
    files: dict[str, zipfile.ZipInfo] = {}
    sizes: list[tuple[str, int, int]] = []
    for info in infos:
        raw = info.filename
        name = raw if info.flag_bits & _FLAG_UTF8 else _decode_name(raw.encode("cp437"))
        rel = _safe_relative(name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafePackage(f"成员“{name}”是链接", name)
        if info.flag_bits & _FLAG_ENCRYPTED:
            raise UnreadablePackage("压缩包设置了密码", name)
        if info.compress_type not in _SUPPORTED_METHODS:
            raise UnreadablePackage(f"成员“{name}”使用了不支持的压缩方式", name)
        sizes.append((name, info.file_size, info.compress_size))
        if not rel or name.replace("\\", "/").endswith("/") or _is_junk(rel):
            continue
        if rel in files:
            # Two files under one name: tools disagree on which one wins, so the content is ambiguous.
            raise UnsafePackage(f"成员“{name}”重复出现", name)
        files[rel] = info
    _check_sizes(sizes, limits)
    if not files:
        raise UnreadablePackage("压缩包为空，里面没有任何材料文件")
    return files


def _decode_name(raw: bytes) -> str:
    # Tools that omit the UTF-8 flag either wrote UTF-8 anyway or (Chinese Windows) GBK;
    # GB18030 is the superset of GBK that decodes the most of what such tools produce.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def _safe_relative(name: str) -> str:
    """The member's posix path relative to the package root; refuses anything pointing outside."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise UnsafePackage(f"成员“{name}”是绝对路径", name)
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePackage(f"成员“{name}”指向包外路径", name)
    return "/".join(parts)


def _is_junk(rel: str) -> bool:
    """Files the archiving tool or the OS added, not the unit: never materials."""
    parts = rel.split("/")
    base = parts[-1]
    return "__MACOSX" in parts or base.lower() in _JUNK_BASENAMES or base.startswith(("~$", "._"))


def _check_sizes(sizes: list[tuple[str, int, int | None]], limits: Limits) -> None:
    """Bomb checks on declared sizes; ``compressed`` is None for folder files (no ratio)."""
    if len(sizes) > limits.max_members:
        raise UnsafePackage(f"成员数 {len(sizes)} 超过上限 {limits.max_members}")
    for name, size, compressed in sizes:
        if size > limits.max_member_bytes:
            raise UnsafePackage(f"成员“{name}”解压后 {_human(size)} 超过上限", name)
        if compressed is not None and size > 1 << 20 and size > limits.max_ratio * max(compressed, 1):
            ratio = size // max(compressed, 1)
            raise UnsafePackage(f"成员“{name}”压缩比 {ratio}:1 异常", name)
    total = sum(size for _, size, _ in sizes)
    if total > limits.max_total_bytes:
        raise UnsafePackage(f"解压后总大小 {_human(total)} 超过上限")


def _human(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} 字节"


def _fold(path: str) -> str:
    return unicodedata.normalize("NFKC", path).casefold()


def _damaged(path: str) -> UnreadablePackage:
    return UnreadablePackage(f"成员“{path}”已损坏，无法读取", path)
