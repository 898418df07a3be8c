"""The single-file build: reproducible, self-contained, runnable anywhere."""

import os
import subprocess
import sys
import zipfile

import build_zipapp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_builds_are_byte_identical():
    assert build_zipapp.build_archive(ROOT) == build_zipapp.build_archive(ROOT)


def test_archive_has_a_shebang_compressed_sources_and_no_bytecode(tmp_path):
    data = build_zipapp.build_archive(ROOT)
    assert data.startswith(b"#!/usr/bin/env python3\n")
    path = tmp_path / "cliproxy.pyz"
    path.write_bytes(data)
    with zipfile.ZipFile(str(path)) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names[0] == "__main__.py"
    assert "cliproxy/app.py" in names and "cliproxy/http/parser.py" in names
    assert not [name for name in names if name.endswith(".pyc") or name.startswith("tests/")]
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
    assert {info.date_time for info in infos} == {build_zipapp.FIXED_TIME}


def test_build_script_writes_an_executable_pyz(tmp_path):
    output = tmp_path / "out" / "cliproxy.pyz"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", str(output)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert os.access(str(output), os.X_OK)


def test_pyz_runs_from_a_directory_with_no_source_tree(tmp_path):
    path = tmp_path / "cliproxy.pyz"
    path.write_bytes(build_zipapp.build_archive(ROOT))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # -I: isolated mode, so neither the checkout nor site-packages can supply the package.
    result = subprocess.run(
        [sys.executable, "-I", str(path), "check"], cwd=str(tmp_path), capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "built-in defaults" in result.stdout


def test_no_module_holds_a_string_that_cannot_be_utf8():
    # Python 3.13's zipimport compiles a module from UTF-8 text it re-encodes: a lone
    # surrogate in any string constant (say, an unescaped "\ud800" in a docstring) makes
    # the whole .pyz fail to start there, while every other interpreter runs it.
    import ast
    import pathlib

    bad = []
    for path in sorted(pathlib.Path(ROOT, "cliproxy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    node.value.encode("utf-8")
                except UnicodeEncodeError:
                    bad.append("%s:%d" % (path.relative_to(ROOT), node.lineno))
    assert bad == []


def _pyz(tmp_path):
    path = tmp_path / "cliproxy.pyz"
    path.write_bytes(build_zipapp.build_archive(ROOT))
    return str(path)


def _check(pyz, tmp_path, cache):
    import json
    import subprocess
    import sys

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ampcode": {"upstream-url": ""}, "logs-dir": str(tmp_path / "logs")}))
    env = dict(os.environ, CLIPROXY_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, pyz, "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, env=env)


def test_the_pyz_keeps_its_compiled_modules_between_runs(tmp_path):
    pyz, cache = _pyz(tmp_path), tmp_path / "cache"
    assert _check(pyz, tmp_path, cache).returncode == 0
    files = sorted(cache.iterdir())
    assert len(files) > 5 and all(f.name.endswith(".pyc") for f in files)
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    assert _check(pyz, tmp_path, cache).returncode == 0
    assert {f.name: f.stat().st_mtime_ns for f in cache.iterdir()} == stamps, "the second run compiled nothing"


def test_a_broken_cache_file_is_compiled_over_and_an_unwritable_cache_is_no_error(tmp_path):
    pyz, cache = _pyz(tmp_path), tmp_path / "cache"
    _check(pyz, tmp_path, cache)
    victim = sorted(cache.iterdir())[0]
    victim.write_bytes(b"not bytecode")
    done = _check(pyz, tmp_path, cache)
    assert done.returncode == 0 and "ok:" in done.stdout
    assert victim.read_bytes() != b"not bytecode"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _check(pyz, tmp_path, blocker / "cache")
    assert done.returncode == 0 and "ok:" in done.stdout and "Traceback" not in done.stderr
