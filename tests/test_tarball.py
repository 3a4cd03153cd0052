"""Reproducible release tarballs, and refusing malicious ones (``zooforge.artifacts.release.tarball``)."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from zooforge.artifacts.release import tarball
from zooforge.artifacts.release.tarball import UnsafeArchiveError, list_members, safe_extract, write_tarball
from zooforge.converters.errors import InputFileError

EPOCH = 1_700_000_000
TOP = "bvlc_alexnet"


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Three source files; the model spans several 1 MiB compression blocks."""
    folder = tmp_path / "sources"
    folder.mkdir()
    rng = np.random.default_rng(7)
    payloads = {
        "model.onnx": rng.standard_normal(3 * 2**18 + 1000, dtype=np.float32).tobytes(),
        "input_0.pb": b"\x08\x01" * 100,
        "test_data_0.npz": bytes(range(256)) * 10,
    }
    for name, payload in payloads.items():
        (folder / name).write_bytes(payload)
    return {name: folder / name for name in payloads}


def layout(sources: dict[str, Path]) -> list[tuple[str, Path]]:
    return [
        ("test_data_set_0/input_0.pb", sources["input_0.pb"]),
        ("model.onnx", sources["model.onnx"]),
        ("test_data_0.npz", sources["test_data_0.npz"]),
    ]


def build(tmp_path: Path, sources, name: str = "out.tar.gz", **options) -> bytes:
    path = tmp_path / name
    files = options.pop("files", None) or layout(sources)
    write_tarball(path, TOP, files, mtime=options.pop("mtime", EPOCH), **options)
    return path.read_bytes()


# ------------------------------------------------------------------------------- reproducibility


def test_same_inputs_give_the_same_bytes(tmp_path, sources):
    assert build(tmp_path, sources, "a.tar.gz") == build(tmp_path, sources, "b.tar.gz")


def test_thread_count_does_not_change_the_bytes(tmp_path, sources):
    one = build(tmp_path, sources, "one.tar.gz", threads=1)
    assert build(tmp_path, sources, "two.tar.gz", threads=2) == one
    assert build(tmp_path, sources, "three.tar.gz", threads=3) == one


def test_a_different_mtime_gives_different_bytes(tmp_path, sources):
    assert build(tmp_path, sources, "a.tar.gz") != build(tmp_path, sources, "b.tar.gz",
                                                          mtime=EPOCH + 1)


def test_the_order_files_are_given_in_does_not_matter(tmp_path, sources):
    files = layout(sources)
    assert (build(tmp_path, sources, "a.tar.gz", files=files)
            == build(tmp_path, sources, "b.tar.gz", files=files[::-1]))


def test_source_names_and_mtimes_do_not_leak_in(tmp_path, sources):
    first = build(tmp_path, sources, "a.tar.gz")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    copies = {}
    for name, path in sources.items():
        copies[name] = moved / f"renamed-{name}"
        copies[name].write_bytes(path.read_bytes())
        os.utime(copies[name], (12345, 12345))
    assert build(tmp_path, copies, "b.tar.gz") == first


# ------------------------------------------------------------------------------ content and form


def test_members_are_sorted_with_a_folder_entry_for_every_level(tmp_path, sources):
    build(tmp_path, sources)
    assert list_members(tmp_path / "out.tar.gz") == [
        TOP, f"{TOP}/model.onnx", f"{TOP}/test_data_0.npz", f"{TOP}/test_data_set_0",
        f"{TOP}/test_data_set_0/input_0.pb",
    ]
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        assert tar.getnames() == sorted(tar.getnames())  # stored order, not just the listing


def test_member_metadata_is_fixed(tmp_path, sources):
    build(tmp_path, sources)
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        members = tar.getmembers()
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == EPOCH and isinstance(member.mtime, int)
        assert member.pax_headers == {}  # no atime/ctime, no fractional mtime
        if member.isdir():
            assert member.mode == 0o755
        else:
            assert member.isreg() and member.mode == 0o644


def test_the_tar_layer_is_ustar_headers_with_no_extended_records(tmp_path, sources):
    import gzip

    raw = gzip.decompress(build(tmp_path, sources))
    assert raw[257:265] == b"ustar\x0000"  # POSIX magic + version, as PAX_FORMAT writes it
    assert b"PaxHeader" not in raw and b"@LongLink" not in raw
    assert len(raw) % tarfile.RECORDSIZE == 0


def test_gzip_header_has_mtime_zero_and_no_file_name(tmp_path, sources):
    data = build(tmp_path, sources)
    magic, method, flags, mtime = struct.unpack("<HBBI", data[:8])
    assert magic == 0x8B1F and method == 8
    assert flags & 0x08 == 0, "FNAME bit set"
    assert flags == 0
    assert mtime == 0


