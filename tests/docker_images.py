"""Test images built FROM scratch with Debian's busybox-static (no registry is reachable).

``build_test_images(client, repository)`` builds, under ``repository`` (e.g.
``fleetdeck-test/web``), the tags:

- ``1.0`` and ``2.0``: busybox httpd on port 8080 serving ``web 1.0`` / ``web 2.0`` at
  ``/`` and ``ok`` at ``/healthz``, with a HEALTHCHECK fetching ``/healthz`` every second;
- ``bad``: serves ``/`` but has no ``/healthz``, so its health check fails;
- ``crash``: prints ``boom`` and exits with status 3 at once;
- ``slow``: sleeps 600 s before serving, in a 600 s health start period (stays "starting").
"""
from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
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
