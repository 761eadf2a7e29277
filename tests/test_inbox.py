"""adapters.inbox: reading units' packages safely, on real zips and folders built in tmp_path."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tracemalloc
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from PIL import Image

from adapters.inbox import (
    Limits,
    PackageError,
    UnreadablePackage,
    UnsafePackage,
    check_extension,
    discover_packages,
    open_package,
    sniff,
)
from adapters.inbox import packages

MiB = 1 << 20
LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"
# Offsets of fields inside the local / central headers (APPNOTE 4.3.7 and 4.3.12).
FLAGS = {LOCAL: 6, CENTRAL: 8}
METHOD = {LOCAL: 8, CENTRAL: 10}
SIZE = {LOCAL: 22, CENTRAL: 24}


def image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"
JPEG = image_bytes("JPEG")
CLEAN = {
    "基本信息.xlsx": b"PK\x03\x04 pretend workbook",
    "附件/工作总结.pdf": PDF,
    "a/photo.jpg": JPEG,
    "bb/photo.jpg": b"second photo",
    "c/photo.jpg": b"third photo",
    "空.txt": b"",
}
JUNK = {
    "__MACOSX/附件/._工作总结.pdf": b"mac",
    ".DS_Store": b"ds",
    "附件/~$草稿.docx": b"lock",
    "附件/._x.pdf": b"fork",
    "Thumbs.db": b"thumbs",
}


def write_zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def write_folder(root: Path, entries: dict[str, bytes]) -> Path:
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def ref_of(path: Path):
    return next(r for r in discover_packages(path.parent) if r.name == path.name)


def patch_headers(path: Path, fields: dict[bytes, int], fmt: str, change) -> None:
    """Rewrite one field in every local and central header (test zips hold no such bytes elsewhere)."""
    data = bytearray(path.read_bytes())
    for sig, offset in fields.items():
        pos = data.find(sig)
        assert pos != -1
        while pos != -1:
            (old,) = struct.unpack_from(fmt, data, pos + offset)
            struct.pack_into(fmt, data, pos + offset, change(old))
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def patch_name(path: Path, placeholder: str, real: bytes) -> None:
    data = path.read_bytes()
    old = placeholder.encode("ascii")
    assert len(old) == len(real) and data.count(old) == 2  # local + central header
    path.write_bytes(data.replace(old, real))


def snapshot(root: Path) -> dict[str, tuple]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                content = os.readlink(p) if p.is_symlink() else "dir"
            state[str(p.relative_to(root))] = (content, st.st_mode, st.st_mtime_ns)
    return state


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def write_zeros_zip(path: Path, name: str, size: int) -> Path:
    """A deflated member of zeros written in chunks, so the test itself stays small in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("基本信息.xlsx", b"workbook")
        with zf.open(name, "w") as f:
            for _ in range(size // MiB):
                f.write(bytes(MiB))
    return path


# --- clean packages --------------------------------------------------------------------------

@pytest.fixture(params=["zip", "folder"])
def clean_ref(request, tmp_path):
    year = tmp_path / "inbox" / "2023"
    if request.param == "zip":
        write_zip(year / "材料.zip", {"附件/": b"", **CLEAN, **JUNK})
        return ref_of(year / "材料.zip")
    write_folder(year / "材料", {**CLEAN, **JUNK})
    return ref_of(year / "材料")


def test_clean_package_lists_only_real_files(clean_ref):
    with open_package(clean_ref) as pkg:
        assert [m.path for m in pkg.members] == sorted(CLEAN)
        assert {m.path: m.size for m in pkg.members} == {k: len(v) for k, v in CLEAN.items()}


def test_clean_package_reads_members(clean_ref):
    with open_package(clean_ref) as pkg:
        for path, data in CLEAN.items():
            assert pkg.read(path) == data
            assert pkg.fingerprint(path, 4) == (data[:4], hashlib.sha256(data).hexdigest())
        assert pkg.fingerprint("附件/工作总结.pdf")[0] == PDF[:64]
        assert sniff(pkg.fingerprint("a/photo.jpg")[0]) == "jpeg"
        with pytest.raises(KeyError):
            pkg.read(".DS_Store")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("附件/工作总结.pdf", "附件/工作总结.pdf"),  # exact
        (".\\附件\\工作总结.PDF", "附件/工作总结.pdf"),  # Windows separators, case
        ("  /附件/工作总结.pdf ", "附件/工作总结.pdf"),  # leading slash, blanks
        ("工作总结．pdf", "附件/工作总结.pdf"),  # bare name, full-width dot (NFKC)
        ("其他/工作总结.pdf", "附件/工作总结.pdf"),  # wrong folder: basename anywhere
        ("PHOTO.jpg", "a/photo.jpg"),  # several: shortest path, then alphabetical
        ("bb/photo.jpg", "bb/photo.jpg"),
        ("缺失.pdf", None),
        ("", None),
        ("   ", None),
    ],
)
def test_find_resolves_references(clean_ref, reference, expected):
    with open_package(clean_ref) as pkg:
        found = pkg.find(reference)
        assert (found.path if found else None) == expected


