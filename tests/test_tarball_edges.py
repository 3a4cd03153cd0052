"""The edges of ``zooforge.artifacts.release.tarball``: argument limits at their bounds, every refusal's sentence,
name normalisation, the modes extraction leaves, and the byte format pinned by digest.

Written against the mutants mutation testing left alive (``scripts/mutation.py --group tarball``).
Expected modes come from Python's documented ``tarfile.data_filter`` (setuid/setgid/sticky and
group/other write bits cleared) and from POSIX ``mkdir`` (0o777 minus the umask).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest

from zooforge.artifacts.release import tarball
from zooforge.artifacts.release.tarball import UnsafeArchiveError, safe_extract, write_tarball
from zooforge.converters.errors import InputFileError

# The limits written by hand, not imported from the code under test:
MTIME_LIMIT = 8589934591  # 8**11 - 1: the largest value ustar's 11-octal-digit mtime field holds
DEPTH_LIMIT = 32          # folders in a member's path
NAME_LIMIT = 1024         # characters in a member's path (well under Linux's PATH_MAX of 4096)


def test_the_module_limits_are_the_hand_written_ones():
    """The one place the module's constants are read: they must equal the literals above."""
    assert (tarball.MAX_MTIME, tarball.MAX_DEPTH, tarball.MAX_NAME_LENGTH) == (MTIME_LIMIT, DEPTH_LIMIT, NAME_LIMIT)
    assert MTIME_LIMIT == int("7" * 11, 8)


