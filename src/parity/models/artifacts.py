"""Artifact stores: model bytes kept by content hash, written atomically, verified on every read.

An artifact is one byte string and its id is the sha256 of exactly those bytes; a model made of
several files is packed into one byte string by its flavor. Must not import fsspec at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from parity.durable import fsync_dir
from parity.errors import (
    ArtifactCorrupted,
    ArtifactNotFound,
    BackendNotInstalled,
    ConfigError,
    InvalidArtifactRef,
)
from parity.redaction import redact
from parity.store_urls import artifacts_url_problem

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# fsspec protocols whose implementation lives in a separate package.
_PROTOCOL_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives (`uri`), its id (`sha256` of its bytes) and its size in bytes."""

    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Content-addressed storage for model artifacts: the same bytes always get the same ref."""

    def put_bytes(self, data: bytes) -> ArtifactRef: ...

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactRef: ...

    def get_bytes(self, ref: ArtifactRef | str) -> bytes: ...

    def open_local(self, ref: ArtifactRef | str) -> Path: ...

    def exists(self, ref: ArtifactRef | str) -> bool: ...


def digest_of(ref: ArtifactRef | str) -> str:
    """The sha256 hex digest an ArtifactRef or a digest string names, validated."""
    sha = ref.sha256 if isinstance(ref, ArtifactRef) else ref
    if not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha):
        raise InvalidArtifactRef(
            f"{ref!r} is not an artifact reference: pass an ArtifactRef or a sha256 hex digest "
            "(64 lowercase hex characters)"
        )
    return sha


def artifact_key(sha256: str) -> str:
    """The store-relative location of an artifact: `sha256/<first two hex digits>/<digest>`."""
    return f"sha256/{sha256[:2]}/{sha256}"


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        for chunk in read_chunks(stream):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _file_chunks(path: str | os.PathLike[str]) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        yield from read_chunks(stream)


def _corrupted(sha256: str, actual: str, where: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(
        f"artifact {sha256} at {where} is corrupted: its bytes hash to {actual}. Store the "
        "artifact again from its original (put_bytes/put_file replaces a damaged copy in place), "
        "or restore the store from a backup"
    )


def _verified(sha256: str, data: bytes, where: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise _corrupted(sha256, actual, where)
    return data


def _atomic_write(target: Path, sha256: str, chunks: Iterable[bytes], source: str) -> int:
    """Write chunks to a temp file next to `target`, fsync, check the hash, then os.replace.

    Readers see either no file or the whole verified file under `target`, never a partial one.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{sha256[:12]}.", suffix=".tmp", dir=target.parent)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            if hasattr(os, "fchmod"):  # mkstemp creates 0600; artifacts are shared read-only
                os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ArtifactCorrupted(
                f"the bytes copied from {source} hash to {digest.hexdigest()}, not to the expected "
                f"{sha256}: the source is corrupted or changed while it was read. Nothing was "
                "stored; retry, and if it repeats, store the artifact again from its original"
            )
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(target.parent)
    return size