# --- member names ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("placeholder", "real_name", "encoding"),
    [
        ("aaaa/bbbbbbbb.pdf", "附件/工作总结.pdf", "gbk"),  # Chinese Windows
        ("pppppp/qqqqqq.jpg", "照片/现场.jpg", "utf-8"),  # UTF-8 written without the flag
    ],
)
def test_names_without_utf8_flag_are_decoded(tmp_path, placeholder, real_name, encoding):
    path = write_zip(tmp_path / "2023" / "p.zip", {placeholder: b"content"})
    patch_name(path, placeholder, real_name.encode(encoding))
    with zipfile.ZipFile(path) as zf:
        (info,) = zf.infolist()
        assert not info.flag_bits & 0x800 and info.filename != real_name

    with open_package(ref_of(path)) as pkg:
        assert [m.path for m in pkg.members] == [real_name]
        assert pkg.find(real_name.rsplit("/", 1)[1].upper()).path == real_name
        assert pkg.read(real_name) == b"content"


def test_gbk_names_in_folder_are_decoded(tmp_path):
    root = tmp_path / "2023" / "材料"
    root.mkdir(parents=True)
    with open(os.path.join(os.fsencode(root), "工作总结.pdf".encode("gbk")), "wb") as f:
        f.write(PDF)
    with open_package(ref_of(root)) as pkg:
        assert [m.path for m in pkg.members] == ["工作总结.pdf"]
        assert pkg.read("工作总结.pdf") == PDF


# --- unsafe packages -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name", ["../evil.txt", "docs/../../evil.txt", "..\\evil.txt", "/etc/passwd", "C:\\x", "c:/Windows/x"]
)
def test_member_outside_the_package_is_unsafe(tmp_path, name):
    path = write_zip(tmp_path / "2023" / "p.zip", {"ok.txt": b"ok", name: b"evil"})
    with pytest.raises(UnsafePackage) as err:
        open_package(ref_of(path))
    assert err.value.member == name and name in err.value.detail_zh


def test_symlink_member_is_unsafe(tmp_path):
    path = tmp_path / "2023" / "p.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        link = zipfile.ZipInfo("a.lnk")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafePackage) as err:
        open_package(ref_of(path))
    assert err.value.detail_zh == "成员“a.lnk”是链接"


def test_duplicate_member_is_unsafe(tmp_path):
    path = tmp_path / "2023" / "p.zip"
    path.parent.mkdir()
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
        zf.writestr("总结.pdf", PDF)
        zf.writestr("总结.pdf", b"MZ other")
    with pytest.raises(UnsafePackage, match="重复"):
        open_package(ref_of(path))


@pytest.mark.parametrize("target_is_dir", [False, True])
def test_symlink_in_folder_is_unsafe_and_not_followed(tmp_path, target_is_dir):
    outside = tmp_path / "outside"
    write_folder(outside, {"secret.txt": b"secret"})
    root = write_folder(tmp_path / "2023" / "材料", {"总结.pdf": PDF})
    (root / "链接").symlink_to(outside if target_is_dir else outside / "secret.txt")

    ref = ref_of(root)
    assert ref.size == len(PDF)  # the link's target was not counted
    with pytest.raises(UnsafePackage) as err:
        open_package(ref)
    assert err.value.member == "链接"


