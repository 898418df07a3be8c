"""sd_notify messages and watchdog pings, on a real AF_UNIX datagram socket."""

import asyncio
import os
import socket

from cliproxy.ops.systemd import Notifier


def listening_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock, path


def test_state_messages_reach_the_socket(tmp_path):
    sock, path = listening_socket(tmp_path)
    with sock:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.enabled and notifier.watchdog_interval is None
        notifier.ready()
        notifier.reloading()
        notifier.stopping()
        assert [sock.recv(64) for _ in range(3)] == [b"READY=1", b"RELOADING=1", b"STOPPING=1"]


def test_watchdog_pings_at_half_the_interval(tmp_path):
    sock, path = listening_socket(tmp_path)
    with sock:
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval == 0.05

        async def main():
            task = asyncio.ensure_future(notifier.run_watchdog())
            received = [await asyncio.get_running_loop().sock_recv(sock, 64) for _ in range(3)]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return received

        sock.setblocking(False)
        assert asyncio.run(main()) == [b"WATCHDOG=1"] * 3


def test_watchdog_meant_for_another_process_is_ignored(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready()
    asyncio.run(notifier.run_watchdog())  # returns at once


def test_abstract_socket_names_are_supported():
    notifier = Notifier({"NOTIFY_SOCKET": "@cliproxy-test"})
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0cliproxy-test")
        sock.settimeout(5)
        notifier.ready()
        assert sock.recv(64) == b"READY=1"
