"""A deploy's step log in the reader's language, over HTTP against a real console: the
console's own messages (requested, running, connecting, the failure, the end) come in
Simplified Chinese for ``Accept-Language: zh-CN`` or the ``fleetdeck_lang`` cookie, and in
English without either, as stored; the text of other programs inside them (the Docker SDK's
error, a container's output) is kept verbatim, as a value of the translated sentence."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, wait_for

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
APP = "app-" + uuid.uuid4().hex[:6]
ENGINE = "unix:///nonexistent/fleetdeck-steplog.sock"
CRASHY = run_app("steplog")


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """A console whose app's Docker engine is a socket that does not exist: its deploys fail
    at the connect step with the Docker SDK's own error text."""
    apps = {APP: {"hosts": ["web-1"], "timeout": 30, "target": {"image": "example/app", "engine": ENGINE}}}
    harness = ConsoleHarness(tmp_path_factory.mktemp("steplog"), apps=apps).start()
    harness.deployer = harness.api_token("deployer", "steplog-deployer")
    harness.viewer = harness.api_token("viewer", "steplog-viewer")
    yield harness
    harness.close()


def finished_deploy(console, app: str, version: str, timeout: float = 90) -> int:  # noqa: ANN001
    resp = console.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version, "reason": "steplog"},
                           token=console.deployer)
    assert resp.status == 202, resp.body
    deploy_id = resp.json()["id"]

    def final() -> bool:
        state = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.viewer).json()["state"]
        return state in ("succeeded", "failed", "rolled_back", "cancelled")

    wait_for(final, timeout, f"deploy {deploy_id} to finish")
    return deploy_id


def events(console, deploy_id: int, headers: dict | None = None) -> list[dict]:  # noqa: ANN001
    resp = console.request("GET", f"/api/v1/deploys/{deploy_id}/events", token=console.viewer, headers=headers)
    assert resp.status == 200, resp.body
    return resp.json()["events"]


def values_of(event: dict) -> list[str]:
    return [p["text"] for p in event.get("message_parts", []) if p["value"]]


def test_console_messages_follow_the_reader_language_and_program_text_stays(console):  # noqa: ANN001
    deploy_id = finished_deploy(console, APP, "1.0")
    en, zh = events(console, deploy_id), events(console, deploy_id, ZH)
    assert [e["seq"] for e in en] == [e["seq"] for e in zh]
    by_seq = {e["seq"]: e for e in zh}

    # English without a header: the text as stored, the same the CLI and the audit read.
    english = [e["message"] for e in en]
    assert english[0] == f"deploy of {APP} 1.0 requested by api:steplog-deployer", english
    assert "running (timeout 30 s)" in english
    assert f"connecting to {ENGINE}" in english
    assert not any(has_chinese(m) for m in english), english

    # Chinese: every message the console wrote itself.
    assert zh[0]["message"] == f"api:steplog-deployer 请求部署 {APP} 1.0"
    assert by_seq[en[english.index("running (timeout 30 s)")]["seq"]]["message"] == "运行中（超时 30 秒）"
    assert by_seq[en[english.index(f"connecting to {ENGINE}")]["seq"]]["message"] == f"正在连接 {ENGINE}"
    assert all(has_chinese(e["message"]) for e in zh), [e["message"] for e in zh]

    # The connect failure: the Docker SDK's error, verbatim inside the Chinese sentence.
    failed = next(e for e in en if e["kind"] == "step" and e["data"].get("state") == "failed")
    sdk_error = failed["message"].removeprefix("Docker engine unreachable: ")
    assert sdk_error != failed["message"] and sdk_error and not has_chinese(sdk_error), failed
    assert by_seq[failed["seq"]]["message"] == f"无法连接 Docker 引擎：{sdk_error}"
    assert values_of(by_seq[failed["seq"]]) == [sdk_error]

    # The end: the state word in the page's terms, the reason nested and translated too.
    end = zh[-1]
    assert end["kind"] == "state" and end["data"]["state"] == "failed"
    assert "秒后失败：无法连接 Docker 引擎：" in end["message"] and end["message"].endswith(sdk_error), end

    # The language cookie says the same as Accept-Language (and wins over it).
    cookie = events(console, deploy_id, {"Cookie": "fleetdeck_lang=zh-CN", "Accept-Language": "en"})
    assert [e["message"] for e in cookie] == [e["message"] for e in zh]


def test_steps_of_a_deploy_follow_the_reader_language(console):  # noqa: ANN001
    deploy_id = finished_deploy(console, APP, "1.1")
    en = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.viewer).json()
    zh = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.viewer, headers=ZH).json()
    (step_en,), (step_zh,) = en["steps"], zh["steps"]
    assert step_en["name"] == step_zh["name"] == "connect" and step_en["state"] == "failed"
    sdk_error = step_en["message"].removeprefix("Docker engine unreachable: ")
    assert sdk_error != step_en["message"]
    assert step_zh["message"] == f"无法连接 Docker 引擎：{sdk_error}"


