"""Fleet bench: N simulated agents through nginx to 2 console replicas on one PostgreSQL
schema, one replica killed with SIGKILL half-way.

Each agent sends one batch of 20 series every 10 s in the agent's body shape (gzip JSON,
``Content-Encoding: gzip``, a fresh ``batch_id`` per batch, as ``agents/client.py``) over its
own HTTP/1.1 keep-alive connection to a real nginx on loopback (the configuration of
docs/scaling.md), which balances over two ``fleetdeck serve`` processes sharing a private
schema of ``$FLEETDECK_TEST_POSTGRES_URL`` and the secrets docs/scaling.md names. Agent tokens
are real, made by the console's own token code (as ``fleetdeck token create --agent``). A
batch that fails (connection refused or reset, a 5xx, a timeout) is sent again with the same
``batch_id`` after the agent's exponential backoff (0.5 s doubling to 30 s). Agents are
asyncio coroutines (asyncio streams) in ``--procs`` generator processes.

Half-way the leader replica (``fleetdeck_leader 1`` on its /metrics) is killed with SIGKILL.
At the end, after the agents stop making batches and retries drain, the database is checked:
every acknowledged batch id is in ``ingest_batches`` once and each host holds exactly 20
samples per acknowledged batch, at exactly the batches' timestamps.

Printed: lost batches (acknowledged and not stored, or not acknowledged ``--drain`` seconds
after the last batch was due: an agent would still hold these in its spool), duplicated batches
(stored more than once, or stored that were never sent), batch latency p50/p99 (each
attempt's request-to-answer time, and the time to acknowledgement including retries),
per-replica CPU (psutil, user + system, in cores over its lifetime in the run), the
generators' own CPU, how long the leader's run-once jobs took to move (SIGKILL to
``fleetdeck_leader 1`` on the survivor, polled every 0.1 s) and the load average.
Exits 1 when any batch was lost or duplicated.

    python bench/fleet.py [--agents 10000] [--minutes 10] [--procs 2]
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import TOKENS, free_port, series_of  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402

SERIES = 20
INTERVAL = 10.0
BACKOFF = (0.5, 30.0)  # the agent's retry_min_backoff / retry_max_backoff defaults
NGINX = "/usr/sbin/nginx"
# docs/scaling.md's configuration, with connection limits for the fleet.
NGINX_CONF = """
daemon off;
worker_processes 1;
worker_rlimit_nofile {files};
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream fleetdeck {{ {servers} }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://fleetdeck;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class AgentResult:
    host: str
    acked: dict[str, int] = field(default_factory=dict)  # batch_id -> ts (ms) of its points
    unacked: dict[str, int] = field(default_factory=dict)  # batch_id -> ts, never acknowledged
    replays: int = 0  # answers "duplicate": a retried batch the console had already stored


@dataclass
class WorkerResult:
    agents: list[AgentResult]
    attempts: list[float]  # seconds, request written -> answer read, 200s only
    acks: list[float]  # seconds, batch due -> acknowledged, retries included
    failures: dict[str, int]
    cpu: float


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool, float]:
    """One HTTP/1.1 response -> (status, body, the server keeps the connection, Retry-After seconds or 0)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    retry_after = headers.get("retry-after", "0")
    return (status, body, headers.get("connection", "").lower() != "close",
            float(retry_after) if retry_after.isdigit() else 0.0)


async def agent(host: str, token: str, port: int, start: float, stop: float, drain: float,
                out: WorkerResult) -> AgentResult:
    rnd = random.Random(host)
    result = AgentResult(host)
    series = [{"name": name, "type": "gauge", "labels": labels} for name, labels in series_of(SERIES)]
    head = (f"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\nAccept: application/json\r\n"
            "Content-Length: {}\r\n\r\n")
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    due = start + rnd.random() * INTERVAL  # agents start spread over one interval
    while due < stop:
        await asyncio.sleep(max(0.0, due - time.time()))
        ts = int(time.time() * 1000)
        batch_id = uuid.uuid4().hex
        doc = {"host": host, "batch_id": batch_id, "sent_at": time.time(),
               "agent": {"version": "fleet-bench", "interval": INTERVAL},
               "metrics": [dict(s, points=[[ts, round(rnd.random() * 1e6, 3)]]) for s in series]}
        body = gzip.compress(orjson.dumps(doc), 6)
        request = head.format(len(body)).encode() + body
        backoff = BACKOFF[0]
        while True:
            wait_at_least = 0.0
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                t = time.perf_counter()
                conn[1].write(request)
                status, answer, keep, retry_after = await asyncio.wait_for(read_answer(conn[0]), 30)
                if not keep:
                    conn[1].close()
                    conn = None
                if status == 200:
                    out.attempts.append(time.perf_counter() - t)
                    out.acks.append(time.time() - due)
                    result.acked[batch_id] = ts
                    result.replays += bool(orjson.loads(answer).get("duplicate"))
                    break
                code = orjson.loads(answer).get("error", {}).get("code", "") if answer[:1] == b"{" else ""
                out.failures[f"HTTP {status} {code}"] = out.failures.get(f"HTTP {status} {code}", 0) + 1
                if status < 500 and status != 429:
                    raise RuntimeError(f"{host}: ingest refused {status}: {answer[:300]!r}")
                wait_at_least = retry_after
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                out.failures[type(exc).__name__] = out.failures.get(type(exc).__name__, 0) + 1
                if conn is not None:
                    conn[1].close()
                    conn = None
            if time.time() > drain:
                result.unacked[batch_id] = ts
                break
            await asyncio.sleep(max(wait_at_least, backoff * (0.5 + rnd.random() / 2)))  # as the agent
            backoff = min(BACKOFF[1], backoff * 2)
        due += INTERVAL
    if conn is not None:
        conn[1].close()
    return result


def worker(job: tuple[list[tuple[str, str]], int, float, float, float]) -> WorkerResult:
    """Run one generator process's agents to the end; its results and own CPU seconds."""
    agents, port, start, stop, drain = job
    out = WorkerResult([], [], [], {}, 0.0)

    async def run() -> None:
        out.agents = list(await asyncio.gather(*(agent(h, t, port, start, stop, drain, out) for h, t in agents)))

    cpu = time.process_time()
    asyncio.run(run())
    out.cpu = time.process_time() - cpu
    return out