def test_safe_extract_gives_back_the_sources(tmp_path, sources):
    build(tmp_path, sources)
    dest = tmp_path / "dest"
    extracted = safe_extract(tmp_path / "out.tar.gz", dest)
    # Expected members by hand from layout(): the top folder, one entry per intermediate folder, the files
    members = [TOP, f"{TOP}/model.onnx", f"{TOP}/test_data_0.npz", f"{TOP}/test_data_set_0",
               f"{TOP}/test_data_set_0/input_0.pb"]
    assert extracted == [dest / name for name in members]  # sorted, one path per member
    with tarfile.open(tmp_path / "out.tar.gz") as tar:  # the stdlib's own reading of the archive
        assert sorted(tar.getnames()) == members
    top = dest / TOP
    assert sorted(p.name for p in top.iterdir()) == [
        "model.onnx", "test_data_0.npz", "test_data_set_0"]
    for relative, source in layout(sources):
        assert (top / relative).read_bytes() == source.read_bytes()


def test_stdlib_fallback_is_deterministic_with_the_same_header_rules(tmp_path, sources,
                                                                     monkeypatch):
    isal_bytes = build(tmp_path, sources, "isal.tar.gz")
    monkeypatch.setattr(tarball, "_isal_threaded", None)
    first = build(tmp_path, sources, "a.tar.gz")
    assert build(tmp_path, sources, "b.tar.gz", threads=1) == first
    assert first != isal_bytes  # documented: a different compressor, different bytes
    _, _, flags, mtime = struct.unpack("<HBBI", first[:8])
    assert flags & 0x08 == 0 and mtime == 0
    dest = tmp_path / "dest"
    safe_extract(tmp_path / "a.tar.gz", dest)
    assert (dest / TOP / "model.onnx").read_bytes() == sources["model.onnx"].read_bytes()


def test_a_missing_source_leaves_no_file_behind(tmp_path, sources):
    files = [*layout(sources), ("extra.bin", tmp_path / "missing.bin")]
    with pytest.raises(InputFileError, match="missing.bin"):
        write_tarball(tmp_path / "out.tar.gz", TOP, files, mtime=EPOCH)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sources"]


@pytest.mark.parametrize("relative", ["../evil", "/abs", "a//b", "./a", "a/./b", ""])
def test_write_tarball_rejects_non_plain_member_names(tmp_path, sources, relative):
    with pytest.raises(ValueError):
        write_tarball(tmp_path / "out.tar.gz", TOP, [(relative, sources["model.onnx"])],
                      mtime=EPOCH)


def test_write_tarball_rejects_duplicates_and_file_folder_clashes(tmp_path, sources):
    model = sources["model.onnx"]
    for files in ([("a", model), ("a", model)], [("a", model), ("a/b", model)],
                  [("a/b", model), ("a", model)]):
        with pytest.raises(ValueError):
            write_tarball(tmp_path / "out.tar.gz", TOP, files, mtime=EPOCH)


@pytest.mark.parametrize("top", ["", ".", "..", "a/b"])
def test_write_tarball_rejects_a_bad_top_folder(tmp_path, sources, top):
    with pytest.raises(ValueError):
        write_tarball(tmp_path / "out.tar.gz", top, layout(sources), mtime=EPOCH)


# --------------------------------------------------------------------------- malicious archives

EVIL_ABSOLUTE = f"/tmp/zooforge-evil-{uuid.uuid4().hex}"


