"""Errors as data: one exception family, each carrying the HTTP status and a message.

Strategy: code anywhere below the HTTP shell raises a ``ProxyError`` subclass; exactly one
place (``cliproxy.translate.errors.render_error``) turns it into a response body in the
protocol shape the client spoke. Messages are written for the user and must never contain
a secret.
"""


class ProxyError(Exception):
    """A failure that becomes an HTTP response.

    ``status`` is the HTTP status, ``error_type`` the machine-readable kind used in the
    error body (Anthropic-style names, mapped to the other protocols when rendered),
    ``headers`` extra response headers (for example ``Retry-After``) as (name, value) pairs
    with lowercase names.
    """

    status = 500
    error_type = "api_error"
    # True once the failure was logged where it happened (a failed provider attempt): the
    # request's own line then stays at INFO, so one fault is one warning.
    logged = False

    def __init__(self, message, status=None, error_type=None, headers=()):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.headers = tuple(headers)

    def __repr__(self):
        return "%s(%d, %r)" % (type(self).__name__, self.status, self.message)


class BadRequest(ProxyError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(ProxyError):
    status = 401
    error_type = "authentication_error"


class PaymentRequired(ProxyError):
    status = 402
    error_type = "payment_required"


class Forbidden(ProxyError):
    status = 403
    error_type = "permission_error"


class NotFound(ProxyError):
    status = 404
    error_type = "not_found_error"


class MethodNotAllowed(ProxyError):
    """The path exists but not for this method; ``headers`` carry ``Allow``."""

    status = 405
    error_type = "invalid_request_error"


class PayloadTooLarge(ProxyError):
    status = 413
    error_type = "request_too_large"


class UnsupportedMediaType(ProxyError):
    status = 415
    error_type = "invalid_request_error"


class NotImplementedYet(ProxyError):
    """A request we understand but cannot serve (e.g. an unsupported protocol pair)."""

    status = 501
    error_type = "not_implemented"


class UpstreamError(ProxyError):
    """The upstream could not be reached or broke the protocol (502)."""

    status = 502
    error_type = "api_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "timeout_error"


class ServiceUnavailable(ProxyError):
    status = 503
    error_type = "api_error"
