"""Test images built FROM scratch with Debian's busybox-static (no registry is reachable).

``build_test_images(client, repository)`` builds, under ``repository`` (e.g.
``fleetdeck-test/web``), the tags:

- ``1.0`` and ``2.0``: busybox httpd on port 8080 serving ``web 1.0`` / ``web 2.0`` at
  ``/`` and ``ok`` at ``/healthz``, with a HEALTHCHECK fetching ``/healthz`` every second;
- ``bad``: serves ``/`` but has no ``/healthz``, so its health check fails;
- ``crash``: prints ``boom`` and exits with status 3 at once;
- ``slow``: sleeps 600 s before serving, in a 600 s health start period (stays "starting").
- ``flaky`` (built on request, not in TAGS): serves ``web flaky`` like ``1.0``, but counts
  its starts in files under ``/state`` (mount a directory there) and crashes (``boom``, exit
  status 3) from start number ``$GOOD_STARTS`` + 1 on (default 1): a rolling update to it
  gets that many rounds in before it fails.

Every Docker resource a test run creates carries this run's id, so that a run cleans up only
what it made and two runs on one daemon (or a user's own containers) are left alone: images
live under ``run_repository()``, apps are named ``run_app(name)`` (``t<run id>-<name>``) and
carry the ``fleetdeck-test.run=<run id>`` label (``run_labels()``), and
``remove_run_containers`` removes only containers with that label.
"""
from __future__ import annotations

import io
import secrets
import shutil
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
# One id per test process: lowercase hex, valid in app names, image repositories and labels.
RUN_ID = secrets.token_hex(4)
RUN_LABEL = "fleetdeck-test.run"  # fleetdeck.* labels are reserved for the driver


def run_app(name: str) -> str:
    """This run's name for the test app ``name``: ``t<run id>-<name>`` (fits APP_NAME_RE)."""
    return f"t{RUN_ID}-{name}"


def run_repository() -> str:
    """This run's image repository for the test images."""
    return f"fleetdeck-test/t{RUN_ID}-web"


def run_labels() -> dict[str, str]:
    """Labels marking a Docker resource as this run's (for an app's ``target.labels``)."""
    return {RUN_LABEL: RUN_ID}


def remove_run_containers(client, app: str | None = None) -> int:
    """Force-remove this run's containers (all of them, or those of app ``app``, a name
    from ``run_app``); containers without this run's label are never touched. Returns the
    number removed."""
    filters = [f"{RUN_LABEL}={RUN_ID}"] + ([f"fleetdeck.app={app}"] if app else [])
    found = client.containers.list(all=True, filters={"label": filters})
    for c in found:
        c.remove(force=True)
    return len(found)
HEALTHCHECK = ('HEALTHCHECK --interval=1s --timeout=2s {start}--retries=2 '
               'CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]')
SERVE = 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]'


def _dockerfile(tag: str) -> str:
    lines = ["FROM scratch", "COPY busybox /bin/busybox", 'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
             "RUN mkdir -p /www /tmp"]
    if tag in ("1.0", "2.0"):
        lines += [f"RUN echo 'web {tag}' > /www/index.html && echo ok > /www/healthz",
                  HEALTHCHECK.format(start=""), SERVE]
    elif tag == "bad":
        lines += ["RUN echo 'web bad' > /www/index.html", HEALTHCHECK.format(start=""), SERVE]
    elif tag == "crash":
        lines += [HEALTHCHECK.format(start=""), 'CMD ["sh", "-c", "echo boom; exit 3"]']
    elif tag == "slow":
        lines += ["RUN echo 'web slow' > /www/index.html && echo ok > /www/healthz",
                  HEALTHCHECK.format(start="--start-period=600s "), 'CMD ["sh", "-c", "sleep 600; exec httpd -f -p 8080 -h /www"]']
    elif tag == "flaky":
        lines += ["RUN echo 'web flaky' > /www/index.html && echo ok > /www/healthz", HEALTHCHECK.format(start=""),
                  'CMD ["sh", "-c", "n=$(ls /state | wc -l); touch /state/$HOSTNAME; '
                  'if [ $n -ge ${GOOD_STARTS:-1} ]; then echo boom; exit 3; fi; exec httpd -f -p 8080 -h /www"]']
    else:
        raise ValueError(tag)
    return "\n".join(lines) + "\n"


TAGS = ("1.0", "2.0", "bad", "crash", "slow")


def build_test_images(client, repository: str = "fleetdeck-test/web", tags=TAGS) -> list[str]:
    """Build the images with the legacy builder through ``client`` (docker-py); returns the
    references. Raises FileNotFoundError without /bin/busybox (Debian's busybox-static)."""
    if not BUSYBOX.exists() or shutil.which("busybox") is None:
        raise FileNotFoundError("/bin/busybox (Debian package busybox-static) is required")
    refs = []
    for tag in tags:
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            tar.add(str(BUSYBOX), arcname="busybox")
            dockerfile = _dockerfile(tag).encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
        context.seek(0)
        client.images.build(fileobj=context, custom_context=True, tag=f"{repository}:{tag}", rm=True,
                            forcerm=True)
        refs.append(f"{repository}:{tag}")
    return refs