def test_linked_package_is_unsafe(tmp_path):
    real = write_zip(tmp_path / "elsewhere" / "real.zip", CLEAN)
    year = tmp_path / "2023"
    year.mkdir()
    (year / "p.zip").symlink_to(real)
    (ref,) = discover_packages(year)
    assert ref.kind == "other"
    with pytest.raises(UnsafePackage, match="链接"):
        open_package(ref)


def test_fifo_in_folder_neither_blocks_discovery_nor_opens(tmp_path):
    root = write_folder(tmp_path / "2023" / "材料", {"总结.pdf": PDF})
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafePackage, match="不是普通文件"):
        open_package(ref_of(root))


# --- unreadable packages ---------------------------------------------------------------------

def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "0 字节"),
        (b"this is not a zip at all" * 50, "损坏"),
        (_zip_bytes(CLEAN)[:300], "损坏"),  # truncated download: central directory lost
        (_zip_bytes({}), "为空"),
        (_zip_bytes({"目录/": b"", **JUNK}), "为空"),  # only folders and OS junk
    ],
    ids=["zero-byte", "garbage", "truncated", "empty", "only-junk"],
)
def test_broken_zip_is_unreadable(tmp_path, content, detail):
    path = tmp_path / "2023" / "p.zip"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(UnreadablePackage, match=detail):
        open_package(ref_of(path))


def test_empty_folder_is_unreadable(tmp_path):
    root = write_folder(tmp_path / "2023" / "材料", {".DS_Store": b"x"})
    with pytest.raises(UnreadablePackage, match="为空"):
        open_package(ref_of(root))


def test_encrypted_zip_is_unreadable(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"secret"}, zipfile.ZIP_STORED)
    patch_headers(path, FLAGS, "<H", lambda flags: flags | 0x1)
    with pytest.raises(UnreadablePackage, match="密码"):
        open_package(ref_of(path))


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_unsupported_compression_method_is_unreadable(tmp_path, method):
    if method == 99:
        path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"data"}, zipfile.ZIP_STORED)
        patch_headers(path, METHOD, "<H", lambda _: 99)
    else:
        path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"data"}, method)
    with pytest.raises(UnreadablePackage, match="压缩方式"):
        open_package(ref_of(path))


def test_crc_error_is_unreadable_on_read(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"hello world" * 10}, zipfile.ZIP_STORED)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"hello", b"jello", 1))
    with open_package(ref_of(path)) as pkg:
        with pytest.raises(UnreadablePackage, match="损坏") as err:
            pkg.read("a.txt")
        assert err.value.member == "a.txt"
        with pytest.raises(UnreadablePackage):
            pkg.fingerprint("a.txt")


def test_member_shorter_than_declared_is_unreadable(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"x" * 100}, zipfile.ZIP_STORED)
    patch_headers(path, SIZE, "<I", lambda _: 200)
    with open_package(ref_of(path)) as pkg:
        with pytest.raises(UnreadablePackage, match="损坏"):
            pkg.read("a.txt")


def test_other_file_is_unreadable(tmp_path):
    path = tmp_path / "2023" / "材料.rar"
    path.parent.mkdir()
    path.write_bytes(b"Rar!\x1a\x07\x00")
    ref = ref_of(path)
    assert ref.kind == "other"
    with pytest.raises(UnreadablePackage, match="不是 zip"):
        open_package(ref)


# --- bombs and liars -------------------------------------------------------------------------

def test_bomb_by_total_size_is_refused_before_inflating(tmp_path):
    ref = ref_of(write_zeros_zip(tmp_path / "2023" / "bomb.zip", "zeros.bin", 64 * MiB))
    limits = Limits(max_total_bytes=8 * MiB, max_ratio=10**6)

    def attempt():
        with pytest.raises(UnsafePackage, match="总大小 64.0 MB 超过上限"):
            open_package(ref, limits)

    assert peak_bytes(attempt) < MiB


