"""The agent playbook for real: ansible-playbook over SSH to a real sshd, a real console.

- ansible-core (from PyPI, in its own virtualenv: ``ansible/requirements-ansible.txt``;
  found through ``$FLEETDECK_ANSIBLE_VENV``, ``.venv-ansible`` or ``$PATH``) runs
  ``ansible/install-agent.yml`` against an OpenSSH sshd on a loopback port
  (tests/sshd.py), logging in as root with a per-run key pinned in known_hosts.
- The packages are the wheels built from this checkout (``pip wheel --no-deps . ./agent``):
  the agent role installs the agent's alone, the console role both.
- Every path of the role is placed under a scratch ``fleetdeck_agent_root`` and the agent
  user has a per-run name, so the machine outside the scratch directory is left as it was
  (after the uninstall test).
- The role enrols the host: it mints an enrolment token from the controller with an admin
  API token, and the host spends it with ``fleetdeck-agent enrol``.
- systemd is not PID 1 in this container: the role detects that
  (``fleetdeck_agent_service_manager: auto``) and runs the agent under start-stop-daemon.
  The unit file is installed and checked with ``systemd-analyze verify`` when available,
  but systemd's restart policy and sandboxing are not exercised here.

The run ends with the host's agent reporting to the console; a second run reports
changed=0; ``--tags uninstall`` removes everything.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import need
from tests.harness import http
from tests.sshd import free_port
from tests.harness import wait_for

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "ansible" / "install-agent.yml"
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.M)
INVENTORY_HOST = "fleet-target"


def ansible_playbook() -> str | None:
    """Path of ansible-playbook: $FLEETDECK_ANSIBLE_VENV, then .venv-ansible, then $PATH."""
    for venv in (os.environ.get("FLEETDECK_ANSIBLE_VENV"), str(REPO / ".venv-ansible")):
        if venv and os.access(os.path.join(venv, "bin", "ansible-playbook"), os.X_OK):
            return os.path.join(venv, "bin", "ansible-playbook")
    return shutil.which("ansible-playbook")




def assert_root_owned_parents(root: Path, private_dir: Path) -> None:
    """The directories between ``root`` and ``private_dir`` (which the role created) are
    root's and 0755: only ``private_dir`` itself belongs to the service user. A parent
    owned by that user with mode 0700 outlives an uninstall and locks out a reinstalled
    service user with another uid."""
    for parent in private_dir.relative_to(root).parents:
        if parent == Path("."):
            continue
        info = (root / parent).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o755), (
            root / parent, info.st_uid, info.st_gid, oct(info.st_mode))


class Deployment:
    """One inventory (the sshd host) plus the variables of one install; ``run()`` plays."""

    def __init__(self, binary: str, sshd, console, workdir: Path, wheel: Path,  # noqa: ANN001
                 agent_wheel: Path, wheelhouse: Path) -> None:
        self.binary = binary
        self.console = console
        self.workdir = workdir
        self.suffix = uuid.uuid4().hex[:8]
        self.host_name = f"ansible-{self.suffix}"
        self.user = f"fdagent-{self.suffix}"
        self.console_user = f"fdconsole-{self.suffix}"
        self.wheel = wheel
        self.agent_wheel = agent_wheel
        self.pip_offline = f"--no-index --find-links {wheelhouse}"
        # Outside pytest's tmp (mode 0700, root's only): the agent user must traverse it.
        self.root = Path(tempfile.mkdtemp(prefix="fleetdeck-ansible-"))
        self.root.chmod(0o755)
        self.state_dir = self.root / "var/lib/fleetdeck-agent"
        self.inventory = workdir / "inventory.ini"
        ssh_args = f"-o UserKnownHostsFile={sshd.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        self.inventory.write_text(
            "[fleetdeck_agents]\n" f"{INVENTORY_HOST}\n" "[fleetdeck_console]\n" f"{INVENTORY_HOST}\n"
            "[all]\n"
            f"{INVENTORY_HOST} ansible_host={sshd.host} ansible_port={sshd.port} ansible_user={sshd.user} "
            f"ansible_ssh_private_key_file={sshd.client_key} ansible_ssh_common_args='{ssh_args}' "
            # No sudo in this container; su from root to root needs no password.
            f"ansible_become_method=su ansible_python_interpreter={shutil.which('python3')}\n")
        self.extra_vars = workdir / "vars.json"
        self.extra_vars.write_text(json.dumps({
            "fleetdeck_agent_console_url": console.url,
            "fleetdeck_agent_admin_token": console.api_token("admin", f"ansible-{self.suffix}"),
            "fleetdeck_agent_host": self.host_name,
            "fleetdeck_agent_package": str(agent_wheel),
            "fleetdeck_agent_pip_extra_args": self.pip_offline,
            "fleetdeck_agent_root": str(self.root),
            "fleetdeck_agent_user": self.user,
            "fleetdeck_agent_group": self.user,
            "fleetdeck_agent_interval": 2,
            # The system interpreter: python3 on root's PATH may live under /root (pyenv),
            # which the agent user cannot reach.
            "fleetdeck_agent_python": "/usr/bin/python3",
            "fleetdeck_agent_labels": {"env": "ansible-test"},
        }))
        self.env = dict(os.environ, ANSIBLE_HOME=str(workdir / "ansible-home"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="True",
                        ANSIBLE_REMOTE_TMP=str(workdir / "remote-tmp"),
                        ANSIBLE_LOCAL_TEMP=str(workdir / "local-tmp"), ANSIBLE_RETRY_FILES_ENABLED="False",
                        ANSIBLE_CONFIG=str(workdir / "ansible.cfg"))
        # An empty config of our own: no ansible.cfg of the machine or the user applies.
        (workdir / "ansible.cfg").write_text("[defaults]\n")

    def run(self, *args: str, playbook: Path = PLAYBOOK, extra_vars: Path | None = None,
            timeout: float = 600, env: dict[str, str] | None = None, succeeds: bool = True
            ) -> tuple[dict[str, int], str]:
        """Run a playbook (``env``: more environment); return (recap counts of the host,
        full output). Asserts rc 0, or non-zero when not ``succeeds``."""
        proc = subprocess.run([self.binary, "-i", str(self.inventory), "-e", f"@{extra_vars or self.extra_vars}",
                               str(playbook), *args], env={**self.env, **(env or {})}, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)
        output = proc.stdout + proc.stderr
        assert (proc.returncode == 0) == succeeds, output
        recaps = {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                  for m in RECAP.finditer(proc.stdout)}
        assert INVENTORY_HOST in recaps, output
        return recaps[INVENTORY_HOST], output

    def agent_pid(self) -> int | None:
        pid_file = self.state_dir / "agent.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def cleanup(self) -> None:
        """Leave nothing behind if a test failed before the uninstall test."""
        pid = self.agent_pid()
        if pid is not None:
            subprocess.run(["kill", str(pid)], check=False)
        for tool in (["userdel", self.user], ["groupdel", self.user],
                     ["userdel", self.console_user], ["groupdel", self.console_user]):
            subprocess.run(tool, check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of every dependency of the console and the agent, built once per run with the
    interpreter the roles install with (/usr/bin/python3): the roles install from it with
    ``--no-index --find-links`` (their ``*_pip_extra_args``, as docs/install.md describes
    for hosts without the package index) rather than from the index on every playbook run."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    built = subprocess.run([python, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(folder),
                            str(REPO), str(REPO / "agent"), "psycopg[binary]>=3.1,<4"],
                           capture_output=True, text=True, cwd=folder, timeout=900,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if built.returncode != 0:
        need("ansible", f"cannot build the wheelhouse with {python}: {built.stderr[-2000:]}")
    return folder


@pytest.fixture(scope="module")
def deployment(console, sshd, tmp_path_factory, wheelhouse):  # noqa: ANN001
    binary = ansible_playbook()
    if binary is None:
        need("ansible", "no ansible-playbook (pip install -r ansible/requirements-ansible.txt)")
    if shutil.which("start-stop-daemon") is None:
        need("ssh", "no start-stop-daemon to run the agent without systemd")
    workdir = tmp_path_factory.mktemp("ansible")
    dist = workdir / "dist"
    # The documented way to package Fleetdeck for the roles: wheels of this checkout.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(REPO), str(REPO / "agent")], check=True, capture_output=True, cwd=workdir)
    wheel = next(dist.glob("fleetdeck-*.whl"))
    agent_wheel = next(dist.glob("fleetdeck_agent-*.whl"))
    deployment = Deployment(binary, sshd, console, workdir, wheel, agent_wheel, wheelhouse)
    yield deployment
    deployment.cleanup()


def test_playbook_installs_enrols_and_the_agent_reports(deployment, console):  # noqa: ANN001
    if (deployment.root / "opt/fleetdeck-agent").exists():  # a test run before installed: start afresh
        recap, output = deployment.run("--tags", "uninstall")
        assert recap["failed"] == 0, output
    recap, output = deployment.run()
    assert recap["failed"] == 0 and recap["unreachable"] == 0, output
    assert recap["changed"] > 0, output

    # The agent runs as its own unprivileged user and reports to the console.
    pid = wait_for(deployment.agent_pid, 30, "the agent's pid file")
    uid = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Uid:")))
    assert pwd.getpwuid(uid).pw_name == deployment.user
    # The agent's distribution went in alone: psutil and PyYAML, nothing of the console.
    listed = subprocess.run([str(deployment.root / "opt/fleetdeck-agent/venv/bin/python"), "-m", "pip", "list",
                             "--format", "json"], capture_output=True, text=True, check=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert {p["name"].lower() for p in json.loads(listed.stdout)} - {"pip", "setuptools"} == {
        "fleetdeck-agent", "psutil", "pyyaml"}
    viewer = console.api_token("viewer")

    def reported():
        hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
        host = hosts.get(deployment.host_name)
        return host if host and host["up"] and host["config_hash"] else None

    host = wait_for(reported, 60, f"{deployment.host_name} to report; agent log: "
                    f"{(deployment.state_dir / 'agent.log').read_text(errors='replace') if (deployment.state_dir / 'agent.log').exists() else ''}")
    assert host["agent_version"] and host["labels"] == {"env": "ansible-test"}
    assert host["interval"] == 2

    # Enrolment wrote the host's agent token, readable by the agent user only.
    token_file = deployment.state_dir / "token"
    info = token_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and pwd.getpwuid(info.st_uid).pw_name == deployment.user
    assert_root_owned_parents(deployment.root, deployment.state_dir)
    unit = (deployment.root / "etc/systemd/system/fleetdeck-agent.service").read_text()
    for directive in ("Restart=on-failure", f"User={deployment.user}", "ProtectSystem=strict",
                      "NoNewPrivileges=yes", f"ReadWritePaths={deployment.state_dir}"):
        assert directive in unit

    # Idempotent: a second run changes nothing, enrols nothing and keeps the same agent.
    before = token_file.read_text()
    recap, output = deployment.run()
    assert recap["changed"] == 0 and recap["failed"] == 0, output
    assert token_file.read_text() == before
    assert deployment.agent_pid() == pid


def test_unit_file_passes_systemd_analyze(deployment):  # noqa: ANN001
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        need("systemd", "no systemd-analyze (Debian package systemd)")
    unit = deployment.root / "etc/systemd/system/fleetdeck-agent.service"
    if not unit.exists():  # run alone: install first rather than depend on the install test
        recap, output = deployment.run()
        assert recap["failed"] == 0 and unit.exists(), output
    # verify checks the unit's syntax and that ExecStart exists; it needs no running systemd.
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "fleetdeck-agent.service" in line]
    assert problems == [], proc.stdout + proc.stderr


def test_uninstall_tag_removes_everything(deployment):  # noqa: ANN001
    if not (deployment.root / "opt/fleetdeck-agent").exists():  # run first or alone: install first
        recap, output = deployment.run()
        assert recap["failed"] == 0, output
    pid = deployment.agent_pid()
    recap, output = deployment.run("--tags", "uninstall")
    assert recap["failed"] == 0 and recap["changed"] > 0, output
    if pid is not None:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, "the agent to stop")
    for path in ("opt/fleetdeck-agent", "etc/fleetdeck-agent", "var/lib/fleetdeck-agent",
                 "etc/systemd/system/fleetdeck-agent.service"):
        assert not (deployment.root / path).exists(), path
    with pytest.raises(KeyError):
        pwd.getpwnam(deployment.user)
    # What the uninstall leaves (the state directory's parents) is root's, so a reinstall
    # under a new uid (the old one may go to another user meanwhile) reaches its state.
    assert_root_owned_parents(deployment.root, deployment.state_dir)


def console_vars(deployment, name: str, root: Path, **more: object) -> Path:  # noqa: ANN001
    """The extra-vars file ``name`` for install-console.yml: the built packages, offline pip,
    everything under ``root``, the unit not started; ``more`` added."""
    extra = deployment.workdir / name
    extra.write_text(json.dumps({
        "fleetdeck_console_package": str(deployment.wheel),
        "fleetdeck_console_agent_package": str(deployment.agent_wheel),
        "fleetdeck_console_pip_extra_args": deployment.pip_offline,
        "fleetdeck_console_root": str(root),
        "fleetdeck_console_user": deployment.console_user,
        "fleetdeck_console_group": deployment.console_user,
        "fleetdeck_console_python": "/usr/bin/python3",
        "fleetdeck_console_start": False,
        **more,
    }))
    return extra


def test_console_playbook_installs_a_working_console(deployment):  # noqa: ANN001
    """install-console.yml over SSH, without starting the unit (no systemd here); then the
    installed console is started as its user from the written config.yaml and answers."""
    root = deployment.root / "console"
    port = free_port()
    extra = console_vars(deployment, "console-vars.json", root, fleetdeck_console_listen=f"127.0.0.1:{port}")
    playbook = REPO / "ansible" / "install-console.yml"
    recap, output = deployment.run(playbook=playbook, extra_vars=extra)
    assert recap["failed"] == 0 and recap["changed"] > 0, output
    recap, output = deployment.run(playbook=playbook, extra_vars=extra)
    assert recap["changed"] == 0, output

    config = root / "etc/fleetdeck/config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert_root_owned_parents(root, root / "var/lib/fleetdeck")
    unit = (root / "etc/systemd/system/fleetdeck.service").read_text()
    assert f"--config {config}" in unit and "Restart=on-failure" in unit and "ProtectSystem=strict" in unit
    console = subprocess.Popen(["runuser", "-u", deployment.console_user, "--",
                                str(root / "opt/fleetdeck/venv/bin/fleetdeck"), "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy():
            if console.poll() is not None:
                raise AssertionError(f"the console exited: {console.stdout.read()}")
            try:
                return http("GET", f"http://127.0.0.1:{port}/login", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, 60, "the installed console to serve its login page")
    finally:
        console.terminate()
        console.wait(20)
    assert (root / "var/lib/fleetdeck/fleetdeck.db").exists()

    recap, output = deployment.run("--tags", "uninstall", playbook=playbook, extra_vars=extra)
    assert recap["failed"] == 0, output
    assert not (root / "opt/fleetdeck").exists() and not config.exists()
    assert (root / "var/lib/fleetdeck/fleetdeck.db").exists()  # data is kept on uninstall


def test_a_failed_dashboard_copy_leaves_no_scratch_directory_on_the_controller(deployment):  # noqa: ANN001
    """The dashboard's files go over as an archive packed in a scratch directory on the
    controller; when packing fails (here: no such source directory) the play fails and the
    scratch directory is removed all the same."""
    root = deployment.root / "console-fail"
    controller_tmp = deployment.workdir / "controller-tmp"
    controller_tmp.mkdir()
    extra = console_vars(deployment, "console-fail-vars.json", root,
                         fleetdeck_console_web_src=str(deployment.workdir / "no-such-web"))
    recap, output = deployment.run(playbook=REPO / "ansible" / "install-console.yml", extra_vars=extra,
                                   env={"TMPDIR": str(controller_tmp)}, succeeds=False)
    assert "Pack the dashboard's templates" in output and "Remove the controller's scratch directory" in output, output
    assert recap["failed"] == 1, output
    assert list(controller_tmp.iterdir()) == [], output
