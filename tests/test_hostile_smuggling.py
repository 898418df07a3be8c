"""The request-smuggling corpus, in-process (SPEC §4: no request smuggling): the same
vectors ``make hostile`` sends to the built zipapp.

Each vector is raw bytes sent on a fresh connection to a proxy whose Amp upstream and
Anthropic provider is a ``RawUpstream`` recording what it receives. A vector must get its
answers (in order, errors with a JSON body), leave the connection closed or usable (a
probe on a kept connection must get its own ``/healthz`` answer: nothing left over from
the vector), and the upstream must receive exactly the complete requests listed, each
with unambiguous framing. The proxy logs at most one line per answer, and no traceback.
"""

import logging

import pytest

from tests.support.hostile import VECTORS, RawUpstream, run_vector, smuggling_document
from tests.support.logs import recording
from tests.support.proxy import RunningProxy

# What the brief of the corpus names, by vector-name prefix: each must stay covered.
CATEGORIES = (
    "cl-te", "te-cl", "cl-twice-equal", "cl-twice-different", "cl-list-equal", "cl-list-different",
    "obs-fold", "bare-lf", "bare-cr", "chunk-hex-overflow", "chunk-negative", "chunk-extension",
    "chunk-leading-zeros", "chunk-space", "te-chunked-identity", "te-xchunked", "te-capitalised",
    "expect-", "pipeline-", "absolute-form", "dot-dot", "pct-dot-dot", "pct-slash", "raw-backslash",
)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    with RawUpstream() as upstream:
        with RunningProxy(smuggling_document(upstream.url), tmp_path_factory.mktemp("smuggling")) as proxy:
            yield proxy, upstream


@pytest.fixture
def log_records():
    with recording(logging.INFO) as capture:
        yield capture.records


# Notices logged once per client address, whatever the request: not about the vector.
ONCE_PER_CLIENT = ("amp client mode",)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_vector(proxied, log_records, vector):
    proxy, upstream = proxied
    result = run_vector(vector, proxy.port, upstream)
    assert result.ok, "\n".join([vector.what, result.summary()] + result.problems)
    assert [r.getMessage() for r in log_records if r.exc_info] == []
    if all(status >= 400 for status in vector.statuses):
        # Bad input costs one log line per answer (SPEC §4).
        lines = [r.getMessage() for r in log_records if r.getMessage() not in ONCE_PER_CLIENT]
        assert len(lines) <= max(1, len(vector.statuses)), lines


def test_the_corpus_covers_every_category():
    names = [vector.name for vector in VECTORS]
    assert len(set(names)) == len(names)
    for prefix in CATEGORIES:
        assert any(name.startswith(prefix) for name in names), prefix
