"""Command line (SPEC §1): serve, ``check``, ``route MODEL`` and ``--version``.

Exit codes: 0 clean, 1 bad config or cannot bind (with a one-line reason), 2 usage error
(argparse's own).
"""

import argparse
import dataclasses
import logging
import os
import re
import sys

from cliproxy import __version__
from cliproxy import log as logsetup
from cliproxy.config.loader import ConfigError, default_config, find_config, load_file
from cliproxy.config.checks import logs_dir_warning, unserved_mappings
from cliproxy.config.model import Protocol

log = logging.getLogger("cliproxy.cli")

_PROTOCOLS = {p.value: p for p in Protocol}


_CONFIG_HELP = "the config file (default: ./config.json when it exists, else built-in defaults)"


def _parser():
    parser = argparse.ArgumentParser(
        prog="cliproxy",
        description="A proxy between the Amp CLI (or any Anthropic/OpenAI/Gemini client) and model providers."
        " Without a command it serves.",
    )
    parser.add_argument("--version", action="version", version="cliproxy " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check", help="validate the config file: exit 0 (warnings on stderr), or 1 with every error"
    )
    route = commands.add_parser("route", help="explain the routing decision for MODEL (sends nothing)")
    route.add_argument("model", metavar="MODEL", help="a model name as a client sends it, suffix included")
    route.add_argument(
        "--protocol",
        choices=sorted(_PROTOCOLS),
        default=None,
        help="the protocol the client speaks (default: from the model's family: gemini-* -> gemini,"
        " gpt-*/o<digit>*/codex-* -> openai, else claude)",
    )
    serve = commands.add_parser("serve", help="run the proxy (the default command)")
    # --config is taken before or after the command; given twice, the later one counts.
    for target in (parser, serve, check, route):
        target.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=_CONFIG_HELP)
    for target in (parser, serve):
        target.add_argument(
            "--host", default=argparse.SUPPRESS, help="address to listen on (default: the config's host, 127.0.0.1)"
        )
        target.add_argument(
            "--port", type=int, default=argparse.SUPPRESS, help="port to listen on (default: the config's port, 8317)"
        )
        target.add_argument(
            "--log-level",
            choices=logsetup.LEVELS,
            default=argparse.SUPPRESS,
            help="log level (default: debug when the config says \"debug\": true, else info)",
        )
        target.add_argument(
            "--log-format", choices=("text", "json"), default=argparse.SUPPRESS, help="log line format (default: text)"
        )
    return parser


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or "serve"
    if command == "check":
        return check(getattr(args, "config", None))
    if command == "route":
        protocol = _PROTOCOLS[args.protocol] if args.protocol else default_protocol(args.model)
        return route(args.model, getattr(args, "config", None), protocol)
    return serve(args)


_OPENAI_FAMILY = re.compile(r"(gpt-|o[0-9]|codex-|chatgpt-)", re.IGNORECASE)


def default_protocol(model):
    """The protocol a client of ``model``'s family most likely speaks (``route``'s
    default): Gemini for ``gemini-*``, OpenAI Chat for ``gpt-*``, ``o<digit>*`` and
    ``codex-*``, Anthropic otherwise."""
    if model.lower().startswith("gemini-"):
        return Protocol.GEMINI
    if _OPENAI_FAMILY.match(model):
        return Protocol.OPENAI
    return Protocol.CLAUDE


def _load(cli_path, strict=False):
    """(config, path, warnings); raises ConfigError for a bad or missing file."""
    if cli_path is not None and not os.path.exists(cli_path):
        raise ConfigError(["%s: no such config file" % cli_path])
    path = find_config(cli_path)
    if path is None:
        return default_config(), None, []
    config, warnings = load_file(path, strict=strict)
    return config, path, warnings