def test_bomb_by_ratio_is_refused_before_inflating(tmp_path):
    ref = ref_of(write_zeros_zip(tmp_path / "2023" / "bomb.zip", "zeros.bin", 64 * MiB))

    def attempt():
        with pytest.raises(UnsafePackage, match=r"压缩比 \d+:1 异常") as err:
            open_package(ref)
        assert err.value.member == "zeros.bin"

    assert peak_bytes(attempt) < MiB


def test_ratio_is_not_judged_for_small_members(tmp_path):
    ref = ref_of(write_zeros_zip(tmp_path / "2023" / "ok.zip", "zeros.bin", 1 * MiB))
    with open_package(ref) as pkg:
        assert pkg.read("zeros.bin") == bytes(MiB)


@pytest.mark.parametrize("kind", ["zip", "folder"])
@pytest.mark.parametrize(
    ("limits", "detail"),
    [
        (Limits(max_members=3), "成员数 4 超过上限 3"),
        (Limits(max_member_bytes=100), "解压后 1.0 KB 超过上限"),
        (Limits(max_total_bytes=3000), "解压后总大小 4.0 KB 超过上限"),
    ],
)
def test_count_and_size_limits(tmp_path, kind, limits, detail):
    entries = {f"{i}.txt": os.urandom(1024) for i in range(4)}
    year = tmp_path / "2023"
    path = write_zip(year / "p.zip", entries) if kind == "zip" else write_folder(year / "p", entries)
    with pytest.raises(UnsafePackage, match=detail):
        open_package(ref_of(path), limits)
    with open_package(ref_of(path)) as pkg:  # the default limits accept the same package
        assert len(pkg.members) == 4


def test_member_bigger_than_declared_is_unsafe(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {"a.txt": b"x" * 100}, zipfile.ZIP_STORED)
    patch_headers(path, SIZE, "<I", lambda _: 10)
    with open_package(ref_of(path)) as pkg:
        assert pkg.members[0].size == 10
        with pytest.raises(UnsafePackage, match="实际大小超过声明的 10 字节"):
            pkg.read("a.txt")
        with pytest.raises(UnsafePackage, match="实际大小超过声明的 10 字节"):
            pkg.fingerprint("a.txt")


def test_lying_bomb_stops_at_its_declared_size(tmp_path):
    # 64 MiB of zeros declaring 1000 bytes: passes the central-directory checks, so reading must
    # stop right after the declared size instead of inflating the rest.
    path = write_zeros_zip(tmp_path / "2023" / "p.zip", "zeros.bin", 64 * MiB)
    with zipfile.ZipFile(path) as zf:
        real_size = zf.getinfo("zeros.bin").file_size
    patch_headers(path, SIZE, "<I", lambda size: 1000 if size == real_size else size)

    with open_package(ref_of(path)) as pkg:
        def attempt():
            with pytest.raises(UnsafePackage, match="实际大小超过声明"):
                pkg.read("zeros.bin")

        assert peak_bytes(attempt) < MiB


# --- discovery -------------------------------------------------------------------------------

