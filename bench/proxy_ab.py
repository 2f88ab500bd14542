"""A/B of two gateway builds: the same load, alternating, the gateway's CPU per request.

``python -m bench.proxy`` compares the gateway with a direct call; this compares two gateways
(two checkouts, each with its own ``tallygate`` command) in the same minutes, so that the
host's own drift (about 1.5x between runs on a shared VM, bench/RESULTS.md) cancels out.
Each build gets its own simulator and store; the rounds alternate A, B then B, A. By default
the gateways run on CPU 0 and the simulators and ``wrk`` on the other CPUs, which keeps the
gateways from being preempted by the load they measure (``--no-pin`` to let them float).

    python -m bench.proxy_ab --a ../base/.venv/bin/tallygate --b .venv/bin/tallygate
    python -m bench.proxy_ab --a ... --b ... --kind stream --concurrency 16 --rounds 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.proxy import BODIES, PATH
from bench.proxy_load import require_wrk, run_wrk
from bench.proxy_stack import Stack, process_cpu

__all__ = ["main"]


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (a process's own affinity call only moves its main thread)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy_ab", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--a", required=True, help="the A build's tallygate command")
    parser.add_argument("--b", required=True, help="the B build's tallygate command")
    parser.add_argument("--kind", default="chat", choices=["chat", "stream"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0, help="per wrk run")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the OS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the A/B; prints each round and the medians."""
    args = _parser().parse_args(argv)
    require_wrk()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    body = BODIES[args.kind]
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    rps: dict[str, list[float]] = {"A": [], "B": []}
    p50: dict[str, list[float]] = {"A": [], "B": []}
    p99: dict[str, list[float]] = {"A": [], "B": []}
    with ExitStack() as stack:
        stacks = {}
        for name, command in (("A", args.a), ("B", args.b)):
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            stacks[name] = stack.enter_context(Stack(workdir, tallygate=command))
        if pin:
            others = os.sched_getaffinity(0) - {0}
            for running in stacks.values():
                _pin(running.gateway_pid, {0})
                _pin(running.upstream_pid, others)
            os.sched_setaffinity(0, others)  # and wrk, which this process starts
        for running in stacks.values():  # warm-up: connections, caches, the store's pages
            url = running.gateway_url + PATH
            run_wrk(
                url,
                key=running.key,
                body=body,
                connections=args.concurrency,
                seconds=2,
                workdir=running.workdir,
            )
        for number in range(args.rounds):
            for name in ("A", "B") if number % 2 == 0 else ("B", "A"):
                running = stacks[name]
                before = process_cpu(running.gateway_pid)
                result = run_wrk(
                    running.gateway_url + PATH,
                    key=running.key,
                    body=body,
                    connections=args.concurrency,
                    seconds=args.seconds,
                    workdir=running.workdir,
                )
                used = process_cpu(running.gateway_pid) - before
                cpu[name].append(used / max(1, result.requests) * 1e6)
                rps[name].append(result.rps)
                p50[name].append(result.p50)
                p99[name].append(result.p99)
            print(f"  round {number}: A {cpu['A'][-1]:.0f} us, B {cpu['B'][-1]:.0f} us", flush=True)
    where = "pinned (gateways on CPU 0)" if pin else "not pinned"
    print(f"{args.kind} c={args.concurrency}, {args.rounds} rounds x {args.seconds:g} s, {where}:")
    for name in ("A", "B"):
        print(
            f"  {name}: CPU per request median {statistics.median(cpu[name]):.0f} us "
            f"(min {min(cpu[name]):.0f}), {statistics.median(rps[name]):,.0f} req/s, "
            f"p50 {statistics.median(p50[name]):.3f} ms, p99 {statistics.median(p99[name]):.3f} ms"
        )
    ratio = statistics.median(cpu["B"]) / statistics.median(cpu["A"])
    print(f"  B/A CPU per request: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
