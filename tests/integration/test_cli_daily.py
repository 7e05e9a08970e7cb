"""The ``fleetdeck`` console script as a user meets it, run as a real process against a
real console (``fleetdeck serve``): what it says without a token or with a URL lacking
``http://``, "did you mean" for a typo, enum options refusing unknown values, bash and
zsh completion through argcomplete, contexts in the user's file, and the first-run
admin and agent token in the audit log, and ``--version``."""
from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import wait_for
from tests.integration.procs import REPO, ConsoleProcess, child_env, free_port

SCRIPT = Path(sys.executable).parent / "fleetdeck"


def fleetdeck(*args: str, env: dict, stdin: str = "", cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The installed ``fleetdeck`` console script (this checkout first on PYTHONPATH)."""
    return subprocess.run([str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          input=stdin)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not SCRIPT.exists():
        pytest.fail(f"the fleetdeck console script is not installed beside {sys.executable}")
    console = ConsoleProcess(tmp_path_factory.mktemp("cli-daily")).start()
    yield console
    console.stop()


@pytest.fixture()
def user_env(served, tmp_path):
    """A client environment with its own (empty) config folder and no FLEETDECK_* set."""
    return child_env(XDG_CONFIG_HOME=str(tmp_path / "config"))


def test_no_token_names_fleetdeck_token(served, user_env):
    result = fleetdeck("hosts", env={**user_env, "FLEETDECK_URL": served.url})
    assert result.returncode == 1, result
    assert "FLEETDECK_TOKEN" in result.stderr and "fleetdeck token create" in result.stderr
    wrong = fleetdeck("hosts", env={**user_env, "FLEETDECK_URL": served.url, "FLEETDECK_TOKEN": "fd_nope"})
    assert wrong.returncode == 1
    assert "environment FLEETDECK_TOKEN" in wrong.stderr and "refused" in wrong.stderr


def test_a_url_without_a_scheme_is_a_clear_usage_error(served, user_env):
    bare = served.url.removeprefix("http://")
    result = fleetdeck("hosts", env={**user_env, "FLEETDECK_URL": bare, "FLEETDECK_TOKEN": "x"})
    assert result.returncode == 2, result
    assert result.stderr.strip() == (f"fleetdeck: FLEETDECK_URL (environment) must be an http:// or https:// URL "
                                     f"such as http://127.0.0.1:8700, got {bare!r}")
    assert "unknown url type" not in result.stderr


def test_version_is_the_installed_distributions(user_env):
    """``--version`` prints the version pip installed (the distribution's metadata), and
    exits 0 without needing a console, a token or a command."""
    from importlib.metadata import version

    result = fleetdeck("--version", env=user_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fleetdeck {version('fleetdeck')}"
    assert result.stderr == ""


@pytest.mark.parametrize("typo, meant", [("lgos", "logs"), ("hots", "hosts"), ("contxt", "context")])
def test_a_mistyped_command_gets_did_you_mean(user_env, typo, meant):
    result = fleetdeck(typo, env=user_env)
    assert result.returncode == 2
    assert f"invalid choice: '{typo}'; did you mean '{meant}'?" in result.stderr


@pytest.mark.parametrize("argv, meant", [
    (["logs", "--levle", "error"], "--level"),
    (["context", "add", "x", "--url", "http://127.0.0.1:1", "--token-evn", "X"], "--token-env"),
    (["--log-levle=debug", "hosts"], "--log-level"),
])
def test_a_mistyped_option_gets_did_you_mean(user_env, argv, meant):
    result = fleetdeck(*argv, env=user_env)
    assert result.returncode == 2, result
    assert "unrecognized arguments: " in result.stderr and f"did you mean '{meant}'?" in result.stderr
    assert result.stdout == ""
    # In Chinese too (the terminal's language).
    zh = fleetdeck(*argv, env={**user_env, "LANG": "zh_CN.UTF-8"})
    assert zh.returncode == 2 and "无法识别的参数：" in zh.stderr and f"您是想输入 '{meant}' 吗？" in zh.stderr


@pytest.mark.parametrize("argv, valid", [
    (["logs", "--level", "critical"], "trace, debug, info, warn, error, fatal"),
    (["logs", "--level", "warn,eror"], "trace, debug, info, warn, error, fatal"),
    (["--log-level", "loud", "hosts"], "debug, info, warning, error, critical"),
    (["secrets", "set", "x", "--kind", "ssh"], "ssh_key, kubeconfig, registry_password, webhook_url, generic"),
    (["alerts", "--state", "fire"], "firing, pending"),
    (["notify", "log", "--status", "ok"], "pending, sent, failed"),
    (["token", "create", "--name", "n", "--role", "root"], "viewer, deployer, admin"),
    (["completion", "fish"], "bash, zsh"),
])
def test_unknown_enum_values_are_usage_errors_listing_the_valid_ones(served, user_env, argv, valid):
    env = {**user_env, "FLEETDECK_URL": served.url, "FLEETDECK_TOKEN": "unused"}
    result = fleetdeck(*argv, env=env)
    assert result.returncode == 2, result
    assert valid in result.stderr
    assert result.stdout == ""


def test_logs_level_accepts_the_valid_values(served, user_env):
    viewer = served.cli("token", "create", "--name", "lv-" + uuid.uuid4().hex[:6], "--role", "viewer")
    env = {**user_env, "FLEETDECK_URL": served.url, "FLEETDECK_TOKEN": viewer.strip().splitlines()[-1]}
    result = fleetdeck("logs", "--level", "WARN,error", "--host", "nobody-here", env=env)
    assert result.returncode == 0, result.stderr


def _complete(shell: str, line: str, env: dict) -> list[str]:
    """What ``shell`` offers for ``line`` (completing its last word) with the code of
    ``fleetdeck completion SHELL`` loaded: bash calls the registered function as it does
    on Tab; zsh runs its completion system in a pseudo-terminal-free ``zsh -c``."""
    code = fleetdeck("completion", shell, env=env)
    assert code.returncode == 0, code.stderr
    words = line.split(" ")
    script = (code.stdout + "\n" + f"COMP_LINE={line!r}; COMP_POINT={len(line)}; COMP_WORDS=({line}"
              + (" ''" if line.endswith(" ") else "") + f"); COMP_CWORD={len(words) - 1}\n"
              + "_python_argcomplete fleetdeck\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "-c", script], env={**env, "PATH": f"{SCRIPT.parent}:{env['PATH']}"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [w.strip() for w in result.stdout.splitlines() if w.strip()]


def test_bash_completion_offers_commands_and_choices(user_env):
    assert "logs" in _complete("bash", "fleetdeck lo", user_env)
    assert set(_complete("bash", "fleetdeck logs --level ", user_env)) >= {"trace", "error", "fatal"}
    assert _complete("bash", "fleetdeck context u", user_env) == ["use"]


def test_zsh_completion_code_is_argcompletes_and_loads(user_env):
    result = fleetdeck("completion", "zsh", env=user_env)
    assert result.returncode == 0
    assert "#compdef fleetdeck" in result.stdout and "_ARGCOMPLETE" in result.stdout
    zsh = shutil.which("zsh")
    if zsh is not None:  # the code parses in a real zsh
        check = subprocess.run([zsh, "-n", "-c", result.stdout], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr


def test_contexts_add_use_list_remove_with_env_overrides(served, user_env, tmp_path):
    viewer = served.cli("token", "create", "--name", "ctx-" + uuid.uuid4().hex[:6], "--role", "viewer")
    token = viewer.strip().splitlines()[-1]
    dead = f"http://127.0.0.1:{free_port()}"
    assert fleetdeck("context", "add", "dead", "--url", dead, env=user_env).returncode == 0
    added = fleetdeck("context", "add", "here", "--url", served.url + "/", "--token-env", "HERE_TOKEN", env=user_env)
    assert added.returncode == 0, added.stderr
    path = tmp_path / "config" / "fleetdeck" / "contexts.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # The first context added is current: its console is down.
    down = fleetdeck("hosts", env={**user_env, "HERE_TOKEN": token})
    assert down.returncode == 1 and f"cannot reach {dead}" in down.stderr
    assert fleetdeck("context", "use", "here", env=user_env).returncode == 0
    listed = fleetdeck("context", "list", "--json", env=user_env)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["here"]["current"] == "*" and rows["here"]["url"] == served.url
    assert rows["here"]["token"] == "$HERE_TOKEN (unset)" and token not in listed.stdout
    hosts = fleetdeck("hosts", "--json", env={**user_env, "HERE_TOKEN": token})
    assert hosts.returncode == 0, hosts.stderr
    # Without the variable the context has no token: the message says so.
    assert "FLEETDECK_TOKEN" in fleetdeck("hosts", env=user_env).stderr
    # FLEETDECK_URL overrides the context's URL; FLEETDECK_CONTEXT picks another context.
    overridden = fleetdeck("hosts", env={**user_env, "HERE_TOKEN": token, "FLEETDECK_URL": dead})
    assert f"cannot reach {dead}" in overridden.stderr
    picked = fleetdeck("hosts", env={**user_env, "HERE_TOKEN": token, "FLEETDECK_CONTEXT": "dead"})
    assert f"cannot reach {dead}" in picked.stderr
    # A token kept in the file (read from stdin, never from the command line).
    kept = fleetdeck("context", "add", "kept", "--url", served.url, "--token-stdin", env=user_env, stdin=token + "\n")
    assert kept.returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fleetdeck("context", "use", "kept", env=user_env).returncode == 0
    assert fleetdeck("hosts", "--json", env=user_env).returncode == 0
    # A file others can read is refused.
    path.chmod(0o644)
    loose = fleetdeck("hosts", env=user_env)
    assert loose.returncode == 2 and "readable by others" in loose.stderr
    path.chmod(0o600)
    assert fleetdeck("context", "remove", "kept", env=user_env).returncode == 0
    gone = fleetdeck("context", "use", "kept", env=user_env)
    assert gone.returncode == 2 and "no context 'kept'" in gone.stderr and "dead, here" in gone.stderr
    bad = fleetdeck("context", "add", "x", "--url", "fleetdeck.example.com", env=user_env)
    assert bad.returncode == 2 and "must be an http:// or https:// URL" in bad.stderr


def test_first_run_admin_and_agent_token_are_in_the_audit_log(tmp_path):
    data = tmp_path / "data"
    env = child_env(FLEETDECK_DATA_DIR=str(data), FLEETDECK_LISTEN=f"127.0.0.1:{free_port()}",
                    XDG_CONFIG_HOME=str(tmp_path / "config"))
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(SCRIPT), "run"], env=env, cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Dashboard:" in out.read_text(), 60, "fleetdeck run to print the URL", proc=proc)
    finally:
        proc.terminate()
        proc.wait(30)
    audit = fleetdeck("audit", "--json", env=env, cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    entries = json.loads(audit.stdout)
    actions = {(e["action"], e["target"]): e for e in entries}
    admin = actions[("user.create", "user:admin")]
    assert admin["details"]["first_run"] is True and admin["details"]["role"] == "admin"
    assert admin["source"] == "cli" and admin["actor"].startswith("cli:")
    agent = [e for e in entries if e["action"] == "token.create" and e["details"]["kind"] == "agent"]
    assert len(agent) == 1 and agent[0]["details"]["host"], entries
    assert fleetdeck("audit", "verify", env=env, cwd=tmp_path).returncode == 0
