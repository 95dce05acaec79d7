"""A folder on any filesystem: local paths, ``file://`` and every scheme pyarrow knows (``s3://``,
``gs://``, ``hdfs://``, ``abfs://``), and every scheme fsspec knows (``memory://``, ``http(s)://``,
and the ones its plug-ins add) for the rest.

Large jobs keep their images and outputs in object storage; the Ray engine reads and writes through
:class:`Storage`, which gives every filesystem the same few operations: list the images of a folder,
read a file, check that one exists and write one atomically.

* **Atomic writes.** On a local disk (a plain path or ``file://``) a file is written to a temporary
  name in the same folder and renamed (:func:`dissam.utils.atomic_write_bytes`, the rule of the local
  engine). An object store's PUT is atomic by itself: an object is there whole or not at all. Either
  way a reader never sees half a file.
* **Picklable.** A :class:`Storage` holds only its URI and opens its filesystem on first use in each
  process, so it travels to Ray workers (which then need the filesystem's credentials, as any Ray job
  does).

Names inside a folder are relative POSIX paths (``"cat_0.png"``, ``".dissam-done/cat.json"``).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any

from dissam.errors import DisSamError
from dissam.io import IMAGE_EXTENSIONS, list_images
from dissam.utils import atomic_write_bytes

__all__ = ["Storage", "is_uri", "split_uri", "read_uri_bytes"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_LOCAL_SCHEMES = ("file://", "local://")


def is_uri(text: str | os.PathLike) -> bool:
    """Whether ``text`` names a location with a scheme (``s3://bucket/x``), not a plain local path."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def split_uri(uri: str) -> tuple[str, str]:
    """``"s3://bucket/dir/cat.jpg"`` -> ``("s3://bucket/dir", "cat.jpg")`` (a plain path alike)."""
    uri = uri.rstrip("/")
    parent, _, name = uri.rpartition("/")
    if not name or (is_uri(uri) and parent.endswith(":/")):
        raise DisSamError(f"{uri!r} does not name a file")
    return parent, name


def _local_path(uri: str | os.PathLike) -> Path | None:
    """The local path of a plain path or a ``file://``/``local://`` URI, else None."""
    if not is_uri(uri):
        return Path(uri).expanduser()
    for scheme in _LOCAL_SCHEMES:
        if str(uri).startswith(scheme):
            return Path(str(uri)[len(scheme):])
    return None


def _open_filesystem(uri: str) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for a URI: pyarrow's own filesystems first, then
    fsspec's, wrapped so that both speak pyarrow's interface."""
    import pyarrow  # Ray's dependency: only the Ray engine gets here
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowInvalid, ValueError) as exc:
        pa_error = exc  # a scheme pyarrow does not know: ask fsspec
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise DisSamError(f"no filesystem for {uri!r}: pyarrow says {pa_error}; fsspec says {exc} "
                          "(install the fsspec plug-in for this scheme, e.g. s3fs or gcsfs)") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


class Storage:
    """A folder named by a local path or a URI (module docstring)."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = str(uri).rstrip("/") if is_uri(uri) else str(uri)
        self.local = _local_path(uri)
        self._fs: Any = None
        self._root = ""

    def __getstate__(self) -> dict:
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    # ------------------------------------------------------------------ paths
    def _remote(self) -> tuple[Any, str]:
        if self._fs is None:
            self._fs, self._root = _open_filesystem(self.uri)
        return self._fs, self._root

    def location(self, name: str) -> str:
        """The full path or URI of ``name`` in this folder."""
        if self.local is not None and not is_uri(self.uri):
            return str(self.local / name)
        return f"{self.uri}/{name}"

    def child(self, name: str) -> Storage:
        """The sub-folder ``name``."""
        return Storage(self.location(name))

    # ------------------------------------------------------------------ reading
    def read_bytes(self, name: str) -> bytes:
        """The bytes of ``name``; raises OSError (FileNotFoundError when it is not there)."""
        if self.local is not None:
            return (self.local / name).read_bytes()
        fs, root = self._remote()
        with fs.open_input_stream(posixpath.join(root, name)) as fh:
            return fh.read()

    def try_read(self, name: str) -> bytes | None:
        """The bytes of ``name``, or None when it cannot be read."""
        try:
            return self.read_bytes(name)
        except OSError:
            return None

    def exists(self, name: str) -> bool:
        """Whether the file ``name`` exists."""
        if self.local is not None:
            return (self.local / name).is_file()
        import pyarrow.fs as pafs

        fs, root = self._remote()
        return fs.get_file_info(posixpath.join(root, name)).type == pafs.FileType.File

    def is_folder(self) -> bool:
        """Whether this folder exists (an object store's prefix with objects under it counts)."""
        if self.local is not None:
            return self.local.is_dir()
        import pyarrow.fs as pafs

        fs, root = self._remote()
        return fs.get_file_info(root).type == pafs.FileType.Directory

    def list_images(self) -> list[str]:
        """Names of the image files directly in this folder (``dissam.io.IMAGE_EXTENSIONS``, hidden
        files skipped), sorted."""
        if self.local is not None:
            return [p.name for p in list_images(self.local)]
        import pyarrow.fs as pafs

        fs, root = self._remote()
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=False, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")
                      and posixpath.splitext(i.base_name)[1].lower() in IMAGE_EXTENSIONS)

    # ------------------------------------------------------------------ writing
    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` atomically (temporary file and rename locally; one PUT on an object store)."""
        if self.local is not None:
            atomic_write_bytes(self.local / name, data)
            return
        fs, root = self._remote()
        path = posixpath.join(root, name)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as fh:
            fh.write(data)

    def delete(self, name: str) -> None:
        """Remove ``name`` if it is there."""
        if self.local is not None:
            (self.local / name).unlink(missing_ok=True)
            return
        fs, root = self._remote()
        try:
            fs.delete_file(posixpath.join(root, name))
        except FileNotFoundError:
            pass

    def make_folder(self) -> None:
        """Create this folder (a no-op on object stores, which have no folders)."""
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            return
        fs, root = self._remote()
        fs.create_dir(root, recursive=True)


def read_uri_bytes(uri: str | os.PathLike) -> bytes:
    """The bytes of one file named by a path or URI (a prompts file in a bucket, say)."""
    if not is_uri(uri):
        return Path(uri).expanduser().read_bytes()
    parent, name = split_uri(str(uri))
    return Storage(parent).read_bytes(name)
