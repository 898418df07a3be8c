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
