"""Proxy overhead: direct to the simulated upstream vs through ``tallygate serve``, interleaved.

    python -m bench.proxy                 # the table: 3 rounds x 5 s per cell and target
    python -m bench.proxy --rss           # RSS after 10k and 100k requests, and the peak

Starts the simulator (canned fast path, its own process) and the gateway (``tallygate serve``,
its own process, a fresh SQLite file, metering on: every request's events are committed before
its last byte), creates a key, then for each round, kind (non-streaming chat, 32-chunk stream
with ``include_usage``) and concurrency runs ``wrk`` against the upstream directly and through
the gateway, in alternating order. Reported per cell: medians over rounds of req/s and latency
p50/p90/p99, the gateway's added latency (median of the per-round differences), the gateway's
CPU time per request (``/proc/<pid>/stat`` utime+stime delta / requests), and the load average;
for streams, the time to the first SSE event at c=1. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine_info
from bench.proxy_load import first_event_times, require_wrk, run_wrk
from bench.proxy_stack import CpuSample, Stack, rss_kib
from proxy.simulator.client import SimulatorControl

MODEL = "gpt-4o-mini"
_MESSAGES = [{"role": "user", "content": "Say hello in one short sentence, please."}]
BODIES = {
    "chat": json.dumps({"model": MODEL, "messages": _MESSAGES}).encode(),
    "stream": json.dumps(
        {
            "model": MODEL,
            "messages": _MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode(),
}
PATH = "/v1/chat/completions"
OUT = Path(__file__).resolve().parent / "out"


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _measure(
    stack: Stack, target: str, kind: str, connections: int, seconds: float
) -> dict[str, Any]:
    base = stack.gateway_url if target == "gateway" else stack.upstream_url
    key = stack.key if target == "gateway" else "sk-bench-upstream"
    load = _loadavg()
    before = CpuSample.take(stack)
    result = run_wrk(
        base + PATH,
        key=key,
        body=BODIES[kind],
        connections=connections,
        seconds=seconds,
        workdir=stack.workdir,
    )
    after = CpuSample.take(stack)
    n = max(1, result.requests)
    gateway = after.gateway - before.gateway
    upstream = after.upstream - before.upstream
    wrk = after.children - before.children
    machine = after.machine - before.machine
    return {
        "target": target,
        "kind": kind,
        "c": connections,
        "requests": result.requests,
        "errors": result.errors,
        "rps": result.rps,
        "p50": result.p50,
        "p90": result.p90,
        "p99": result.p99,
        "max": result.max,
        "gateway_cpu_us": gateway / n * 1e6,
        "upstream_cpu_us": upstream / n * 1e6,
        "wrk_cpu_us": wrk / n * 1e6,
        # Busy CPU of everything else on the machine (other jobs) during the run, in cores.
        "others_cores": max(0.0, machine - gateway - upstream - wrk) / result.seconds,
        "load": load,
    }


def _probe(stack: Stack, target: str, count: int) -> dict[str, Any]:
    base = stack.gateway_url if target == "gateway" else stack.upstream_url
    key = stack.key if target == "gateway" else "sk-bench-upstream"
    load = _loadavg()
    times = first_event_times(base + PATH, key=key, body=BODIES["stream"], count=count)
    ordered = sorted(times)
    return {
        "target": target,
        "load": load,
        "ttfe_p50": statistics.median(times) * 1000,
        "ttfe_p90": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
    }


def run_table(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Every round of every cell; raw runs, in the order they ran."""
    runs: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    for kind in args.kinds:  # warm-up: imports, caches, connection pools
        for target in ("direct", "gateway"):
            _measure(stack, target, kind, 16, 2)
    for rnd in range(args.rounds):
        order = ("direct", "gateway") if rnd % 2 == 0 else ("gateway", "direct")
        for kind in args.kinds:
            for c in args.concurrency:
                for target in order:
                    run = _measure(stack, target, kind, c, args.seconds)
                    run["round"] = rnd
                    runs.append(run)
                    _say(run)
            if kind == "stream" and args.probe:
                for target in order:
                    probe = _probe(stack, target, args.probe)
                    probe["round"] = rnd
                    probes.append(probe)
                    print(
                        f"  probe {target:8} first event p50 {probe['ttfe_p50']:.3f} ms", flush=True
                    )
    return {"runs": runs, "probes": probes}


def _say(run: dict[str, Any]) -> None:
    print(
        f"  r{run.get('round', '-')} {run['kind']:6} c={run['c']:<3} {run['target']:8} "
        f"{run['rps']:8.0f} req/s  p50 {run['p50']:7.3f}  p99 {run['p99']:7.3f} ms  "
        f"gw cpu {run['gateway_cpu_us']:7.0f} us/req  up cpu {run['upstream_cpu_us']:5.0f}  "
        f"load {run['load']:.2f}  others {run['others_cores']:.2f} cores  err {run['errors']}",
        flush=True,
    )


