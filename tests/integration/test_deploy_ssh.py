"""The ssh driver against real OpenSSH sshd instances on loopback ports (tests/sshd.py),
through the real console over HTTP: releases in batches, a failing step that stops the
rollout and rolls back, rollback by symlink, unknown and changed host keys refused with
nothing executed, a parameter with shell metacharacters passed as a literal, the
audited `fleetdeck hosts trust`, the pre-flight that refuses a deploy before any host
changes, failed releases built again (and `--force`), and transient connection failures
retried per host (a relay in front of one sshd resets connections; an sshd whose first
SFTP session hangs)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from console.cli import main as cli_main
from console.deploy.known_hosts import fingerprint
from tests.conftest import need
from tests.harness import ConsoleHarness
from tests.relay import Relay
from tests.sshd import SshServer, sshd_unavailable

REPO = Path(__file__).resolve().parents[2]

HOSTS = ("h1", "h2", "h3", "h4")
NASTY = "x; touch pwned-$(id -u) `id` && echo $HOME | cat"
CHECK_SH = """if [ "$(cat fail-on)" = "$1" ]; then echo "refusing on $1" >&2; exit 3; fi
echo "built $(cat VERSION) on $1"
"""


def artifact(directory: Path, version: str, fail_on: str = "", name: str = "web", healthy: bool = True) -> None:
    files = [("VERSION", version + "\n"), ("check.sh", CHECK_SH), ("fail-on", fail_on + "\n")]
    with tarfile.open(directory / f"{name}-{version}.tar", "w") as tar:
        for name, text in files + ([("healthy", "yes\n")] if healthy else []):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    reason = sshd_unavailable()
    if reason:
        need("ssh", reason)
    root = tmp_path_factory.mktemp("ssh-deploy")
    # clean_home: the sessions must not run this machine's ~/.bashrc. Its `pyenv init`
    # rehashes on every login, and two sessions starting at once (two hosts of a batch)
    # sometimes race in the shims directory and print "rm: cannot remove ..." on stderr,
    # which the health check's event then quotes ("healthy (... exited with 0: rm: ...)").
    servers = {name: SshServer(root / f"sshd-{name}", clean_home=True).start()
               for name in HOSTS + ("h5", "h6", "h7", "h8", "h9")}
    # h10 is slow: the first SFTP session it is asked for does not answer for 60 s.
    slow_sftp = root / "slow-sftp.sh"
    slow_sftp.write_text(f"#!/bin/sh\nif mkdir {root / 'sftp-stalled'} 2>/dev/null; then sleep 60; fi\n"
                         "exec /usr/lib/openssh/sftp-server\n")
    slow_sftp.chmod(0o755)
    servers["h10"] = SshServer(root / "sshd-h10", clean_home=True, sftp_server=str(slow_sftp)).start()
    relay = Relay(("127.0.0.1", servers["h9"].port)).open()  # h9 is reached through it
    try:
        (root / "artifacts").mkdir()
        inventory = {
            "defaults": {"user": servers["h1"].user},
            "hosts": {name: {"address": "127.0.0.1", "port": relay.port if name == "h9" else srv.port,
                             "key": f"key-{name}", "labels": {"role": "web"}} for name, srv in servers.items()},
            "groups": {"web": list(HOSTS)},
        }
        common = {"deploy_to": str(root / "srv" / "{host}" / "web")}
        apps = {
            "web": {"driver": "ssh", "on_conflict": "queue", "target": {
                **common, "hosts": ["web"], "artifact": str(root / "artifacts" / "web-{version}.tar"),
                "extract": True, "vars": {"nasty": NASTY},
                "steps": [{"name": "check", "run": ["sh", "check.sh", "{host}"], "timeout": 20},
                          {"name": "literal", "run": ["touch", "{nasty}"]}],
                "restart": [["touch", "{deploy_to}/restarted-{version}"]],
                "rollback_steps": [["touch", "{deploy_to}/rolled-back-to-{version}"]],
                "keep_releases": 2, "batches": {"type": "fixed", "size": 2}, "max_parallel": 2},
                "health_check": {"type": "command", "command": ["test", "-f", "{current}/VERSION"],
                                 "interval": 0.1, "start_period": 0, "retries": 2}},
            "lone": {"driver": "ssh", "target": {**common, "hosts": ["h5"]}},
            "moved": {"driver": "ssh", "target": {**common, "hosts": ["h6"]}},
            # h7 only for the `hosts trust` test: pinning h5 there would let `lone` deploy.
            "trusted": {"driver": "ssh", "target": {**common, "hosts": ["h7"]}},
            # h8 (pinned) and h6 (changed key) in one batch: the pre-flight refuses before h8 changes
            "pair": {"driver": "ssh", "target": {**common, "hosts": ["h8", "h6"], "batches": {"type": "fixed", "size": 2},
                                                 "restart": [["touch", "{deploy_to}/restarted"]]}},
            "full": {"driver": "ssh", "target": {**common, "hosts": ["h8"], "min_free_disk_mb": 10 ** 9}},
            "flaky": {"driver": "ssh", "target": {
                "deploy_to": str(root / "flaky" / "{host}"), "hosts": ["h8"],
                "artifact": str(root / "artifacts" / "flaky-{version}.tar"), "extract": True,
                "steps": [["sh", "check.sh", "{host}"]]},
                "health_check": {"type": "command", "command": ["test", "-f", "{current}/healthy"],
                                 "interval": 0.1, "start_period": 0, "retries": 2}},
            "retried": {"driver": "ssh", "target": {
                "deploy_to": str(root / "retried" / "{host}"), "hosts": ["h9"], "connect_timeout": 5,
                "internal_timeout": 20, "retry": {"attempts": 3, "backoff": 0.2}}},
            "slow": {"driver": "ssh", "target": {
                "deploy_to": str(root / "slow" / "{host}"), "hosts": ["h10"], "internal_timeout": 1,
                "retry": {"attempts": 2, "backoff": 0.2}}},
        }
        harness = ConsoleHarness(root / "console", apps=apps, inventory=inventory).start()
        s = harness.services
        for name, srv in servers.items():
            s.db.run(s.secrets.put, f"key-{name}", "ssh_key", srv.client_key.read_text(), "test")
        for name in HOSTS + ("h8", "h9", "h10"):
            key_type, key_b64 = servers[name].known_hosts_line.split()[1:3]
            s.db.run(s.known_hosts.trust, s.inventory.hosts[name], key_type, key_b64, "test")
        # h6 is pinned to h5's key: to the console, h6's key has changed.
        key_type, key_b64 = servers["h5"].known_hosts_line.split()[1:3]
        s.db.run(s.known_hosts.trust, s.inventory.hosts["h6"], key_type, key_b64, "test")
        harness.token = harness.api_token("deployer", "ci")
        harness.root, harness.servers, harness.relay = root, servers, relay
        yield harness
        harness.close()
    finally:
        relay.close()
        for srv in servers.values():
            srv.stop()


def wait(env, deploy: dict, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = env.request("GET", f"/api/v1/deploys/{deploy['id']}", token=env.token).json()
        if d["state"] not in ("queued", "running"):
            return d
        time.sleep(0.2)
    raise AssertionError(f"deploy {deploy['id']} still {d['state']}")


def deploy(env, app: str, version: str, **extra) -> tuple[dict, list[dict]]:
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version, "reason": "test", **extra},
                       token=env.token)
    assert resp.status == 202, resp.body
    final = wait(env, resp.json())
    events = env.request("GET", f"/api/v1/deploys/{final['id']}/events", token=env.token).json()["events"]
    return final, events


def base(env, host: str) -> Path:
    return env.root / "srv" / host / "web"


def current(env, host: str) -> str:
    return os.readlink(base(env, host) / "current")


def is_current(env, host: str, version: str) -> bool:
    link = base(env, host) / "current"
    return link.is_symlink() and os.readlink(link) == f"releases/{version}"


@pytest.fixture
def released(env):
    """Releases 1.0 and then 2.0 of ``web`` on every web host, 2.0 current: the state the
    literal-argument, failure and rollback tests start from, deployed here when an earlier
    test has not left it (each test passes alone and in any order)."""
    if not all((base(env, h) / "releases" / "1.0").is_dir() for h in HOSTS):
        artifact(env.root / "artifacts", "1.0")
        final, events = deploy(env, "web", "1.0")
        assert final["state"] == "succeeded", [e["message"] for e in events]
    if not all(is_current(env, h, "2.0") for h in HOSTS):
        artifact(env.root / "artifacts", "2.0")
        final, events = deploy(env, "web", "2.0")
        assert final["state"] == "succeeded", [e["message"] for e in events]
    return env


def test_release_deployed_to_several_hosts_in_batches(env):
    # Versions of its own: a release already on the hosts (from `released`) is switched
    # to without running its steps, and this test checks that the steps ran.
    artifact(env.root / "artifacts", "1.1")
    final, events = deploy(env, "web", "1.1")
    assert final["state"] == "succeeded", (final, [e["message"] for e in events])
    steps = [s["name"] for s in env.request("GET", f"/api/v1/deploys/{final['id']}", token=env.token).json()["steps"]]
    assert steps == ["pre-flight", "batch 1/2", "batch 2/2", "cleanup"]
    batches = next(e["data"]["batches"] for e in events if "batches" in e["data"])
    assert batches == [["h1", "h2"], ["h3", "h4"]]
    for host in HOSTS:
        assert current(env, host) == "releases/1.1"
        release = base(env, host) / "releases" / "1.1"
        assert (release / "VERSION").read_text() == "1.1\n"
        assert (base(env, host) / "restarted-1.1").exists()
        # streamed stdout of the step, per host
        assert any(e["message"] == f"[{host}] built 1.1 on {host}" for e in events)
        # connection setup measured once per host (the connection is reused for every command)
        assert sum(1 for e in events if e["data"].get("host") == host and "connect_ms" in e["data"]) == 1
    # the batch of h1/h2 finished before h3/h4 started
    seqs = {e["message"]: e["seq"] for e in events}
    assert seqs["batch 2/2: h3, h4"] > max(seqs[f"[{h}] healthy (test -f {base(env, h)}/current/VERSION exited with 0)"]
                                           for h in ("h1", "h2"))
    artifact(env.root / "artifacts", "1.2")
    final, events = deploy(env, "web", "1.2")
    assert final["state"] == "succeeded", [e["message"] for e in events]
    assert all(current(env, h) == "releases/1.2" for h in HOSTS)


def test_parameter_with_shell_metacharacters_is_one_literal_argument(released):
    env = released
    for host in HOSTS:
        release = base(env, host) / "releases" / "2.0"
        assert (release / NASTY).is_file()  # touch got the whole value as one file name
        assert not list(release.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))
        assert not (Path.home() / "pwned-0").exists()


def test_failing_step_on_one_host_stops_the_rollout_and_rolls_back(released):
    env = released
    artifact(env.root / "artifacts", "3.0", fail_on="h1")
    final, events = deploy(env, "web", "3.0")
    assert final["state"] == "rolled_back", [e["message"] for e in events]
    assert "h1: step 'check' exited with 3" in final["error"]
    messages = [e["message"] for e in events]
    assert "[h1] refusing on h1" in messages  # stderr streamed
    assert not any(m.startswith("batch 2/2") for m in messages)  # stopped after the failed batch
    for host in HOSTS:
        assert current(env, host) == "releases/2.0"
    # h2 had switched to 3.0 in the same batch: switched back, rollback steps and restart ran
    assert (base(env, "h2") / "rolled-back-to-2.0").exists()
    assert "[h2] rolled back to 2.0" in messages
    # the second batch was never touched
    for host in ("h3", "h4"):
        assert not (base(env, host) / "releases" / "3.0").exists()
    # for a Chinese reader: the failure and the error translated, the command's stderr verbatim
    zh_headers = {"Accept-Language": "zh-CN"}
    zh = [e["message"] for e in env.request("GET", f"/api/v1/deploys/{final['id']}/events", token=env.token,
                                            headers=zh_headers).json()["events"]]
    assert "[h1] refusing on h1" in zh and "[h2] 已回滚到 2.0" in zh, zh
    assert "batch 1/2 失败：h1：step 'check' 退出，退出码 3" in zh, zh
    error = env.request("GET", f"/api/v1/deploys/{final['id']}", token=env.token, headers=zh_headers).json()["error"]
    assert "h1：step 'check' 退出，退出码 3" in error, error


def test_rollback_by_symlink(released):
    env = released
    uploads_before = (env.root / "artifacts" / "web-1.0.tar").stat().st_atime
    resp = env.request("POST", "/api/v1/apps/web/rollback", {"reason": "back"}, token=env.token)
    assert resp.status == 202, resp.body
    final = wait(env, resp.json())
    events = env.request("GET", f"/api/v1/deploys/{final['id']}/events", token=env.token).json()["events"]
    messages = [e["message"] for e in events]
    assert final["state"] == "succeeded" and final["version"] == "1.0" and final["kind"] == "rollback", messages
    for host in HOSTS:
        assert current(env, host) == "releases/1.0"
        assert f"[{host}] release 1.0 is on the host already; switching to it" in messages
        assert (base(env, host) / "rolled-back-to-1.0").exists()
    assert not any("uploaded" in m for m in messages)
    assert (env.root / "artifacts" / "web-1.0.tar").stat().st_atime == uploads_before
    # keep_releases 2: the current release is never removed
    assert (base(env, "h3") / "releases" / "1.0").is_dir()


def _nothing_ran(env, host: str) -> None:
    assert not (env.root / "srv" / host).exists()
    assert "Accepted publickey" not in env.servers[host].log()


def test_unknown_host_key_is_refused_and_nothing_runs(env):
    final, events = deploy(env, "lone", "1.0")
    assert final["state"] == "failed"
    assert "UNKNOWN host key" in final["error"] and "fleetdeck hosts trust h5" in final["error"]
    offered = fingerprint(env.servers["h5"].known_hosts_line.split()[2])
    assert offered in final["error"]
    _nothing_ran(env, "h5")


def test_changed_host_key_is_refused_and_nothing_runs(env):
    final, _ = deploy(env, "moved", "1.0")
    assert final["state"] == "failed"
    assert "host key CHANGED" in final["error"]
    assert fingerprint(env.servers["h6"].known_hosts_line.split()[2]) in final["error"]
    _nothing_ran(env, "h6")


def test_hosts_trust_pins_after_a_fingerprint_check_and_is_audited(env, capsys):
    config = env.root / "cli.yaml"
    import yaml

    config.write_text(yaml.safe_dump({"console": {"data_dir": str(env.root / "console")},
                                      "inventory": env.config.inventory}))
    right = fingerprint(env.servers["h7"].known_hosts_line.split()[2])
    assert cli_main(["hosts", "trust", "h7", "--config", str(config), "--fingerprint", "SHA256:wrong"]) == 1
    assert "fingerprint mismatch" in capsys.readouterr().err
    assert cli_main(["hosts", "trust", "h7", "--config", str(config), "--fingerprint", right]) == 0
    assert f"pinned [127.0.0.1]:{env.servers['h7'].port} ssh-ed25519 {right}" in capsys.readouterr().out
    # a changed key is not replaced silently
    other = env.servers["h1"].known_hosts_line.split(maxsplit=1)[1]
    assert cli_main(["hosts", "trust", "h7", "--config", str(config), "--key", other]) == 1
    assert "already_pinned" in capsys.readouterr().err
    entries = env.services.db.run(lambda s: s.execute(
        __import__("sqlalchemy").text("SELECT actor, details FROM audit_log WHERE action = 'hosts.trust' "
                                      "AND target = 'host:h7'")).all())
    assert len(entries) == 1 and entries[0][0].startswith("cli:") and right in entries[0][1]
    final, events = deploy(env, "trusted", "1.0")
    assert final["state"] == "succeeded", [e["message"] for e in events]
    assert current(env, "h7") == "releases/1.0"


def test_changed_host_key_in_a_batch_leaves_the_other_host_unchanged(env):
    final, events = deploy(env, "pair", "1.0")
    assert final["state"] == "failed", [e["message"] for e in events]
    assert final["error"].startswith("pre-flight refused the deploy (1 of 2 host(s) failed); nothing was changed "
                                     "on any host: h6: host key CHANGED")
    steps = [s["name"] for s in env.request("GET", f"/api/v1/deploys/{final['id']}", token=env.token).json()["steps"]]
    assert steps == ["pre-flight"]
    # h8 (same batch, listed first, its key pinned) was reached but not changed at all
    assert not (base(env, "h8")).exists()
    assert any(e["data"].get("host") == "h8" and e["message"].startswith("[h8] ready: current (none)")
               for e in events)
    _nothing_ran(env, "h6")


def test_too_little_free_disk_refuses_the_deploy(env):
    final, events = deploy(env, "full", "1.0")
    assert final["state"] == "failed", [e["message"] for e in events]
    assert "pre-flight refused the deploy" in final["error"]
    assert "min_free_disk_mb is 1000000000" in final["error"] and "h8: " in final["error"]
    assert not (base(env, "h8")).exists()


def flaky_release(env) -> Path:
    return env.root / "flaky" / "h8" / "releases" / "2.0"


def test_a_release_that_failed_its_health_check_is_built_again(env):
    artifacts = env.root / "artifacts"
    artifact(artifacts, "1.0", name="flaky")
    final, events = deploy(env, "flaky", "1.0")
    assert final["state"] == "succeeded", [e["message"] for e in events]
    artifact(artifacts, "2.0", name="flaky", healthy=False)  # a broken build
    final, events = deploy(env, "flaky", "2.0")
    assert final["state"] == "rolled_back", [e["message"] for e in events]
    assert os.readlink(env.root / "flaky" / "h8" / "current") == "releases/1.0"
    assert not (flaky_release(env) / ".fleetdeck-release").exists()
    assert (flaky_release(env) / ".fleetdeck-failed").read_text().startswith(f"deploy {final['id']}: h8: health check")
    artifact(artifacts, "2.0", name="flaky")  # fixed, same version
    final, events = deploy(env, "flaky", "2.0")
    messages = [e["message"] for e in events]
    assert final["state"] == "succeeded", messages
    assert any(m.startswith("[h8] release 2.0 was marked failed (deploy ") for m in messages)
    assert any(m.startswith("[h8] uploaded flaky-2.0.tar") for m in messages)
    assert (flaky_release(env) / "healthy").is_file() and not (flaky_release(env) / ".fleetdeck-failed").exists()
    assert os.readlink(env.root / "flaky" / "h8" / "current") == "releases/2.0"


def test_force_builds_a_complete_release_again_api_and_cli(env):
    artifacts = env.root / "artifacts"
    artifact(artifacts, "3.0", name="flaky")
    final, events = deploy(env, "flaky", "3.0")
    assert final["state"] == "succeeded", [e["message"] for e in events]
    stamp = env.root / "flaky" / "h8" / "releases" / "3.0" / "stamp"
    stamp.write_text("left by hand\n")
    final, events = deploy(env, "flaky", "3.0")  # complete: restarted, not built
    assert final["state"] == "succeeded" and final["force"] is False
    assert not any("uploaded" in e["message"] for e in events) and stamp.exists()
    final, events = deploy(env, "flaky", "3.0", force=True)
    messages = [e["message"] for e in events]
    assert final["state"] == "succeeded" and final["force"] is True, messages
    assert "[h8] force: rebuilding 3.0, the live release, in place" in messages
    assert any(m.startswith("[h8] uploaded flaky-3.0.tar") for m in messages) and not stamp.exists()
    audit = env.services.db.run(lambda s: s.execute(__import__("sqlalchemy").text(
        "SELECT details FROM audit_log WHERE action = 'deploy.create' ORDER BY id DESC LIMIT 1")).scalar_one())
    assert json.loads(audit)["force"] is True
    stamp.write_text("left by hand\n")
    cli_env = dict(os.environ, FLEETDECK_URL=env.url, FLEETDECK_TOKEN=env.token, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "console.cli", "deploy", "flaky", "3.0", "--force", "--wait"],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "force: rebuilding 3.0" in done.stdout and not stamp.exists()


def test_transient_connection_resets_are_retried_per_host(env):
    env.relay.reset_next, env.relay.resets = 2, 0
    final, events = deploy(env, "retried", "1.0")
    messages = [e["message"] for e in events]
    assert final["state"] == "succeeded", messages
    assert env.relay.resets == 2
    retries = [m for m in messages if m.startswith("[h9] transient failure: h9: ")]
    assert len(retries) == 2 and retries[0].endswith("trying again in 0.2 s (2/3)") \
        and retries[1].endswith("trying again in 0.4 s (3/3)"), messages
    assert os.readlink(env.root / "retried" / "h9" / "current") == "releases/1.0"


def test_retries_are_bounded(env):
    env.relay.reset_next, env.relay.resets = 3, 0
    final, events = deploy(env, "retried", "2.0")
    assert final["state"] == "failed", [e["message"] for e in events]
    assert env.relay.resets == 3
    assert "pre-flight refused the deploy" in final["error"] and final["error"].endswith("(after 3 tries)")
    env.relay.reset_next = 0


def test_a_host_slow_to_answer_times_out_within_internal_timeout_and_is_retried(env):
    started = time.monotonic()
    final, events = deploy(env, "slow", "1.0")
    took = time.monotonic() - started
    messages = [e["message"] for e in events]
    assert final["state"] == "succeeded", messages
    # the SFTP session that never answered was given up after internal_timeout (1 s), not
    # waited for (60 s), and the host was tried again over a new connection
    [retry] = [m for m in messages if m.startswith("[h10] transient failure: h10: ")]
    assert "internal_timeout" in retry and retry.endswith("trying again in 0.2 s (2/2)"), messages
    assert took < 30, (took, messages)
    assert os.readlink(env.root / "slow" / "h10" / "current") == "releases/1.0"


def test_step_log_in_chinese_keeps_the_command_output_verbatim(env):
    """The same deploy's events for a Chinese reader: the console's sentences translated,
    each host's streamed command output exactly as the command printed it."""
    artifact(env.root / "artifacts", "1.3")
    final, events = deploy(env, "web", "1.3")
    assert final["state"] == "succeeded", [e["message"] for e in events]
    zh = env.request("GET", f"/api/v1/deploys/{final['id']}/events", token=env.token,
                     headers={"Accept-Language": "zh-CN"}).json()["events"]
    assert [e["seq"] for e in zh] == [e["seq"] for e in events]
    messages = [e["message"] for e in zh]
    assert any(m.startswith(f"预检 {len(HOSTS)} 台主机：连接、主机密钥、可用磁盘 >= ") for m in messages), messages
    assert "预检：所有主机均已就绪" in messages and "batch 1/2：h1, h2" in messages, messages
    for host in HOSTS:
        output = next(e for e in zh if e["message"] == f"[{host}] built 1.3 on {host}")
        assert [p["text"] for p in output["message_parts"] if p["value"]] == [host, f"built 1.3 on {host}"]
        assert any(m.startswith(f"[{host}] 已在 ") and "毫秒内连接到" in m for m in messages), messages
    english = {e["seq"]: e["message"] for e in events}
    untranslated = [e["message"] for e in zh if e["message"] == english[e["seq"]]]
    assert all(" built 1.3 on " in m or m.endswith(" -> releases/1.3") for m in untranslated), untranslated
