"""The README's systemd install commands (issue 11), run as pasted, into a temporary root.

The commands are read from README.md itself (the ``sh`` block of "Under systemd"), so this
fails when the README drifts. They run in a copy of the repository with ``bash -e`` under
the strictest umask, with every absolute path of the target host (``/opt``, ``/etc``,
``/var``) moved under a temporary root that holds what a Debian host has there already,
and ``systemctl`` replaced by a stub that records its arguments. Then the result is
checked: files, modes, the unit's paths, a config that passes ``check``, and a second
run (an upgrade) that keeps the config.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from tests.support.unitfile import ROOT, exec_start, read_unit, rooted

README = os.path.join(ROOT, "README.md")
HOST_DIRECTORIES = ("opt", "etc/systemd/system", "var/lib", "var/log", "usr/bin")
# Absolute paths of the target host, not of this machine: moved under the test root.
HOST_PATH = re.compile(r"(?<![\w./$-])/(opt|etc|var)/")


def readme_commands():
    text = open(README, encoding="utf-8").read()
    section = text.split("\n## Under systemd\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "README's 'Under systemd' lost its sh block"
    return blocks[0]


def rerooted(commands, root):
    return HOST_PATH.sub(lambda m: "%s/%s/" % (root, m.group(1)), commands)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """What the commands need from the repository: the build script, the package and
    contrib/ (``python3 build_zipapp.py`` then builds into this copy's dist/)."""
    target = tmp_path_factory.mktemp("checkout")
    shutil.copy(os.path.join(ROOT, "build_zipapp.py"), str(target))
    for name in ("cliproxy", "contrib"):
        shutil.copytree(os.path.join(ROOT, name), str(target / name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


class Install:
    def __init__(self, tmp_path, checkout):
        self.root = str(tmp_path / "root")
        for directory in HOST_DIRECTORIES:
            os.makedirs(os.path.join(self.root, directory), mode=0o755)
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.calls = tmp_path / "systemctl.calls"
        stub = self.bin / "systemctl"
        stub.write_text('#!/bin/sh\necho "$*" >> %s\n' % self.calls)
        stub.chmod(0o755)
        os.symlink(sys.executable, str(self.bin / "python3"))
        self.checkout = str(checkout)
        self.script = "umask 077\n" + rerooted(readme_commands(), self.root)

    def run(self):
        environment = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ.get("PATH", "")))
        return subprocess.run(["bash", "-euo", "pipefail", "-c", self.script], cwd=self.checkout,
                              env=environment, capture_output=True, text=True, timeout=120)

    def path(self, host_path):
        return rooted(self.root, host_path)


@pytest.fixture
def installed(tmp_path, checkout):
    install = Install(tmp_path, checkout)
    done = install.run()
    assert done.returncode == 0, "the README's commands failed:\n" + install.script + "\n" + done.stderr
    return install


def test_every_command_touches_only_the_target_root():
    commands = readme_commands()
    assert "/opt/cliproxy/cliproxy.pyz" in commands and "/etc/systemd/system/" in commands
    leftover = HOST_PATH.findall(rerooted(commands, "/ROOT").replace("/ROOT/", ""))
    assert leftover == []


def test_the_program_and_the_unit_are_installed_readable_by_the_dynamic_user(installed):
    pyz = installed.path("/opt/cliproxy/cliproxy.pyz")
    assert mode(pyz) == 0o644
    # Every directory on the way must let any user through: the service's UID is not known.
    assert mode(installed.path("/opt/cliproxy")) == 0o755
    unit = installed.path("/etc/systemd/system/cliproxy.service")
    assert mode(unit) == 0o644
    with open(unit) as installed_unit, open(os.path.join(ROOT, "contrib", "cliproxy.service")) as shipped:
        assert installed_unit.read() == shipped.read()
    done = subprocess.run([sys.executable, pyz, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("cliproxy ")


def test_secrets_and_config_are_private(installed):
    assert mode(installed.path("/etc/cliproxy")) == 0o755
    assert mode(installed.path("/etc/cliproxy/environment")) == 0o600
    assert mode(installed.path("/etc/cliproxy/credentials")) == 0o700
    assert mode(installed.path("/var/lib/cliproxy/config.json")) == 0o600


def test_the_units_paths_are_the_installed_files(installed):
    unit = read_unit(installed.path("/etc/systemd/system/cliproxy.service"))["Service"]
    command = exec_start(installed.root, installed.path("/etc/systemd/system/cliproxy.service"))
    program, config = command[1], command[command.index("--config") + 1]
    assert program == installed.path("/opt/cliproxy/cliproxy.pyz") and os.path.isfile(program)
    assert os.path.isfile(config)
    assert os.path.dirname(config) == installed.path("/var/lib/" + unit["StateDirectory"][-1])
    assert unit["EnvironmentFile"][-1] == "-/etc/cliproxy/environment"
    assert os.path.isfile(installed.path(unit["EnvironmentFile"][-1].lstrip("-")))
    assert os.path.isdir(installed.path(unit["WorkingDirectory"][-1]))


def test_the_installed_config_passes_check_as_the_service_sees_it(installed, tmp_path):
    command = exec_start(installed.root, installed.path("/etc/systemd/system/cliproxy.service"))
    environment = {k: v for k, v in os.environ.items() if k != "AMP_API_KEY"}
    environment.update(
        HOME="/",
        AMP_API_KEY="sk-amp-test",
        STATE_DIRECTORY=installed.path("/var/lib/cliproxy"),
        LOGS_DIRECTORY=installed.path("/var/log/cliproxy"),
        CREDENTIALS_DIRECTORY=installed.path("/etc/cliproxy/credentials"),
    )
    done = subprocess.run(command[:2] + ["check"] + command[2:], capture_output=True, text=True, timeout=30,
                          env=environment)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith("ok: ")


def test_systemd_is_told_and_the_service_enabled(installed):
    assert open(str(installed.calls)).read().splitlines() == ["daemon-reload", "enable --now cliproxy"]


def test_running_them_again_upgrades_and_keeps_the_config(installed):
    config = installed.path("/var/lib/cliproxy/config.json")
    environment_file = installed.path("/etc/cliproxy/environment")
    with open(config) as handle:
        document = json.load(handle)
    document["ampcode"]["model-mappings"] = [{"from": "gpt-5", "to": "claude-sonnet-4-5"}]
    with open(config, "w") as out:  # as a management API change would have left it
        json.dump(document, out)
    with open(environment_file, "a") as out:
        out.write("AMP_API_KEY=sk-amp-kept\n")
    pyz = installed.path("/opt/cliproxy/cliproxy.pyz")
    os.truncate(pyz, 0)  # an old program, replaced by the upgrade
    done = installed.run()
    assert done.returncode == 0, done.stderr
    with open(config) as handle:
        assert json.load(handle) == document
    assert "AMP_API_KEY=sk-amp-kept" in open(environment_file).read()
    assert os.path.getsize(pyz) > 0
