"""``kube402 dev up|down|status``: the local environment (real control plane + anvil) in the background."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from kube402.devenv import stack

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dev", help="local environment: real kube-apiserver + etcd + anvil")
    p.add_argument("--dir", default=".kube402", help="state directory (default .kube402 in the working dir)")
    dsub = p.add_subparsers(dest="dev_command", metavar="up|down|status", required=True)
    dsub.add_parser("up", help="start (idempotent) and print the endpoints").set_defaults(func=_up)
    dsub.add_parser("down", help="stop exactly the processes `up` started").set_defaults(func=_down)
    dsub.add_parser("status", help="show which processes are alive").set_defaults(func=_status)
    up = dsub.add_parser("upstream", help="serve the OpenAI-compatible demo/test upstream (foreground)")
    up.add_argument("--port", type=int, default=11434)
    up.add_argument("--host", default="127.0.0.1")
    up.set_defaults(func=_upstream)


def _say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    state, started = asyncio.run(stack.up(Path(args.dir), progress=_say))
    if started:
        _say(f"environment up in {time.monotonic() - t0:.1f}s (logs in {state.directory / 'logs'})")
    else:
        _say("environment already running")
    for line in state.env_lines():
        print(line)
    _say(f"source it with: set -a; . {state.env_file}; set +a")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = stack.down(Path(args.dir))
    _say("stopped " + (", ".join(stopped) if stopped else "nothing (no running environment)"))
    return 0


def _status(args: argparse.Namespace) -> int:
    st = stack.status(Path(args.dir))
    if not st:
        print("no environment in", args.dir)
        return 1
    state = stack.load(Path(args.dir))
    for name, alive in st.items():
        pid = state.pids[name] if state else "?"
        print(f"{name:26} pid {pid:<8} {'running' if alive else 'DEAD'}")
    if state:
        for line in state.env_lines():
            print(line)
    return 0 if all(st.values()) else 1


def _upstream(args: argparse.Namespace) -> int:
    import signal

    from kube402.devenv.upstream import TestUpstream

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = TestUpstream(port=args.port, host=args.host).start()
    _say(f"demo upstream on {server.url} (GET /health, POST /v1/chat/completions)")
    signal.sigwait(stop_signals)
    server.stop()
    return 0