class LocalArtifactStore:
    """Artifacts as files under `root/sha256/<ab>/<digest>`; the default, needs no server."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def path_for(self, ref: ArtifactRef | str) -> Path:
        return self.root / artifact_key(digest_of(ref))

    def _ref(self, sha256: str, size: int) -> ArtifactRef:
        return ArtifactRef(self.path_for(sha256).as_uri(), sha256, size)

    def exists(self, ref: ArtifactRef | str) -> bool:
        """Whether a file for this digest is present (not re-hashed; reads verify)."""
        return self.path_for(ref).is_file()

    def put_bytes(self, data: bytes) -> ArtifactRef:
        return self.put_verified(hashlib.sha256(data).hexdigest(), [data], source="memory")

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactRef:
        """Store a file's bytes; hashed first, so content already stored is not copied again."""
        sha256, _ = hash_file(path)
        return self.put_verified(sha256, _file_chunks(path), source=os.fspath(path))

    def put_verified(
        self, sha256: str, chunks: Iterable[bytes], *, source: str = "a stream"
    ) -> ArtifactRef:
        """Store bytes whose digest is known in advance, checked before they become visible.

        Idempotent: an intact copy is kept as is (chunks are not read); a damaged one is replaced.
        """
        target = self.path_for(sha256)
        with contextlib.suppress(FileNotFoundError):
            actual, size = hash_file(target)
            if actual == sha256:
                return self._ref(sha256, size)
            logger.warning("replacing corrupted artifact %s (hashes to %s)", target, actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = _atomic_write(target, sha256, chunks, source)
        return self._ref(sha256, size)

    def get_bytes(self, ref: ArtifactRef | str) -> bytes:
        path = self.path_for(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._not_found(digest_of(ref)) from None
        return _verified(digest_of(ref), data, str(path))

    def open_local(self, ref: ArtifactRef | str) -> Path:
        """The artifact's own file, after checking that it still hashes to its digest."""
        path = self.path_for(ref)
        try:
            actual, _ = hash_file(path)
        except FileNotFoundError:
            raise self._not_found(digest_of(ref)) from None
        if actual != digest_of(ref):
            raise _corrupted(digest_of(ref), actual, str(path))
        return path

    def _not_found(self, sha256: str) -> ArtifactNotFound:
        return ArtifactNotFound(
            f"no artifact with sha256 {sha256} in {self.root}: store it with put_bytes/put_file "
            "first, or check that the store's root is the one the model was registered with"
        )


def default_cache_dir() -> Path:
    """Where remote artifacts are cached for open_local when no cache_dir is given."""
    return Path.home() / ".cache" / "parity" / "artifacts"


def _install_hint(url: str) -> str:
    package = _PROTOCOL_PACKAGES.get(url.split("://", 1)[0].lower())
    return "pip install fsspec" + (f" {package}" if package else "")


def _import_fsspec(url: str) -> Any:
    try:
        return importlib.import_module("fsspec")
    except ImportError:
        raise BackendNotInstalled(
            f"the artifact store at {redact(url)!r} needs the fsspec package: {_install_hint(url)}"
        ) from None


class FsspecArtifactStore:
    """Artifacts in object storage or any fsspec filesystem (`s3://`, `gs://`, `memory://`, ...).

    A single PUT is atomic on object stores, so the final key is written directly; its size is
    checked before a re-upload is skipped, and every read re-hashes. `open_local` downloads into a
    LocalArtifactStore cache, verified before the cached copy becomes visible.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        **storage_options: Any,
    ) -> None:
        fsspec = _import_fsspec(url)
        try:
            self.fs, base = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as error:
            raise BackendNotInstalled(
                f"the artifact store at {redact(url)!r} needs a filesystem package ({error}): "
                f"{_install_hint(url)}"
            ) from None
        self.url = redact(url.rstrip("/"))  # shown in refs, errors and repr; fs keeps the secret
        self._base = str(base).rstrip("/")
        self.cache = LocalArtifactStore(cache_dir if cache_dir is not None else default_cache_dir())

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    def _path(self, sha256: str) -> str:
        return f"{self._base}/{artifact_key(sha256)}"

    def _ref(self, sha256: str, size: int) -> ArtifactRef:
        return ArtifactRef(f"{self.url}/{artifact_key(sha256)}", sha256, size)

    def _present(self, path: str, size: int) -> bool:
        try:
            return int(self.fs.size(path)) == size
        except FileNotFoundError:
            return False

    def exists(self, ref: ArtifactRef | str) -> bool:
        return bool(self.fs.exists(self._path(digest_of(ref))))

    def put_bytes(self, data: bytes) -> ArtifactRef:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if not self._present(path, len(data)):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, data)
        return self._ref(sha256, len(data))

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactRef:
        sha256, size = hash_file(path)
        remote = self._path(sha256)
        if not self._present(remote, size):
            self.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(os.fspath(path), remote)
        return self._ref(sha256, size)

    def get_bytes(self, ref: ArtifactRef | str) -> bytes:
        sha256 = digest_of(ref)
        try:
            data = self.fs.cat_file(self._path(sha256))
        except FileNotFoundError:
            raise self._not_found(sha256) from None
        return _verified(sha256, bytes(data), self._ref(sha256, len(data)).uri)

    def open_local(self, ref: ArtifactRef | str) -> Path:
        """A verified local copy, downloaded into the cache on first use."""
        sha256 = digest_of(ref)
        with contextlib.suppress(ArtifactNotFound, ArtifactCorrupted):
            return self.cache.open_local(sha256)
        remote = self._path(sha256)
        try:
            with self.fs.open(remote, "rb") as stream:
                self.cache.put_verified(
                    sha256, read_chunks(stream), source=self._ref(sha256, 0).uri
                )
        except FileNotFoundError:
            raise self._not_found(sha256) from None
        return self.cache.path_for(sha256)

    def _not_found(self, sha256: str) -> ArtifactNotFound:
        return ArtifactNotFound(
            f"no artifact with sha256 {sha256} in {self.url}: store it with put_bytes/put_file "
            "first, or check that the store URL is the one the model was registered with"
        )


def artifact_store(
    url: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    **storage_options: Any,
) -> ArtifactStore:
    """The store for a location: a plain path or `file://` URL gets the local store (atomic
    renames, no extra package); any other URL gets the fsspec store."""
    text = os.fspath(url)
    if "://" not in text:
        return LocalArtifactStore(text)
    if text.lower().startswith("file://"):
        return LocalArtifactStore(url2pathname(unquote(urlparse(text).path)))
    problem = artifacts_url_problem(text)
    if problem is not None:
        raise ConfigError(f"models.artifacts: {problem}")
    return FsspecArtifactStore(text, cache_dir=cache_dir, **storage_options)