def _med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(data: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (kind, concurrency): medians over rounds and per-round paired differences."""
    rows = []
    for kind in args.kinds:
        for c in args.concurrency:
            pick = [r for r in data["runs"] if r["kind"] == kind and r["c"] == c]
            by_round: dict[int, dict[str, dict[str, Any]]] = {}
            for r in pick:
                by_round.setdefault(r["round"], {})[r["target"]] = r
            pairs = [p for p in by_round.values() if len(p) == 2]
            d = [p["direct"] for p in pairs]
            g = [p["gateway"] for p in pairs]
            row = {"kind": kind, "c": c, "rounds": len(pairs)}
            for m in ("rps", "p50", "p90", "p99"):
                row[f"direct_{m}"] = _med([x[m] for x in d])
                row[f"gateway_{m}"] = _med([x[m] for x in g])
            for m in ("p50", "p90", "p99"):
                row[f"added_{m}"] = _med([p["gateway"][m] - p["direct"][m] for p in pairs])
            row["rps_ratio"] = _med([p["gateway"]["rps"] / p["direct"]["rps"] for p in pairs])
            row["gateway_cpu_us"] = _med([x["gateway_cpu_us"] for x in g])
            row["upstream_cpu_us"] = _med([x["upstream_cpu_us"] for x in d])
            row["load"] = [round(x["load"], 2) for x in g]
            row["others_cores"] = _med([x["others_cores"] for x in g])
            row["errors"] = sum(x["errors"] for x in d + g)
            rows.append(row)
    probes = data["probes"]
    if probes:
        rounds: dict[int, dict[str, float]] = {}
        for p in probes:
            rounds.setdefault(p["round"], {})[p["target"]] = p["ttfe_p50"]
        both = [x for x in rounds.values() if len(x) == 2]
        rows.append(
            {
                "kind": "stream-first-event",
                "c": 1,
                "direct_ttfe_p50": _med([x["direct"] for x in both]),
                "gateway_ttfe_p50": _med([x["gateway"] for x in both]),
                "added_ttfe_p50": _med([x["gateway"] - x["direct"] for x in both]),
                "load": [round(p["load"], 2) for p in probes if p["target"] == "gateway"],
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as markdown tables."""
    out = [
        "| kind | c | req/s direct / gw (ratio) | p50 direct / gw (+added) ms "
        "| p90 direct / gw (+added) ms | p99 direct / gw (+added) ms | gw CPU us/req "
        "| upstream CPU us/req | load avg (gw runs) | others' cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["kind"] == "stream-first-event":
            continue
        cells = [
            f"{r['direct_rps']:,.0f} / {r['gateway_rps']:,.0f} ({r['rps_ratio']:.2f})",
            *(
                f"{r[f'direct_{m}']:.3f} / {r[f'gateway_{m}']:.3f} (+{r[f'added_{m}']:.3f})"
                for m in ("p50", "p90", "p99")
            ),
            f"{r['gateway_cpu_us']:,.0f}",
            f"{r['upstream_cpu_us']:,.0f}",
            " ".join(f"{x:.2f}" for x in r["load"]),
            f"{r['others_cores']:.2f}",
        ]
        out.append(f"| {r['kind']} | {r['c']} | " + " | ".join(cells) + " |")
    for r in rows:
        if r["kind"] == "stream-first-event":
            out.append("")
            out.append(
                f"Time to first SSE event, c=1, p50: direct {r['direct_ttfe_p50']:.3f} ms, "
                f"gateway {r['gateway_ttfe_p50']:.3f} ms, added {r['added_ttfe_p50']:+.3f} ms "
                f"(load {' '.join(f'{x:.2f}' for x in r['load'])})"
            )
    return "\n".join(out)


def _estimated_events(stack: Stack) -> int:
    """Events committed so far with ``usage_source=estimated`` (the tiktoken fallback)."""
    with sqlite3.connect(stack.db) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM events"
            " WHERE json_extract(properties, '$.usage_source') = 'estimated'"
        ).fetchone()
    return int(count)


def load_the_tokenizer(stack: Stack) -> None:
    """One request whose upstream answer has no usage, so the gateway counts it with tiktoken.

    The fallback's first use loads the model's encoding (~45 MiB for o200k, once per process).
    wrk cuts the streams still in flight at the end of every run, and the gateway meters a cut
    stream with the fallback, so without this the RSS loop would load the encoding at a random
    moment and report a one-time cache as growth between two checkpoints. The simulator's
    canned chat path ignores faults, so this uses ``/v1/completions`` with one ``no_usage``.
    """
    before = _estimated_events(stack)
    with SimulatorControl(stack.upstream_url) as control:
        control.set_faults(no_usage=True, times=1)
    request = urllib.request.Request(  # noqa: S310 (loopback)
        stack.gateway_url + "/v1/completions",
        data=json.dumps({"model": MODEL, "prompt": "Say hello."}).encode(),
        headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        answer.read()
    if _estimated_events(stack) == before:
        raise RuntimeError("the gateway did not estimate the usage-less answer")


def run_rss(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Drive non-streaming and streaming load in turns; RSS at each checkpoint and the peak.

    The tokenizer is loaded first (``load_the_tokenizer``): every checkpoint includes it.
    Each mark records the estimated events so far: one-time loads show up there, leaks do not.
    """
    done = 0
    marks: list[dict[str, Any]] = []
    checkpoints = sorted(args.rss_at)
    start_rss, _ = rss_kib(stack.gateway_pid)
    load_the_tokenizer(stack)
    warm_rss, _ = rss_kib(stack.gateway_pid)
    print(
        f"  RSS at start {start_rss / 1024:.1f} MiB, "
        f"{warm_rss / 1024:.1f} MiB after the tokenizer's first use",
        flush=True,
    )
    turn = 0
    while checkpoints:
        kind = args.kinds[turn % len(args.kinds)]
        turn += 1
        result = run_wrk(
            stack.gateway_url + PATH,
            key=stack.key,
            body=BODIES[kind],
            connections=16,
            seconds=2,
            workdir=stack.workdir,
        )
        done += result.requests
        if result.errors:
            print(f"  {result.errors} errors in an RSS segment", flush=True)
        if done >= checkpoints[0]:
            rss, peak = rss_kib(stack.gateway_pid)
            estimated = _estimated_events(stack)
            marks.append(
                {
                    "requests": done,
                    "rss_kib": rss,
                    "peak_kib": peak,
                    "estimated_events": estimated,
                    "load": _loadavg(),
                }
            )
            print(
                f"  after {done:,} requests: RSS {rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
                f"({estimated} estimated events, load {_loadavg():.2f})"
            )
            checkpoints.pop(0)
    return {
        "start_rss_kib": start_rss,
        "warm_rss_kib": warm_rss,
        "marks": marks,
        "events": stack.events(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--kinds", nargs="+", default=["chat", "stream"], choices=["chat", "stream"]
    )
    parser.add_argument("--chunks", type=int, default=32, help="content chunks per answer")
    parser.add_argument(
        "--chunk-delay-ms", type=int, default=0, help="pause between streamed events (model pace)"
    )
    parser.add_argument(
        "--probe", type=int, default=300, help="streams per first-event probe (0: off)"
    )
    parser.add_argument(
        "--rss", action="store_true", help="measure RSS growth instead of the table"
    )
    parser.add_argument("--rss-at", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--upstream-loop", default="auto", choices=["asyncio", "uvloop", "auto"])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints progress, the summary and where the JSON went."""
    args = _parser().parse_args(argv)
    require_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="tallygate-bench-"))
    info = machine_info()
    for package in ("uvloop", "httptools", "granian", "httpcore"):
        try:
            from importlib import metadata

            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    started = datetime.now(UTC)
    print(f"bench.proxy {started:%Y-%m-%d %H:%M} UTC, {info}", flush=True)
    stack = Stack(
        workdir=workdir,
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        upstream_loop=args.upstream_loop,
    )
    with stack:
        print(
            f"  upstream {stack.upstream_url} (pid {stack.upstream_pid}), "
            f"gateway {stack.gateway_url} (pid {stack.gateway_pid})",
            flush=True,
        )
        result: dict[str, Any] = {"machine": info, "argv": sys.argv, "started": started.isoformat()}
        if args.rss:
            result["rss"] = run_rss(stack, args)
        else:
            data = run_table(stack, args)
            rows = summarise(data, args)
            result.update(data, summary=rows)
            rss, peak = rss_kib(stack.gateway_pid)
            result["gateway_rss_kib"] = {"rss": rss, "peak": peak}
            time.sleep(0.5)
            result["events"] = stack.events()
            print()
            print(markdown(rows))
            print(
                f"\ngateway RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB); "
                f"{result['events']:,} events committed"
            )
    OUT.mkdir(exist_ok=True)
    out = OUT / f"proxy-{started:%Y%m%dT%H%M%S}{'-rss' if args.rss else ''}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"raw results: {out}")
    if not args.keep:
        for path in sorted(workdir.iterdir()):
            path.unlink()
        workdir.rmdir()
    else:
        print(f"kept {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