def _archive(path: Path, members: list[tuple[str, bytes | None]], *, modes: dict[str, int] | None = None,
             mode: str = "w:gz") -> Path:
    """A tar (``None`` payload = folder) written by tarfile itself, not by the code under test."""
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(payload), (modes or {}).get(name, 0o644)
                tar.addfile(info, io.BytesIO(payload))
    return path


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly this sentence."""
    return f"^{re.escape(message)}$"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "a.bin"
    path.write_bytes(b"payload")
    return path


# --------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("mtime", [0, MTIME_LIMIT])
def test_mtime_bounds_are_accepted_and_written(tmp_path, source, mtime):
    out = tmp_path / "t.tar.gz"
    write_tarball(out, "top", [("a.bin", source)], mtime=mtime)
    with tarfile.open(out) as tar:
        assert {m.mtime for m in tar.getmembers()} == {mtime}


@pytest.mark.parametrize("mtime", [-1, MTIME_LIMIT + 1, True, 1.0, "0"])
def test_mtime_outside_the_bounds_is_refused_by_name(tmp_path, source, mtime):
    with pytest.raises(ValueError, match=exactly(f"mtime must be an integer from 0 to {MTIME_LIMIT}, got {mtime!r}")):
        write_tarball(tmp_path / "t.tar.gz", "top", [("a.bin", source)], mtime=mtime)
    assert list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_bad_thread_counts_are_refused_by_name(tmp_path, source, threads):
    with pytest.raises(ValueError, match=exactly(f"threads must be a positive integer, got {threads!r}")):
        write_tarball(tmp_path / "t.tar.gz", "top", [("a.bin", source)], mtime=0, threads=threads)


@pytest.mark.parametrize("top", ["a\\b", "", ".."])
def test_a_bad_top_folder_is_named(tmp_path, source, top):
    with pytest.raises(ValueError, match=exactly(f"the tarball's top folder must be one plain name, got {top!r}")):
        write_tarball(tmp_path / "t.tar.gz", top, [("a.bin", source)], mtime=0)


@pytest.mark.parametrize("relative", ["a\\b", "x/../y", "x//y"])
def test_a_bad_member_name_is_named(tmp_path, source, relative):
    with pytest.raises(ValueError, match=exactly(f"tarball member {relative!r} is not a plain relative path")):
        write_tarball(tmp_path / "t.tar.gz", "top", [(relative, source)], mtime=0)


def test_duplicates_and_file_folder_clashes_are_named(tmp_path, source):
    with pytest.raises(ValueError, match=r"^tarball member 'a' is given twice \(or is also a folder\)$"):
        write_tarball(tmp_path / "t.tar.gz", "top", [("a", source), ("a", source)], mtime=0)
    with pytest.raises(ValueError, match=r"^tarball member 'd/e' is both a file and the folder of 'd/e/f'$"):
        write_tarball(tmp_path / "t.tar.gz", "top", [("d/e", source), ("d/e/f", source)], mtime=0)


def test_a_source_that_is_a_folder_is_named_with_its_member(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    with pytest.raises(InputFileError, match=exactly(f"cannot add {folder} to a tarball as top/x.bin: Is a directory")):
        write_tarball(tmp_path / "t.tar.gz", "top", [("x.bin", folder)], mtime=0)


def test_non_ascii_names_are_utf8_in_pax_records(tmp_path, source):
    out = tmp_path / "t.tar.gz"
    write_tarball(out, "top", [("données/é.bin", source)], mtime=0)
    with tarfile.open(out, encoding="latin-1") as tar:  # pax path records are UTF-8 whatever we ask
        assert "top/données/é.bin" in tar.getnames()


# The byte format pinned: the tarball of one fixed 3 MiB + 1 file at mtime 0, per ISA-L version
# (whose deflate output the format depends on; README: pin isal to reproduce published checksums).
# The expected digest was recorded when the format was fixed; it is the one expected value here
# that comes from the code itself, because the contract is "the same bytes as before".
PINNED = {"1.9.1": "0f4a8c3b1d2da6a6fbd45f939cdaa1218749f4815c4a1659f8dc5c531972903d"}


def test_the_byte_format_is_pinned(tmp_path):
    isal = pytest.importorskip("isal")
    payload = hashlib.shake_256(b"zooforge tarball format").digest(3 * 2**20 + 1)
    (tmp_path / "w.bin").write_bytes(payload)
    out = tmp_path / "t.tar.gz"
    write_tarball(out, "top", [("sub/w.bin", tmp_path / "w.bin")], mtime=0)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert isal.__version__ in PINNED, f"no pinned digest for isal {isal.__version__}; this one gives {digest}"
    assert digest == PINNED[isal.__version__]


# ------------------------------------------------------------------------------------ extracting


def test_declared_sizes_add_up_to_exactly_the_limit(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/a", b"12345"), ("top/b", b"67890")])
    assert len(safe_extract(archive, tmp_path / "ok", max_bytes=10)) == 2
    with pytest.raises(UnsafeArchiveError, match=r"declares more than 9 bytes in total by member 'top/b'"):
        safe_extract(archive, tmp_path / "refused", max_bytes=9)
    assert not (tmp_path / "refused").exists()


def test_the_default_member_limit_is_ten_thousand(tmp_path):
    archive = _archive(tmp_path / "many.tar", [(f"t/{i}", b"") for i in range(10001)], mode="w")
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 10000 members \(refused at member 't/10000'\)"):
        safe_extract(archive, tmp_path / "dest")


def test_an_archive_root_entry_is_skipped_not_the_end(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("./", None), ("./top/a", b"a"), ("top//b", b"b")])
    dest = tmp_path / "dest"
    assert safe_extract(archive, dest) == [dest / "top/a", dest / "top/b"]


def test_a_one_character_name_extracts(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("a", b"x")])
    assert safe_extract(archive, tmp_path / "dest") == [tmp_path / "dest/a"]


@pytest.mark.parametrize("name, why", [
    ("C:evil", "with an absolute path"), ("c:/evil", "with an absolute path"), ("\\evil", "with an absolute path"),
    ("top\\..\\evil", "whose path climbs out with '..'"), ("top/\u00e9\x00ul", "with a NUL in its name"),  # pax record: tar headers end at a NUL
])
def test_windows_and_nul_names_are_refused_by_name(tmp_path, name, why):
    archive = _archive(tmp_path / "a.tar", [(name, b"x")], mode="w")
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "dest")
    assert str(caught.value) == f"{archive} holds member {name!r} {why}"


def test_a_drive_like_name_whose_first_character_is_no_letter_is_plain(tmp_path):
    archive = _archive(tmp_path / "a.tar", [("1:x", b"x")], mode="w")
    assert safe_extract(archive, tmp_path / "dest") == [tmp_path / "dest/1:x"]


@pytest.mark.parametrize("depth, accepted", [(DEPTH_LIMIT, True), (DEPTH_LIMIT + 1, False)])
def test_depth_limit(tmp_path, depth, accepted):
    name = "/".join(["d"] * depth)
    archive = _archive(tmp_path / "a.tar", [(name, b"x")], mode="w")
    if accepted:
        assert safe_extract(archive, tmp_path / "dest") == [tmp_path / "dest" / name]
    else:
        with pytest.raises(UnsafeArchiveError, match=rf"holds a member {depth} folders deep and {len(name)} "
                           rf"characters long \(at most {DEPTH_LIMIT} and {NAME_LIMIT}, 255 bytes per name\)"):
            safe_extract(archive, tmp_path / "dest")


def test_name_length_limit(tmp_path):
    exact = "/".join(["p" * 250] * 4 + ["q" * (NAME_LIMIT - 4 * 251)])
    assert len(exact) == NAME_LIMIT
    archive = _archive(tmp_path / "a.tar", [(exact, b"x")], mode="w")
    assert len(safe_extract(archive, tmp_path / "dest")) == 1
    longer = _archive(tmp_path / "b.tar", [(exact + "r", b"x")], mode="w")
    with pytest.raises(UnsafeArchiveError, match=rf"{NAME_LIMIT + 1} characters long"):
        safe_extract(longer, tmp_path / "dest2")


@pytest.mark.parametrize("length, accepted", [(255, True), (256, False)])
def test_a_path_component_is_at_most_255_bytes(tmp_path, length, accepted):
    name = "top/" + "é" * (length // 2) + "x" * (length % 2)  # two bytes a character in UTF-8
    archive = _archive(tmp_path / "a.tar", [(name, b"x")], mode="w")
    if accepted:
        assert len(safe_extract(archive, tmp_path / "dest")) == 1
    else:
        with pytest.raises(UnsafeArchiveError, match="255 bytes per name"):
            safe_extract(archive, tmp_path / "dest")


@pytest.mark.parametrize("kind, linkname, sentence", [
    (tarfile.SYMTYPE, "/etc/passwd", "a symbolic link to '/etc/passwd'"),
    (tarfile.LNKTYPE, "top/x", "a hard link to 'top/x'"),
    (tarfile.CHRTYPE, "", "a device node"),
    (tarfile.BLKTYPE, "", "a device node"),
    (tarfile.FIFOTYPE, "", "a FIFO"),
    (tarfile.GNUTYPE_SPARSE, "", "a sparse file"),
    (b"Z", "", "of unsupported type b'Z'"),
])
def test_every_refused_member_type_is_named(tmp_path, kind, linkname, sentence):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("top/m")
        info.type, info.linkname = kind, linkname
        tar.addfile(info)
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "dest")
    assert str(caught.value) == f"{archive} holds member 'top/m', which is {sentence}"


@pytest.mark.parametrize("filtered", [True, False], ids=["data_filter", "no_filter_python"])
def test_extracted_modes_drop_setuid_and_foreign_write_bits(tmp_path, monkeypatch, filtered):
    monkeypatch.setattr(tarball, "_HAVE_DATA_FILTER", filtered)
    archive = _archive(tmp_path / "a.tar.gz", [("top/run", b"#!"), ("top/data", b"d")],
                       modes={"top/run": 0o4777, "top/data": 0o666})
    dest = tmp_path / "dest"
    safe_extract(archive, dest)
    assert stat.S_IMODE((dest / "top/run").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "top/data").stat().st_mode) == 0o644
    assert (dest / "top/run").stat().st_uid == os.getuid()


def test_a_new_destination_gets_the_mode_mkdir_would_give(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/a", b"a")])
    safe_extract(archive, tmp_path / "dest")
    assert stat.S_IMODE((tmp_path / "dest").stat().st_mode) == 0o777 & ~_umask()


def test_extraction_stages_in_a_hidden_sibling(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "a.tar.gz", [("top/a", b"a")])
    staged = []
    move = tarball._move_into
    monkeypatch.setattr(tarball, "_move_into", lambda staging, dest: (staged.append(staging), move(staging, dest)))
    safe_extract(archive, tmp_path / "dest")
    (staging,) = staged
    assert staging.parent == tmp_path and staging.name.startswith(".dest.") and staging.name.endswith(".extracting")


def test_an_existing_top_folder_is_never_merged_into(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/new", b"a")])
    dest = tmp_path / "dest"
    (dest / "top").mkdir(parents=True)
    with pytest.raises(InputFileError) as caught:
        safe_extract(archive, dest)
    assert str(caught.value) == f"cannot extract {archive} into {dest}: {dest / 'top'} already exists"
    assert list((dest / "top").iterdir()) == []


def test_destination_errors_name_archive_and_folder(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/a", b"a")])
    with pytest.raises(InputFileError) as caught:
        safe_extract(archive, tmp_path / "no" / "dest")
    assert str(caught.value) == f"cannot extract {archive}: the folder {tmp_path / 'no'} does not exist"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InputFileError) as caught:
        safe_extract(archive, tmp_path / "file")
    assert str(caught.value) == f"cannot extract {archive} into {tmp_path / 'file'}: it is not a folder"


def test_a_truncated_archive_is_named(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("top/b", os.urandom(50_000))])
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:20_000])
    with pytest.raises(InputFileError, match=rf"^{truncated} is corrupt or truncated: "):
        tarball.list_members(truncated)
    with pytest.raises(InputFileError, match=rf"^{truncated} is corrupt or truncated: "):
        safe_extract(truncated, tmp_path / "dest")


def test_a_member_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "a.tar.gz", [("top/a", b"a")])

    def refuse(*_args) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tarball, "_extract_member", refuse)
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "dest")
    assert str(caught.value) == f"{archive}: member 'top/a' cannot be extracted (Permission denied)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_a_member_inside_a_top_level_file_is_refused_before_anything_is_written(tmp_path):
    archive = _archive(tmp_path / "a.tar", [("a", b"file"), ("a/b", b"nested")], mode="w")
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "dest")
    assert str(caught.value) == f"{archive} holds member 'a/b' inside 'a', which is a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]