def folder_hash(root: Path) -> str:
    lines = sorted(
        f"{p.relative_to(root).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in root.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_discover_lists_sorted_packages_and_skips_hidden(tmp_path):
    year = tmp_path / "2023"
    write_zip(year / "b.zip", CLEAN)
    write_zip(year / "材料.ZIP", CLEAN)
    write_folder(year / "a 文件夹", {"x.pdf": PDF, "sub/y.jpg": JPEG})
    (year / "c.rar").write_bytes(b"Rar!\x1a\x07\x00")
    for hidden in (".hidden.zip", "~$lock.xlsx", "Thumbs.db", "desktop.ini", ".DS_Store"):
        (year / hidden).write_bytes(b"x")
    (year / ".git").mkdir()
    newest = 1_700_000_000_123_456_789
    for older in ("x.pdf", "sub", ""):  # the folder itself and its subfolder count too
        os.utime(year / "a 文件夹" / older, ns=(newest - 10**9, newest - 10**9))
    os.utime(year / "a 文件夹" / "sub" / "y.jpg", ns=(newest, newest))

    refs = discover_packages(year)

    assert [(r.name, r.kind) for r in refs] == [
        ("a 文件夹", "folder"), ("b.zip", "zip"), ("c.rar", "other"), ("材料.ZIP", "zip")
    ]
    folder, b_zip = refs[0], refs[1]
    assert folder.size == len(PDF) + len(JPEG)
    assert folder.sha256 == folder_hash(year / "a 文件夹")
    assert b_zip.size == (year / "b.zip").stat().st_size
    assert b_zip.sha256 == hashlib.sha256((year / "b.zip").read_bytes()).hexdigest()
    assert folder.modified_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert folder.cache_key == ("a 文件夹", folder.size, 1_700_000_000_123_456_000)
    zip_mtime_ns = (year / "b.zip").stat().st_mtime_ns
    # Exactly the file's time, cut to the microseconds a datetime holds (a float comparison within 1 µs
    # failed at the boundary: 1796487454.78977 against 1796487454.789771).
    assert b_zip.modified_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=zip_mtime_ns // 1000)
    assert all(r.modified_at.tzinfo == UTC for r in refs)
    assert discover_packages(tmp_path / "1999") == []


def test_folder_hash_is_stable_and_content_sensitive(tmp_path):
    root = write_folder(tmp_path / "2023" / "材料", {"x.pdf": PDF, "sub/y.jpg": JPEG})
    first = ref_of(root).sha256
    assert ref_of(root).sha256 == first

    (root / "x.pdf").write_bytes(PDF.replace(b"1.7", b"1.6"))  # same size, other content
    changed = ref_of(root).sha256
    assert changed != first

    (root / "x.pdf").rename(root / "z.pdf")
    assert ref_of(root).sha256 not in (first, changed)


def test_known_hashes_skip_rehashing(tmp_path, monkeypatch):
    year = tmp_path / "2023"
    write_zip(year / "a.zip", CLEAN)
    write_zip(year / "b.zip", {"x.txt": b"x"})
    write_folder(year / "c", {"x.pdf": PDF, "y.jpg": JPEG})
    calls = []
    real_hash = packages._file_sha256
    monkeypatch.setattr(packages, "_file_sha256", lambda p: calls.append(p.name) or real_hash(p))

    first = discover_packages(year)
    assert len(calls) == 4
    known = {r.cache_key: r.sha256 for r in first}

    calls.clear()
    assert discover_packages(year, known) == first
    assert calls == []

    # The stored hash really is trusted for an unchanged key, and a changed package is rehashed.
    known[first[0].cache_key] = "f" * 64
    write_zip(year / "b.zip", {"x.txt": b"changed"})
    again = discover_packages(year, known)
    assert again[0].sha256 == "f" * 64
    assert calls == ["b.zip"] and again[1].sha256 != first[1].sha256


# --- the inbox stays untouched ---------------------------------------------------------------

def test_inbox_is_never_modified(tmp_path):
    inbox = tmp_path / "inbox"
    year = inbox / "2023"
    write_zip(year / "clean.zip", {**CLEAN, **JUNK})
    write_folder(year / "folder", {**CLEAN, **JUNK})
    write_zip(year / "evil.zip", {"../evil.txt": b"evil"})
    write_zeros_zip(year / "bomb.zip", "zeros.bin", 8 * MiB)
    (year / "corrupt.zip").write_bytes(b"PK garbage")
    write_folder(year / "linked", {"a.pdf": PDF})
    (year / "linked" / "l").symlink_to(year / "clean.zip")
    before = snapshot(inbox)

    outcomes = {}
    for ref in discover_packages(year):
        try:
            with open_package(ref) as pkg:
                for m in pkg.members:
                    pkg.read(m.path), pkg.fingerprint(m.path), pkg.find(m.path)
            outcomes[ref.name] = "ok"
        except PackageError as exc:
            outcomes[ref.name] = type(exc).__name__

    assert outcomes == {
        "bomb.zip": "UnsafePackage", "clean.zip": "ok", "corrupt.zip": "UnreadablePackage",
        "evil.zip": "UnsafePackage", "folder": "ok", "linked": "UnsafePackage",
    }
    assert snapshot(inbox) == before
    assert list(tmp_path.iterdir()) == [inbox]


# --- content type ----------------------------------------------------------------------------

def xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    openpyxl.Workbook().save(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (image_bytes("PNG"), "png"),
        (JPEG, "jpeg"),
        (image_bytes("GIF"), "gif"),
        (image_bytes("BMP"), "bmp"),
        (image_bytes("WEBP"), "webp"),
        (image_bytes("TIFF"), "tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
        (PDF, "pdf"),
        (xlsx_bytes(), "zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(8), "ole"),
        (b"MZ\x90\x00\x03", "exe"),
        (b"\x7fELF\x02\x01", "elf"),
        (b"Rar!\x1a\x07\x01\x00", "rar"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
        (b"hello, plain text", None),
        (b"", None),
    ],
)
def test_sniff(head, kind):
    assert sniff(head[:64]) == kind


def test_exe_named_jpg_is_not_ok():
    check = check_extension("照片/现场.jpg", b"MZ\x90\x00\x03\x00\x00\x00")
    assert (check.ok, check.actual_zh, check.expected_zh) == (False, "可执行程序", "JPEG 图片")


@pytest.mark.parametrize(
    ("name", "head", "actual"),
    [
        ("现场.png", image_bytes("PNG"), "PNG 图片"),
        ("现场.JPG", JPEG, "JPEG 图片"),
        ("现场.jpeg", image_bytes("PNG"), "PNG 图片"),  # a photo under another image extension
        ("总结.PDF", PDF, "PDF 文档"),
        ("基本信息.xlsx", xlsx_bytes(), "ZIP 压缩包或 Office 文档"),
    ],
)
def test_matching_content_is_ok(name, head, actual):
    check = check_extension(name, head[:64])
    assert check.ok and check.actual_zh == actual


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("总结.docx", PDF, "Word 文档"),
        ("基本信息.xls", xlsx_bytes(), "Excel 97-2003 工作簿"),
        ("总结.pdf", JPEG, "PDF 文档"),
        ("总结.pdf", b"just text", "PDF 文档"),
    ],
)
def test_mismatching_content_is_not_ok(name, head, expected):
    check = check_extension(name, head[:64])
    assert not check.ok and check.expected_zh == expected


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.pdf", "a.docx", "a.xls", "a.heic"])
def test_empty_file_is_not_ok_for_known_extensions(name):
    check = check_extension(name, b"")
    assert not check.ok and check.actual_zh == "空文件"


def test_unknown_extension_is_not_judged():
    assert check_extension("说明.txt", b"MZ\x90\x00").ok
    assert check_extension("说明.txt", b"").ok


def test_extension_check_on_a_package_member(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {"照片/1.jpg": b"MZ" + bytes(5000), "照片/2.jpg": JPEG})
    with open_package(ref_of(path)) as pkg:
        results = {m.path: check_extension(m.path, pkg.fingerprint(m.path)[0]).ok for m in pkg.members}
    assert results == {"照片/1.jpg": False, "照片/2.jpg": True}


# --- packages as units really send them (issue 11) ---------------------------------------------------

def test_folder_received_time_is_its_newest_file_not_the_folder(tmp_path):
    root = write_folder(tmp_path / "2023" / "材料", {"x.pdf": PDF, "sub/y.jpg": JPEG})
    written = 1_699_500_000_000_000_000
    copied = written + 86_400 * 10**9  # copied into the inbox a day later: folders get that time
    os.utime(root / "x.pdf", ns=(written - 10**9, written - 10**9))
    os.utime(root / "sub" / "y.jpg", ns=(written, written))
    for folder in (root / "sub", root):
        os.utime(folder, ns=(copied, copied))
    ref = ref_of(root)
    assert ref.modified_at == datetime.fromtimestamp(written / 1e9, UTC)
    assert ref.cache_key[2] == copied  # the cache still sees the copy


def test_folder_cache_notices_a_deleted_file_that_changes_neither_size_nor_newest_file(tmp_path):
    year = tmp_path / "2023"
    root = write_folder(year / "材料", {"x.pdf": PDF, "sub/空.txt": b""})
    moment = 1_699_500_000_000_000_000
    for path in (root / "x.pdf", root / "sub" / "空.txt", root / "sub", root):
        os.utime(path, ns=(moment, moment))
    first = ref_of(root)
    (root / "sub" / "空.txt").unlink()  # its folder's time changes, no file's does, nor the size
    again = discover_packages(year, {first.cache_key: first.sha256})[0]
    assert (again.modified_at, again.size) == (first.modified_at, first.size)
    assert again.sha256 != first.sha256


def test_zip_with_windows_backslash_members_reads_as_folders(tmp_path):
    path = write_zip(tmp_path / "2023" / "p.zip", {
        "材料\\": b"", "材料\\工作簿.xlsx": b"PK\x03\x04 pretend workbook", "材料\\照片\\a.jpg": JPEG})
    with open_package(ref_of(path)) as package:
        assert [m.path for m in package.members] == ["材料/工作簿.xlsx", "材料/照片/a.jpg"]
        assert package.read("材料/照片/a.jpg") == JPEG
        assert package.find("照片\\a.jpg").path == "材料/照片/a.jpg"


def test_zip_whose_only_member_is_a_zip_is_opened_one_level_down(tmp_path):
    inner = _zip_bytes(CLEAN)
    path = write_zip(tmp_path / "2023" / "p.zip", {"材料.zip": inner, **JUNK})
    with open_package(ref_of(path)) as package:
        assert sorted(m.path for m in package.members) == sorted(p for p in CLEAN)
        assert package.read("附件/工作总结.pdf") == PDF
    # Never deeper: a zip in a zip in a zip is the middle zip's single zip member, read as a file.
    deeper = write_zip(tmp_path / "2023" / "q.zip", {"外层.zip": _zip_bytes({"内层.zip": inner})})
    with open_package(ref_of(deeper)) as package:
        assert [m.path for m in package.members] == ["内层.zip"]
    # The inner zip is judged like any package: unsafe members are refused there too.
    unsafe = write_zip(tmp_path / "2023" / "r.zip", {"材料.zip": _zip_bytes({"../evil.txt": b"x"})})
    with pytest.raises(UnsafePackage, match="包外"):
        open_package(ref_of(unsafe))
    # A zip beside other files is not unwrapped.
    beside = write_zip(tmp_path / "2023" / "s.zip", {"材料.zip": inner, "说明.pdf": PDF})
    with open_package(ref_of(beside)) as package:
        assert sorted(m.path for m in package.members) == ["材料.zip", "说明.pdf"]


@pytest.mark.parametrize("inner", [_zip_bytes({}), b""], ids=["empty-inner", "zero-byte-inner"])
def test_empty_inner_zip_is_unreadable_with_clear_words(tmp_path, inner):
    path = write_zip(tmp_path / "2023" / "p.zip", {"材料.zip": inner})
    with pytest.raises(UnreadablePackage, match="为空|0 字节"):
        open_package(ref_of(path))


def test_empty_zip_and_folder_say_no_file_is_in_them(tmp_path):
    path = tmp_path / "2023" / "p.zip"
    path.parent.mkdir()
    path.write_bytes(_zip_bytes({"目录/": b""}))
    with pytest.raises(UnreadablePackage, match="压缩包为空，里面没有任何材料文件"):
        open_package(ref_of(path))
    root = tmp_path / "2023" / "空文件夹"
    (root / "子目录").mkdir(parents=True)
    with pytest.raises(UnreadablePackage, match="文件夹为空，里面没有任何材料文件"):
        open_package(ref_of(root))
