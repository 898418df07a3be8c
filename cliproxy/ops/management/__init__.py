"""The parts of the management API (``/v0/management/...``).

Strategy: ``cliproxy.ops.management_api.ManagementApi`` routes each request; the jobs it
hands out live here, one per module: ``gate`` (who may call: key, peer, lock-out),
``fields`` (which config keys are served and how their lists are addressed), ``views``
(the config in force as JSON, secrets masked), ``edits`` (the new value a PUT, PATCH or
DELETE gives a key), ``changes`` (validate, write back and put in force), ``params``
(request bodies and query parameters) and ``errorlogs`` (the error-request files).
"""