def check(cli_path):
    try:
        config, path, warnings = _load(cli_path, strict=True)
    except ConfigError as exc:
        for error in exc.errors:
            print("error: " + error, file=sys.stderr)
        print("%d error(s) found" % len(exc.errors), file=sys.stderr)
        return 1
    for warning in warnings + unserved_mappings(config) + host_warnings(config):
        print("warning: " + warning, file=sys.stderr)
    print("ok: %s" % (path or "no config file; built-in defaults"))
    return 0


def host_warnings(config):
    """What this host will not let ``config`` do, as ``serve`` would log it at start: an
    upstream with no key to send, a logs-dir that cannot be written."""
    from cliproxy.amp.secrets import UpstreamKeys

    found = (UpstreamKeys().missing_key_warning(config.ampcode), logs_dir_warning(config))
    return [warning for warning in found if warning is not None]


def route(model, cli_path, protocol):
    from cliproxy.routing.router import Router, explain

    try:
        config, _, _ = _load(cli_path)
    except ConfigError as exc:
        for error in exc.errors:
            print("error: " + error, file=sys.stderr)
        return 1
    print(explain(Router.from_config(config).decide(model, protocol)))
    return 0


def _overrides(args):
    return {name: getattr(args, name) for name in ("host", "port") if hasattr(args, name)}


def serve(args):
    overrides = _overrides(args)
    try:
        config, path, warnings = _load(getattr(args, "config", None))
    except ConfigError as exc:
        print("cliproxy: bad config: " + "; ".join(exc.errors), file=sys.stderr)
        return 1
    config = dataclasses.replace(config, **overrides)
    chosen = getattr(args, "log_level", None)
    level = chosen or ("debug" if config.debug else "info")
    # An explicit --log-level is what the process returns to when "debug" is turned off.
    logsetup.setup(level, getattr(args, "log_format", "text"), base=chosen or "info")
    if path is None:
        log.info(
            "no config file (--config or ./config.json): running on built-in defaults",
            extra={"fields": {"listen": "%s:%d" % (config.host, config.port), "upstream": config.ampcode.upstream_url,
                              "providers": 0}},
        )
    else:
        log.info("cliproxy %s starting" % __version__, extra={"fields": {"config": path}})
    for warning in warnings:
        log.warning("config: " + warning)
    # Imported here, not at the top: ``check``, ``route`` and ``--version`` never serve,
    # and these (with what ``_serve`` imports) are most of the start-up time.
    import asyncio

    try:
        return asyncio.run(_serve(config, path, overrides))
    except KeyboardInterrupt:
        return 0


async def _serve(config, path, overrides):
    import asyncio
    import ssl

    from cliproxy.ops.systemd import Notifier
    from cliproxy.service import Service

    service = Service(config, path, overrides=overrides)
    notifier = Notifier()
    stop = asyncio.Event()
    # Handlers before anything is announced: a signal sent as soon as a user (or systemd)
    # sees us listening must find them in place, not the default action.
    _install_signals(stop, service, notifier)
    try:
        host, port = await service.start()
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot listen on %s:%d: %s" % (config.host, config.port, exc))
        await service.stop()
        return 1
    _settle_heap()
    scheme = "https" if config.tls.enable else "http"
    log.info("listening", extra={"fields": {"url": "%s://%s:%d" % (scheme, host, port)}})
    notifier.ready()
    watchdog = asyncio.ensure_future(notifier.run_watchdog())
    await stop.wait()
    log.info("shutting down", extra={"fields": {"drain_timeout": service.store.current.limits.drain_timeout}})
    notifier.stopping()
    watchdog.cancel()
    await asyncio.gather(watchdog, return_exceptions=True)
    await service.stop()
    log.info("stopped")
    return 0


def _settle_heap():
    """Move everything built at start-up (modules, config, router) out of the garbage
    collector's reach: each request creates hundreds of short-lived containers, so young
    collections run about every request and full ones walk the whole heap otherwise."""
    import gc

    gc.collect()
    gc.freeze()


def _install_signals(stop, service, notifier):
    import asyncio
    import signal

    loop = asyncio.get_event_loop()

    def reload_now():
        notifier.reloading()
        service.reload_now()
        notifier.ready()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_now)