def get(url: str, timeout: float = 2) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback http only
        return resp.read().decode()


def leader(port: int) -> bool:
    try:
        match = re.search(r"^fleetdeck_leader (\S+)$", get(f"http://127.0.0.1:{port}/metrics"), re.M)
    except OSError:
        return False
    return bool(match and float(match.group(1)) == 1)


def wait(check, seconds: float, what: str) -> None:  # noqa: ANN001
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_replica(work: Path, n: int, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    data = work / f"replica-{n}"
    data.mkdir()
    log = open(data / "console.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "console.cli", "serve"], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT,
                            env=dict(env, FLEETDECK_DATA_DIR=str(data), FLEETDECK_LISTEN=f"127.0.0.1:{port}"))

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"replica {n} exited: {(data / 'console.log').read_text()[-2000:]}")
        try:
            return get(f"http://127.0.0.1:{port}/readyz").strip() != ""
        except OSError:
            return False

    wait(ready, 120, f"replica {n} to answer /readyz")
    return proc, port


def check_database(url: str, results: list[AgentResult]) -> tuple[int, int, int]:
    """-> (acknowledged and not stored, never acknowledged, duplicated) batches, from what
    the database holds for every host."""
    import psycopg

    lost = unacked = dup = 0
    with psycopg.connect(url) as conn:
        stored: dict[str, dict[str, int]] = {}
        for host, batch_id, samples in conn.execute(
                "SELECT h.name, b.batch_id, b.samples FROM ingest_batches b JOIN hosts h ON h.id = b.host_id"):
            stored.setdefault(host, {})[batch_id] = samples
        points: dict[str, dict[int, int]] = {}
        for host, ts, n in conn.execute(
                "SELECT h.name, s.ts, count(*) FROM samples s JOIN series r ON r.id = s.series_id "
                "JOIN hosts h ON h.id = r.host_id GROUP BY h.name, s.ts"):
            points.setdefault(host, {})[ts] = n
        # What the idempotency window costs: bytes of ingest_batches (table + indexes) per batch id.
        size = conn.execute("SELECT pg_total_relation_size('ingest_batches')").fetchone()
        print(f"ingest_batches: {size[0] if size else 0} bytes for {sum(map(len, stored.values()))} batch ids "
              f"({(size[0] if size else 0) / max(1, sum(map(len, stored.values()))):.0f} B each)", flush=True)
    for r in results:
        ids, at = stored.get(r.host, {}), points.get(r.host, {})
        for batch_id, ts in r.acked.items():
            if batch_id not in ids or at.get(ts, 0) < SERIES:
                lost += 1
            elif at[ts] > SERIES or ids[batch_id] > SERIES:
                dup += 1
        unacked += len(r.unacked)
        sent = set(r.acked) | set(r.unacked)
        dup += len(set(ids) - sent)  # a batch id stored that this agent never sent
        # Samples at a timestamp of no batch sent, or more than one batch's worth at an
        # unacknowledged batch's (one stored but never answered is not a duplicate).
        dup += len(set(at) - set(r.acked.values()) - set(r.unacked.values()))
        dup += sum(at.get(ts, 0) > SERIES for ts in r.unacked.values())
    return lost, unacked, dup


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2, help="generator processes")
    ap.add_argument("--drain", type=float, default=90.0, help="seconds for retries after the last batch is due")
    args = ap.parse_args()
    base = os.environ.get("FLEETDECK_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("set FLEETDECK_TEST_POSTGRES_URL")
    if not Path(NGINX).exists():
        raise SystemExit(f"{NGINX} is not installed")
    schema = f"fleet_{uuid.uuid4().hex[:10]}"
    db_url = create_schema(base, schema)
    work = Path(tempfile.mkdtemp(prefix="fd-fleet-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_") and "proxy" not in k.lower()}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               FLEETDECK_DATABASE_URL=db_url, FLEETDECK_COOKIE_SECRET=secrets.token_urlsafe(48),
               FLEETDECK_SECRET_KEY=Fernet.generate_key().decode())
    procs: list[subprocess.Popen] = []
    nginx = None
    print(f"load average before: {os.getloadavg()}; work dir {work}; schema {schema}", flush=True)
    try:
        first = start_replica(work, 0, env)  # applies the migrations
        second = start_replica(work, 1, env)
        replicas = [first, second]
        procs += [first[0], second[0]]
        hosts = [f"fleet-{i}" for i in range(args.agents)]
        t = time.monotonic()
        made = subprocess.run([sys.executable, "-c", TOKENS, *hosts], env=dict(env, FLEETDECK_DATA_DIR=str(work)),
                              cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
        print(f"{len(made)} agent tokens made in {time.monotonic() - t:.1f} s", flush=True)
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=work, port=port, files=min(1_048_576, 4 * args.agents + 1024),
                                          connections=3 * args.agents + 512,
                                          servers=" ".join(f"server 127.0.0.1:{p};" for _, p in replicas)))
        nginx = subprocess.Popen([NGINX, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: _up(port), 20, "nginx")
        wait(lambda: any(leader(p) for _, p in replicas), 30, "a leader")
        victim = next(i for i, (_, p) in enumerate(replicas) if leader(p))
        survivor = replicas[1 - victim]
        psprocs = [psutil.Process(p.pid) for p, _ in replicas]
        cpu0 = [sum(pp.cpu_times()[:2]) for pp in psprocs]
        start = time.time() + 2
        stop = start + args.minutes * 60
        jobs = [(list(zip(hosts, made))[i::args.procs], port, start, stop, stop + args.drain)
                for i in range(args.procs)]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.procs) as pool:
            pending = pool.map_async(worker, jobs)
            time.sleep(max(0.0, start + (stop - start) / 2 - time.time()))
            victim_cpu = sum(psprocs[victim].cpu_times()[:2]) - cpu0[victim]
            survivor_before = sum(psprocs[1 - victim].cpu_times()[:2]) - cpu0[1 - victim]
            replicas[victim][0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim_alive = time.time() - start
            load_at_kill = os.getloadavg()
            while not leader(survivor[1]):
                if time.monotonic() - killed > 120:
                    raise SystemExit("the survivor did not take leadership within 120 s")
                time.sleep(0.1)
            moved = time.monotonic() - killed
            print(f"replica {victim} (the leader) killed with SIGKILL at {victim_alive:.0f} s; the survivor "
                  f"leads {moved:.1f} s later; load {load_at_kill}", flush=True)
            results: list[WorkerResult] = pending.get()
        survivor_cpu = sum(psprocs[1 - victim].cpu_times()[:2]) - cpu0[1 - victim]
        survivor_alive = time.time() - start
        load_end = os.getloadavg()
        agents = [a for r in results for a in r.agents]
        lost, unacked, dup = check_database(db_url.replace("+psycopg", ""), agents)
        attempts = [x for r in results for x in r.attempts]
        acks = [x for r in results for x in r.acks]
        failures: dict[str, int] = {}
        for r in results:
            for k, v in r.failures.items():
                failures[k] = failures.get(k, 0) + v
        gen_cpu = sum(r.cpu for r in results)
        batches = sum(len(a.acked) for a in agents)
        seconds = stop - start
        print(f"RESULT agents={args.agents} minutes={args.minutes:g} procs={args.procs}: "
              f"{batches} batches acknowledged ({batches * SERIES / seconds:,.0f} samples/s, "
              f"{batches / seconds:,.1f} batches/s), lost {lost + unacked} ({lost} acknowledged and not stored, "
              f"{unacked} not acknowledged {args.drain:g} s after the last was due), duplicated {dup}, "
              f"replays answered duplicate {sum(a.replays for a in agents)}, failed attempts {failures}", flush=True)
        print(f"RESULT latency per attempt p50 {pct(attempts, 0.5):.0f} ms p99 {pct(attempts, 0.99):.0f} ms; "
              f"to acknowledgement incl. retries p50 {pct(acks, 0.5):.0f} ms p99 {pct(acks, 0.99):.0f} ms "
              f"max {max(acks, default=0) * 1000:.0f} ms", flush=True)
        alone = survivor_alive - victim_alive
        print(f"RESULT CPU (user + system): killed replica {victim_cpu / victim_alive:.2f} cores over "
              f"{victim_alive:.0f} s; survivor {survivor_before / victim_alive:.2f} cores beside it, then "
              f"{(survivor_cpu - survivor_before) / alone:.2f} cores alone over {alone:.0f} s; both replicas "
              f"{(victim_cpu + survivor_cpu) / max(1, batches) * 1000:.2f} ms CPU per batch; generators "
              f"{gen_cpu / survivor_alive:.2f} cores; leadership moved in {moved:.1f} s; "
              f"load average at kill {load_at_kill}, at end {load_end}", flush=True)
        return 1 if lost or unacked or dup else 0
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        drop_schema(base, schema)
        shutil.rmtree(work, ignore_errors=True)


def _up(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz") is not None
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
