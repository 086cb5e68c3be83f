"""``kube402 dev up|down|status|upstream``: the whole local environment as background processes.

``up`` starts (idempotently) a real control plane, anvil made to look like Base Sepolia, ``kube402
facilitator``, ``verifier``, ``controller`` and real Traefik as the ingress, funds a buyer, seeds the
pricing configuration, and writes every endpoint to ``.kube402/dev.env``. ``upstream NAME -n NS`` adds a
demo OpenAI-compatible upstream on the test-host address with its Service (selector-less, plus an
EndpointSlice: the form Traefik routes to), ready for ``kube402 sell http``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from kube402.cli.errors import CliError, UsageError

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dev", help="local environment: control plane, anvil, Traefik, facilitator, verifier, controller"
    )
    p.add_argument("--dir", default=".kube402", help="state directory (default .kube402 in the working dir)")
    dsub = p.add_subparsers(dest="dev_command", metavar="up|down|status|upstream", required=True)
    up = dsub.add_parser("up", help="start everything (idempotent) and print the endpoints")
    up.add_argument("--workers", type=int, default=4, help="controller workers per queue")
    up.set_defaults(func=_up)
    dsub.add_parser("down", help="stop exactly the processes `up` started").set_defaults(func=_down)
    dsub.add_parser("status", help="show which processes are alive").set_defaults(func=_status)
    u = dsub.add_parser(
        "upstream", help="run the OpenAI-compatible demo upstream (with NAME: and its Service)"
    )
    u.add_argument(
        "name", nargs="?", help="Service name; without it the upstream runs in the foreground only"
    )
    u.add_argument("-n", "--namespace", default="default", help="namespace of the Service (default default)")
    u.add_argument(
        "--port",
        type=int,
        default=None,
        help="port on KUBE402_HOST_ADDRESS and of the Service (default: a free one)",
    )
    u.add_argument("--host", default="127.0.0.1", help="listen address in the foreground form")
    u.set_defaults(func=_upstream)


def _say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from kube402.devenv import services, stack

    t0 = time.monotonic()
    directory = Path(args.dir).resolve()

    async def run() -> bool:
        _, started = await stack.up(directory, progress=_say)
        _say("starting kube402 facilitator, verifier and controller (those not running)")
        await services.start(directory, controller_workers=args.workers, upstream=False)
        for line in await services.seed(directory):
            _say(line)
        return started

    started = asyncio.run(run())
    state = stack.load(directory)
    assert state is not None
    if started:
        _say(f"environment up in {time.monotonic() - t0:.1f}s (logs in {state.directory / 'logs'})")
    else:
        _say("environment already running")
    for line in state.env_lines():
        print(line)
    _say(f"source it with: set -a; . {state.env_file}; set +a")
    _say(
        "sell a demo service: kube402 dev upstream demo -n demo, then the `kube402 sell http` line it prints"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    from kube402.devenv import stack

    stopped = stack.down(Path(args.dir))
    _say("stopped " + (", ".join(stopped) if stopped else "nothing (no running environment)"))
    return 0


def _status(args: argparse.Namespace) -> int:
    from kube402.devenv import stack

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
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: must be in 1..65535")
    if args.name is None:
        return _upstream_foreground(args)
    from kube402.cli import sell_validate as check
    from kube402.devenv import services, stack

    check.check_name(args.name, flag="NAME", what="Service name")
    check.check_name(args.namespace, flag="--namespace", what="namespace")
    if stack.load(Path(args.dir).resolve()) is None:
        raise CliError(f"no local environment in {args.dir}: run `kube402 dev up` first")
    host, port = asyncio.run(services.demo_upstream(Path(args.dir), args.name, args.namespace, args.port))
    url = f"http://{host}:{port}"
    print(
        f"demo upstream {args.namespace}/{args.name} on {url} "
        f"(Service {args.namespace}/{args.name} port {port})"
    )
    state = stack.load(Path(args.dir).resolve())
    wallet = (state.extra.get("X402_WALLET") if state else None) or "0x…"
    print(
        f"sell it: kube402 sell http {args.name} -n {args.namespace} --upstream {args.name} --port {port} "
        f"--price 0.001 --wallet {wallet} --wait"
    )
    return 0


def _upstream_foreground(args: argparse.Namespace) -> int:
    import signal

    from kube402.devenv.upstream import TestUpstream

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = TestUpstream(port=args.port or 11434, host=args.host).start()
    _say(f"demo upstream on {server.url} (GET /health, POST /v1/chat/completions)")
    signal.sigwait(stop_signals)
    server.stop()
    return 0
