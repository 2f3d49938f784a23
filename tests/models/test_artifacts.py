from __future__ import annotations

import io
import os
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parity.errors import BackendNotInstalled
from parity.models import artifacts
from parity.models.artifacts import (
    ArtifactCorrupted,
    ArtifactNotFound,
    ArtifactRef,
    FsspecArtifactStore,
    InvalidArtifactRef,
    LocalArtifactStore,
    artifact_store,
)

# The FIPS 180-2 test vector: sha256("abc").
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_put_bytes_names_the_artifact_by_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    ref = store.put_bytes(b"abc")
    expected_path = tmp_path / "sha256" / "ba" / ABC_SHA256
    assert ref == ArtifactRef(expected_path.as_uri(), ABC_SHA256, 3)
    assert expected_path.read_bytes() == b"abc"
    assert store.exists(ABC_SHA256)


def test_same_bytes_are_stored_once_under_one_ref(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    source = tmp_path / "model.bin"
    source.write_bytes(b"abc")
    first = store.put_bytes(b"abc")
    second = store.put_bytes(b"abc")
    from_file = store.put_file(source)
    assert first == second == from_file
    assert stored_files(tmp_path) == [source, tmp_path / "sha256" / "ba" / ABC_SHA256]


def test_different_bytes_get_different_refs(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    assert store.put_bytes(b"abc").sha256 != store.put_bytes(b"abd").sha256
    assert len(stored_files(tmp_path)) == 2


def test_get_bytes_accepts_a_ref_or_a_digest(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    ref = store.put_bytes(b"abc")
    assert store.get_bytes(ref) == b"abc"
    assert store.get_bytes(ABC_SHA256) == b"abc"
    assert store.open_local(ref) == tmp_path / "sha256" / "ba" / ABC_SHA256


def test_put_file_streams_large_files_in_chunks(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 20_000  # about 5 MiB: several CHUNK_SIZE reads
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    store = LocalArtifactStore(tmp_path / "store")
    ref = store.put_file(source)
    assert ref.size == len(payload)
    assert store.get_bytes(ref) == payload


def test_a_failed_write_leaves_no_file_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalArtifactStore(tmp_path)
    final = tmp_path / "sha256" / "ba" / ABC_SHA256
    seen: list[list[Path]] = []

    def crash_at_fsync(fd: int) -> None:
        seen.append(stored_files(tmp_path))  # the state at the moment of the crash
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash_at_fsync)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(b"abc")
    monkeypatch.undo()

    [files_at_crash] = seen
    assert len(files_at_crash) == 1  # a temp file, in the final directory, not the final name
    assert files_at_crash[0].parent == final.parent
    assert files_at_crash[0] != final
    assert not final.exists()
    assert not store.exists(ABC_SHA256)
    assert stored_files(tmp_path) == []  # the temp file is cleaned up
    assert store.put_bytes(b"abc").sha256 == ABC_SHA256  # and a retry succeeds
    assert final.read_bytes() == b"abc"


def test_a_source_failing_mid_stream_stores_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)

    def half_then_fail() -> Iterator[bytes]:
        yield b"ab"
        raise ConnectionError("network dropped")

    with pytest.raises(ConnectionError):
        store.put_verified(ABC_SHA256, half_then_fail())
    assert not store.exists(ABC_SHA256)
    assert stored_files(tmp_path) == []


def test_bytes_that_do_not_match_the_expected_digest_are_not_stored(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactCorrupted) as error:
        store.put_verified(ABC_SHA256, [b"abd"], source="a flaky mirror")
    assert "a flaky mirror" in str(error.value)
    assert stored_files(tmp_path) == []


def test_a_flipped_byte_is_detected_on_read(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    ref = store.put_bytes(b"abc")
    flip_first_byte(tmp_path / "sha256" / "ba" / ABC_SHA256)
    with pytest.raises(ArtifactCorrupted) as error:
        store.get_bytes(ref)
    assert error.value.code == "artifact_corrupted"
    assert ABC_SHA256 in str(error.value)
    with pytest.raises(ArtifactCorrupted):
        store.open_local(ref)


def test_storing_the_bytes_again_repairs_a_corrupted_copy(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes(b"abc")
    flip_first_byte(tmp_path / "sha256" / "ba" / ABC_SHA256)
    store.put_bytes(b"abc")
    assert store.get_bytes(ABC_SHA256) == b"abc"


def test_a_missing_artifact_raises_not_found(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound) as error:
        store.get_bytes(ABC_SHA256)
    assert isinstance(error.value, KeyError)
    assert error.value.code == "artifact_not_found"
    with pytest.raises(ArtifactNotFound):
        store.open_local(ABC_SHA256)
    assert not store.exists(ABC_SHA256)


@pytest.mark.parametrize("bad", ["abc", ABC_SHA256.upper(), ABC_SHA256 + "0", "../" * 21 + "x"])
def test_a_malformed_digest_is_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArtifactRef) as error:
        LocalArtifactStore(tmp_path).get_bytes(bad)
    assert isinstance(error.value, ValueError)


def test_paths_and_file_urls_open_the_local_store(tmp_path: Path) -> None:
    by_path = artifact_store(tmp_path)
    by_url = artifact_store(tmp_path.as_uri())
    assert isinstance(by_path, LocalArtifactStore) and by_path.root == tmp_path
    assert isinstance(by_url, LocalArtifactStore) and by_url.root == tmp_path


@pytest.mark.parametrize(
    ("url", "install"),
    [
        ("memory://models", "pip install fsspec"),
        ("s3://bucket/models", "pip install fsspec s3fs"),
        ("gs://bucket/models", "pip install fsspec gcsfs"),
    ],
)
def test_a_remote_store_without_fsspec_names_the_install(
    monkeypatch: pytest.MonkeyPatch, url: str, install: str
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # what `import fsspec` sees when missing
    with pytest.raises(BackendNotInstalled) as error:
        artifact_store(url)
    assert str(error.value).endswith(install)
    assert isinstance(error.value, ImportError)


class FakeFileSystem:
    """The few fsspec filesystem methods the store uses, over a dict."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def size(self, path: str) -> int:
        return len(self.cat_file(path))

    def exists(self, path: str) -> bool:
        return path in self.files

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        pass

    def pipe_file(self, path: str, value: bytes) -> None:
        self.files[path] = bytes(value)

    def put_file(self, lpath: str, rpath: str) -> None:
        self.files[rpath] = Path(lpath).read_bytes()

    def cat_file(self, path: str) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def open(self, path: str, mode: str) -> io.BytesIO:
        assert mode == "rb"
        return io.BytesIO(self.cat_file(path))


@pytest.fixture
def fake_fsspec(monkeypatch: pytest.MonkeyPatch) -> FakeFileSystem:
    fs = FakeFileSystem()

    def url_to_fs(url: str, **options: Any) -> tuple[FakeFileSystem, str]:
        if url.startswith("s3://"):
            raise ImportError("Install s3fs to access S3")
        return fs, url.split("://", 1)[1]

    module = types.ModuleType("fsspec")
    module.core = types.SimpleNamespace(url_to_fs=url_to_fs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fsspec", module)
    return fs


def test_remote_store_keeps_one_object_per_content(
    fake_fsspec: FakeFileSystem, tmp_path: Path
) -> None:
    store = artifact_store("mem://bucket/models/", cache_dir=tmp_path / "cache")
    assert isinstance(store, FsspecArtifactStore)
    source = tmp_path / "model.bin"
    source.write_bytes(b"abc")
    ref = store.put_bytes(b"abc")
    assert store.put_file(source) == ref
    assert ref == ArtifactRef(f"mem://bucket/models/sha256/ba/{ABC_SHA256}", ABC_SHA256, 3)
    assert fake_fsspec.files == {f"bucket/models/sha256/ba/{ABC_SHA256}": b"abc"}
    assert store.exists(ref) and store.get_bytes(ABC_SHA256) == b"abc"


def test_remote_corruption_is_detected_and_never_cached(
    fake_fsspec: FakeFileSystem, tmp_path: Path
) -> None:
    store = artifact_store("mem://bucket", cache_dir=tmp_path / "cache")
    ref = store.put_bytes(b"abc")
    fake_fsspec.files[f"bucket/sha256/ba/{ABC_SHA256}"] = b"abd"
    with pytest.raises(ArtifactCorrupted):
        store.get_bytes(ref)
    with pytest.raises(ArtifactCorrupted):
        store.open_local(ref)
    assert stored_files(tmp_path) == []


def test_open_local_downloads_once_into_a_verified_cache(
    fake_fsspec: FakeFileSystem, tmp_path: Path
) -> None:
    store = artifact_store("mem://bucket", cache_dir=tmp_path / "cache")
    ref = store.put_bytes(b"abc")
    path = store.open_local(ref)
    assert path == tmp_path / "cache" / "sha256" / "ba" / ABC_SHA256
    assert path.read_bytes() == b"abc"
    fake_fsspec.files.clear()  # a cache hit does not read the remote store again
    assert store.open_local(ref) == path
    with pytest.raises(ArtifactNotFound):
        store.get_bytes(ref)


def test_a_missing_filesystem_package_names_the_install(fake_fsspec: FakeFileSystem) -> None:
    with pytest.raises(BackendNotInstalled) as error:
        artifact_store("s3://bucket/models")
    assert "pip install fsspec s3fs" in str(error.value)


def test_memory_filesystem_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    url = f"memory://parity-tests/{uuid.uuid4().hex}"
    store = artifact_store(url, cache_dir=tmp_path / "cache")
    ref = store.put_bytes(b"abc")
    assert store.put_bytes(b"abc") == ref
    assert ref.uri == f"{url}/sha256/ba/{ABC_SHA256}"
    assert store.exists(ABC_SHA256)
    assert store.get_bytes(ref) == b"abc"
    assert store.open_local(ref).read_bytes() == b"abc"
    assert artifacts.digest_of(ref) == ABC_SHA256
