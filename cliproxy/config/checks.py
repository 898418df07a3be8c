"""Checks of a valid config against what it will meet when serving: warnings, not errors.

Strategy: the loader says whether a file is valid; these say whether it will work as its
author meant, for ``check`` (``warning:`` lines) and for start-up and reloads (log lines):
a model mapping that can never apply, a logs directory that cannot take files.
"""

from cliproxy.files import directory_problem
from cliproxy.routing.registry import ModelRegistry
from cliproxy.routing.suffix import split_suffix


def logs_dir_warning(config):
    """A warning when ``config`` will write to its ``logs-dir`` (error-request files with
    ``request-log`` on, saved threads in offline mode) and that directory cannot take
    files; None otherwise."""
    uses = []
    if config.request_log:
        uses.append("error-request files")
    if config.ampcode.upstream_url is None:
        uses.append("offline threads")
    if not uses:
        return None
    problem = directory_problem(config.logs_dir)
    if problem is None:
        return None
    return "logs-dir: %s; %s cannot be saved (set logs-dir to a writable directory; under " \
        "systemd, LogsDirectory= or StateDirectory= provides one)" % (problem, " and ".join(uses))


def unserved_mappings(config):
    """A warning for each model mapping none of whose targets a local provider serves
    (valid, but it can never fire: its calls go to Amp credits or are refused)."""
    registry = ModelRegistry.from_config(config)
    warnings = []
    for mapping in config.ampcode.model_mappings:
        if not any(registry.serves(split_suffix(target)[0]) for target in mapping.targets):
            warnings.append(
                "ampcode.model-mappings[%d]: no local provider serves %s, so this mapping never applies"
                % (mapping.index, " or ".join(mapping.targets))
            )
    return warnings
