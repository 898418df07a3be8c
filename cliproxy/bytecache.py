"""Compiled modules of the zipapp, kept between runs (start-up time).

Strategy: the .pyz holds source only (one archive serves every CPython from 3.8 to 3.13,
and bytecode is specific to one), and Python's zip importer compiles every module at every
start: about 200 ms for cliproxy, most of its start-up. ``install`` puts a finder in front
of it for the ``cliproxy`` package when it runs from an archive: each module's source is
read from the archive, and its code object is loaded from a cache file named after the
source's SHA-256 and the interpreter's bytecode tag, or compiled and written there. A
changed source has another name, so a stale file is never used; a cache file that does not
load is compiled over. A cache directory that cannot be written costs nothing but the
time saved: modules compile in memory as before. The directory holds at most
``MAX_FILES`` files (a few releases' worth); after a compile, the oldest beyond that go.

Where: ``$CLIPROXY_CACHE_DIR``, else ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``),
else ``$XDG_CACHE_HOME/cliproxy`` or ``~/.cache/cliproxy``. Files are written whole under a
temporary name and renamed, so a second process never reads half a file.
"""

import hashlib
import marshal
import os
import sys
import zipimport
from importlib.machinery import ModuleSpec

_PACKAGE = "cliproxy"
_TAG = sys.implementation.cache_tag or "python"
# About 90 modules a release: room for five releases and interpreters side by side.
MAX_FILES = 500


def cache_directory(environ=os.environ):
    """Where compiled modules are kept (see the module docstring)."""
    for name in ("CLIPROXY_CACHE_DIR", "CACHE_DIRECTORY"):
        value = environ.get(name)
        if value:
            return value.split(":")[0]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cliproxy")


def install(archive, directory):
    """Serve ``cliproxy`` modules from the zip ``archive`` through the cache in
    ``directory``; returns the finder (already first in ``sys.meta_path``)."""
    finder = _CachingFinder(archive, directory)
    sys.meta_path.insert(0, finder)
    return finder


class _CachingFinder:
    """Finder and loader of the package's modules (see the module docstring). Not
    derived from ``importlib.abc``: importing that costs more start-up than it saves
    here (about 25 ms on 3.13)."""

    def __init__(self, archive, directory):
        self._archive = archive
        self._directory = directory
        self._importers = {}  # package directory in the archive -> its zipimporter
        self.compiled = 0  # modules compiled by this process (the rest came from the cache)

    def _importer(self, fullname):
        """The zip importer of ``fullname``'s directory (a zipimporter finds the last
        part of a name in the directory it was made for)."""
        directory = os.path.join(self._archive, *fullname.split(".")[:-1])
        importer = self._importers.get(directory)
        if importer is None:
            importer = self._importers[directory] = zipimport.zipimporter(directory)
        return importer

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _PACKAGE and not fullname.startswith(_PACKAGE + "."):
            return None
        try:
            package = self._importer(fullname).is_package(fullname)
        except zipimport.ZipImportError:
            return None  # not in the archive: let the other finders say so
        relative = os.path.join(*fullname.split("."))
        origin = os.path.join(self._archive, relative, "__init__.py") if package else (
            os.path.join(self._archive, relative + ".py"))
        spec = ModuleSpec(fullname, self, origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = [os.path.join(self._archive, relative)]
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        source = self._importer(module.__name__).get_source(module.__name__)
        exec(self._code(source, module.__spec__.origin), module.__dict__)

    def _code(self, source, origin):
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]
        path = os.path.join(self._directory, "%s.%s.pyc" % (digest, _TAG))
        try:
            with open(path, "rb") as handle:
                return marshal.loads(handle.read())
        except (OSError, ValueError, EOFError, TypeError):
            pass
        code = compile(source, origin, "exec", dont_inherit=True)
        self.compiled += 1
        if _write(path, marshal.dumps(code)):
            _prune(self._directory, MAX_FILES)
        return code


def _write(path, data):
    """``data`` into ``path`` atomically; False when the directory cannot take it (no
    error: the module was compiled anyway)."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
        return True
    except OSError:
        try:
            os.remove(temporary)
        except OSError:
            pass
        return False


def _prune(directory, keep):
    """Remove the oldest cache files of ``directory`` beyond the newest ``keep``."""
    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.endswith(".pyc")]
        if len(entries) <= keep:
            return
        entries.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
        for entry in entries[keep:]:
            os.remove(entry.path)
    except OSError:
        pass
