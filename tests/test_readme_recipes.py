"""The README's client recipes, checked against a running proxy.

Each recipe's URL, key and model are read from README.md itself (so the test fails when the
README drifts), and the request its client would send first is sent: the same path the
client builds from that base URL, the same header carrying that key. The clients
themselves (the SDKs, Claude Code, Amp) were run by hand against cliproxy; here they are
replaced by exactly what they put on the wire.
"""

import json
import os
import re

import pytest

from tests.support.agent_loop import FakeModel
from tests.support.proxy import RunningProxy

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
README_ADDRESS = "http://127.0.0.1:8317"


def readme_section(title):
    text = open(README, encoding="utf-8").read()
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def recipe(label):
    """The text of the recipe whose bold label is ``label`` (up to the next label)."""
    section = readme_section("## Pointing clients at it")
    start = section.index("**%s**" % label)
    following = section.find("\n**", start + 1)
    return section[start : following if following > 0 else len(section)]


def grab(pattern, text):
    match = re.search(pattern, text)
    assert match, "README recipe lost %r" % pattern
    return match.group(1)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with FakeModel() as model:
        document = {
            "api-keys": [grab(r'api_key="([^"]+)"', recipe("OpenAI SDK"))],
            "claude-api-key": [{"api-key": "sk-ant", "base-url": model.url}],
            "gemini-api-key": [{"api-key": "gem", "base-url": model.url}],
            "openai-compatibility": [{"name": "local", "base-url": model.url + "/v1", "models": [{"name": "qwen3-coder"}]}],
            "ampcode": {"upstream-url": ""},
        }
        with RunningProxy(document, tmp_path_factory.mktemp("recipes")) as running:
            yield running


def local(url, proxy):
    assert url.startswith(README_ADDRESS), url
    return url[len(README_ADDRESS) :]


def call(proxy, path, body, headers):
    status, _, data = proxy.request("POST", path, body, headers)
    assert status == 200, data[:300]
    return json.loads(data)


def test_amp_recipe(proxy):
    text = recipe("Amp")
    base, key = grab(r"AMP_URL=(\S+)", text), grab(r"AMP_API_KEY=(\S+)", text)
    prefix = local(base, proxy)
    info = call(proxy, prefix + "/api/internal?getUserInfo", {"method": "getUserInfo", "params": {}},
                {"Authorization": "Bearer " + key})
    assert info["ok"] is True
    answer = call(proxy, prefix + "/api/provider/anthropic/v1/messages",
                  {"model": "claude-opus-4-7", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                  {"x-api-key": key})
    assert answer["model"] == "claude-opus-4-7"


@pytest.mark.parametrize("carrier", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_claude_code_recipe(proxy, carrier):
    text = recipe("Claude Code")
    base, token = grab(r"ANTHROPIC_BASE_URL=(\S+)", text), grab(r"ANTHROPIC_AUTH_TOKEN=(\S+)", text)
    assert carrier in text
    headers = {"Authorization": "Bearer " + token} if carrier == "ANTHROPIC_AUTH_TOKEN" else {"x-api-key": token}
    headers["anthropic-version"] = "2023-06-01"
    answer = call(proxy, local(base, proxy) + "/v1/messages?beta=true",
                  {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": False,
                   "messages": [{"role": "user", "content": "hi"}]}, headers)
    assert answer["type"] == "message"


def test_openai_sdk_recipe(proxy):
    text = recipe("OpenAI SDK")
    base, key = grab(r'base_url="([^"]+)"', text), grab(r'api_key="([^"]+)"', text)
    model = grab(r'model="([^"]+)"', text)
    headers = {"Authorization": "Bearer " + key}
    chat = call(proxy, local(base, proxy) + "/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "hi"}]}, headers)
    assert chat["object"] == "chat.completion" and chat["model"] == model
    response = call(proxy, local(base, proxy) + "/responses", {"model": model, "input": "hi"}, headers)
    assert response["object"] == "response"


def test_anthropic_sdk_recipe(proxy):
    text = recipe("Anthropic SDK")
    base, key = grab(r'base_url="([^"]+)"', text), grab(r'api_key="([^"]+)"', text)
    model = grab(r'model="([^"]+)"', text)
    answer = call(proxy, local(base, proxy) + "/v1/messages",
                  {"model": model, "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}]},
                  {"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert answer["model"] == model


def test_gemini_sdk_recipe(proxy):
    text = recipe("Gemini SDK")
    base, key = grab(r'base_url="([^"]+)"', text), grab(r'api_key="([^"]+)"', text)
    model = grab(r'model="([^"]+)"', text)
    answer = call(proxy, local(base, proxy) + "/v1beta/models/%s:generateContent" % model,
                  {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, {"x-goog-api-key": key})
    assert answer["candidates"][0]["content"]["parts"]