def _file(name: str, payload: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, io.BytesIO(payload)


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as read, so the test never holds them all."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _big_zeros(name: str, size: int) -> tuple[tarfile.TarInfo, io.RawIOBase]:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, _Zeros(size)


OK = _file("top/ok.txt", b"fine\n")

# name -> (members after a benign first one, offending member name, safe_extract options)
MALICIOUS = {
    "traversal": ([_file("../evil", b"x")], "../evil", {}),
    "nested_traversal": ([_file("top/../../evil", b"x")], "top/../../evil", {}),
    "absolute": ([_file(EVIL_ABSOLUTE, b"x")], EVIL_ABSOLUTE, {}),
    "symlink": ([_special("top/link", tarfile.SYMTYPE, "/etc/passwd")], "top/link", {}),
    "relative_symlink": ([_special("top/up", tarfile.SYMTYPE, "..")], "top/up", {}),
    "hardlink": ([_special("top/hard", tarfile.LNKTYPE, "top/ok.txt")], "top/hard", {}),
    "fifo": ([_special("top/fifo", tarfile.FIFOTYPE)], "top/fifo", {}),
    "char_device": ([_special("top/null", tarfile.CHRTYPE)], "top/null", {}),
    "block_device": ([_special("top/sda", tarfile.BLKTYPE)], "top/sda", {}),
    "oversize": ([_file("top/a.bin", bytes(600)), _file("top/b.bin", bytes(600))], "top/b.bin",
                 {"max_bytes": 1000}),
    "gzip_bomb": ([_big_zeros("top/zeros.bin", 16 * 2**20)], "top/zeros.bin",
                  {"max_bytes": 2**20}),
    "too_many_members": ([_file(f"top/{i}.txt", b"") for i in range(4)], "top/3.txt",
                         {"max_members": 4}),
    "duplicate": ([_file("top/ok.txt", b"again")], "top/ok.txt", {}),
}


def _write_archive(path: Path, members, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, payload in [OK, *members]:
            if isinstance(payload, io.BytesIO):
                payload.seek(0)
            elif isinstance(payload, _Zeros):
                payload.left = info.size
            tar.addfile(info, payload)
    return path


def _snapshot(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("dest_exists", [False, True], ids=["new_dest", "empty_dest"])
@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archive_is_refused_and_nothing_is_written(tmp_path, case, dest_exists):
    members, offender, options = MALICIOUS[case]
    archive = _write_archive(tmp_path / f"{case}.tar.gz", members)
    parent = tmp_path / "out"
    parent.mkdir()
    dest = parent / "dest"
    if dest_exists:
        dest.mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest, **options)
    message = str(caught.value)
    assert repr(offender) in message and str(archive) in message
    assert "\n" not in message
    assert _snapshot(tmp_path) == before  # nothing in dest, nothing beside it, no temp folder
    assert not os.path.lexists(EVIL_ABSOLUTE)


@pytest.mark.parametrize("order", ["file_first", "nested_first"])
@pytest.mark.parametrize("dest_exists", [False, True], ids=["new_dest", "empty_dest"])
def test_member_inside_a_file_is_refused_before_anything_is_written(tmp_path, monkeypatch, order, dest_exists):
    """Member ``top/a`` is a regular file and ``top/a/b`` claims it as its folder, in either order:
    safe_extract's docstring promises every member is checked before anything is written, so
    the refusal names both members and no member is ever extracted."""
    members = [_file("top/a", b"file"), _file("top/a/b", b"nested")]
    archive = _write_archive(tmp_path / "nested.tar.gz", members if order == "file_first" else members[::-1])
    dest = tmp_path / "out" / "dest"
    dest.parent.mkdir()
    if dest_exists:
        dest.mkdir()
    extracted = []
    extract = tarball._extract_member
    monkeypatch.setattr(tarball, "_extract_member",
                        lambda tar, member, *rest: (extracted.append(member.name), extract(tar, member, *rest)))
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest)
    assert str(caught.value) == f"{archive} holds member 'top/a/b' inside 'top/a', which is a file"
    assert extracted == []
    assert _snapshot(tmp_path) == before


def test_the_bytes_written_guard_catches_what_the_declared_sizes_missed(tmp_path, monkeypatch):
    archive = _write_archive(tmp_path / "bomb.tar.gz", [_big_zeros("top/zeros.bin", 4 * 2**20)])
    checked = tarball._checked_members
    monkeypatch.setattr(tarball, "_checked_members",
                        lambda tar, path, max_bytes, max_members:
                        checked(tar, path, 2**62, max_members))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="'top/zeros.bin'"):
        safe_extract(archive, dest, max_bytes=2**20)
    assert _snapshot(tmp_path) == ["bomb.tar.gz"]  # the half-extracted folder is gone


def test_plain_tar_and_the_no_filter_path_extract_the_same(tmp_path, monkeypatch):
    archive = _write_archive(tmp_path / "plain.tar", [_file("top/sub/x.bin", b"\x01\x02")], "w")
    first = safe_extract(archive, tmp_path / "a")
    monkeypatch.setattr(tarball, "_HAVE_DATA_FILTER", False)
    second = safe_extract(archive, tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second]
    assert (tmp_path / "b/top/sub/x.bin").read_bytes() == b"\x01\x02"
    evil = _write_archive(tmp_path / "evil.tar", [_file("../evil", b"x")], "w")
    with pytest.raises(UnsafeArchiveError, match="'../evil'"):
        safe_extract(evil, tmp_path / "c")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "c").exists()


def test_safe_extract_adds_beside_existing_content_but_never_overwrites(tmp_path):
    archive = _write_archive(tmp_path / "a.tar.gz", [])
    dest = tmp_path / "dest"
    (dest / "other").mkdir(parents=True)
    assert safe_extract(archive, dest) == [dest / "top/ok.txt"]  # members only
    assert (dest / "other").is_dir()
    with pytest.raises(InputFileError, match="already exists"):
        safe_extract(archive, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "dest"]


def test_a_corrupt_archive_is_an_input_file_error(tmp_path):
    archive = _write_archive(tmp_path / "a.tar.gz", [_file("top/b.bin", os.urandom(50_000))])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:20_000])
    for path in (truncated, tmp_path / "missing.tar.gz"):
        with pytest.raises(InputFileError) as caught:
            safe_extract(path, tmp_path / "dest")
        assert not isinstance(caught.value, UnsafeArchiveError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "truncated.tar.gz"]