@pytest.fixture(scope="module")
def docker_console(tmp_path_factory, docker_client, docker_images):  # noqa: ANN001
    apps = {CRASHY: {"driver": "docker", "target": {"image": docker_images, "stop_timeout": 1,
                                                    "labels": run_labels()},
                     "strategy": {"type": "recreate"}, "timeout": 60}}
    remove_run_containers(docker_client, CRASHY)
    harness = ConsoleHarness(tmp_path_factory.mktemp("steplog-docker"), apps=apps).start()
    harness.deployer = harness.api_token("deployer", "steplog-deployer")
    harness.viewer = harness.api_token("viewer", "steplog-viewer")
    harness.image = docker_images
    yield harness
    harness.close()
    remove_run_containers(docker_client, CRASHY)


def test_a_container_output_stays_verbatim_in_a_chinese_step_log(docker_console):  # noqa: ANN001
    """A version that prints ``boom`` and exits 3 on the test dockerd: the image, recreate,
    health and rollback steps are Chinese; the container's own output is not translated."""
    started = time.monotonic()
    deploy_id = finished_deploy(docker_console, CRASHY, "crash")
    assert time.monotonic() - started < 90
    en, zh = events(docker_console, deploy_id), events(docker_console, deploy_id, ZH)
    assert en[-1]["data"]["state"] == "rolled_back", en[-1]
    assert all(has_chinese(e["message"]) for e in zh), [e["message"] for e in zh]
    exited = next(i for i, e in enumerate(en) if " exited with code 3: " in e["message"])
    container = en[exited]["message"].split(" exited with code")[0]
    assert zh[exited]["message"] == f"{container} 已退出，退出码 3：boom"
    assert values_of(zh[exited]) == [container, "3", "boom"]
    messages = [e["message"] for e in zh]
    assert f"镜像 {docker_console.image}:crash 已就绪" in messages, messages
    assert "继续由上一版本提供服务" in messages, messages
    assert "秒后已回滚：" in zh[-1]["message"] and zh[-1]["message"].endswith("退出码 3：boom"), zh[-1]


def test_live_log_frames_follow_each_subscriber_language(console):  # noqa: ANN001
    """Two sockets watching one deploy: each gets the console's messages in its own language
    (the Accept-Language of its upgrade request), the same events in the same order."""
    import tornado.httpclient
    import tornado.websocket

    newest = console.request("GET", "/api/v1/deploys?limit=1", token=console.viewer).json()["deploys"]
    topic = f"deploy:{(newest[0]['id'] if newest else 0) + 1}"

    async def run() -> tuple[list[dict], list[dict]]:
        sockets = []
        for language in ("en", "zh-CN"):
            ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
                console.url.replace("http", "ws") + "/api/v1/live",
                headers={"Authorization": f"Bearer {console.viewer}", "Accept-Language": language}))
            ws.write_message(json.dumps({"subscribe": [topic]}))
            assert json.loads(await ws.read_message()) == {"subscribed": [topic]}
            sockets.append(ws)
        loop = asyncio.get_running_loop()
        resp = await loop.run_in_executor(None, lambda: console.request(
            "POST", f"/api/v1/apps/{APP}/deploys", {"version": "1.2"}, token=console.deployer))
        assert resp.status == 202 and f"deploy:{resp.json()['id']}" == topic, resp.body
        received: list[list[dict]] = []
        for ws in sockets:
            frames: list[dict] = []
            while not frames or frames[-1]["kind"] != "state" or frames[-1]["data"]["state"] != "failed":
                frames.append(json.loads(await asyncio.wait_for(ws.read_message(), 30))["data"])
            ws.close()
            received.append(frames)
        return received[0], received[1]

    en, zh = asyncio.run(run())
    assert [e["seq"] for e in en] == [e["seq"] for e in zh]
    assert f"connecting to {ENGINE}" in [e["message"] for e in en]
    assert not any(has_chinese(e["message"]) for e in en), en
    assert f"正在连接 {ENGINE}" in [e["message"] for e in zh]
    assert all(has_chinese(e["message"]) for e in zh), [e["message"] for e in zh]


def test_a_deploy_error_follows_the_reader_language(console):  # noqa: ANN001
    """The error summary of a failed deploy (``error``) is the reason its last state event
    gave: translated for a Chinese reader, the Docker SDK's text kept; the English as stored."""
    deploy_id = finished_deploy(console, APP, "1.3")
    en = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.viewer).json()
    zh = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.viewer, headers=ZH).json()
    sdk_error = en["error"].removeprefix("Docker engine unreachable: ")
    assert sdk_error != en["error"] and "error_i18n" not in en, en
    assert [p["text"] for p in en["error_parts"] if p["value"]] == [sdk_error]
    assert zh["error"] == f"无法连接 Docker 引擎：{sdk_error}"
    assert zh["error_parts"] == [{"text": "无法连接 Docker 引擎：", "value": False}, {"text": sdk_error, "value": True}]
