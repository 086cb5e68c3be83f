"""``kube402 buyer``: the paying sidecar (SPEC §9). It spends pre-signed vouchers and never holds a key.

``--config-dir DIR`` reads ``config.json`` / ``auths.json`` as the two ConfigMaps are mounted (directly in DIR
or one directory below, e.g. ``DIR/config/config.json``); ``--kubeconfig`` with ``--namespace`` watches the
ConfigMaps ``x402-buyer-config`` and ``x402-buyer-auths`` in the cluster instead. Both reload on change.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("buyer", help="run the paying buyer proxy (OpenAI-compatible, pays from vouchers)")
    p.add_argument("--listen", default="127.0.0.1:8402", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument(
        "--state-file",
        default="/state/consumed.json",
        help="where consumed voucher nonces are kept (default %(default)s)",
    )
    p.add_argument("--config-dir", default=None, help="directory holding config.json and auths.json")
    p.add_argument("--kubeconfig", default=None, help="read the ConfigMaps from this cluster instead")
    p.add_argument("--namespace", default=None, help="namespace of x402-buyer-config / x402-buyer-auths")
    p.add_argument(
        "--upstream-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a seller's answer (default %(default)s)",
    )
    p.add_argument("--poll-seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _problem(args: argparse.Namespace) -> str | None:
    if args.config_dir is None and args.namespace is None:
        return "give --config-dir DIR, or --namespace NS (with --kubeconfig) to read the ConfigMaps"
    if args.config_dir is not None and (args.namespace is not None or args.kubeconfig is not None):
        return "--config-dir and --kubeconfig/--namespace are exclusive: choose one config source"
    _host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return f"--listen must be HOST:PORT, got {args.listen!r}"
    if args.upstream_timeout <= 0:
        return "--upstream-timeout must be positive"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"kube402 buyer: {problem}")
        return 2
    from kube402.buyer.ledger import StateError
    from kube402.buyer.main import Options
    from kube402.buyer.main import run as run_buyer

    options = Options(
        state_file=args.state_file,
        listen=args.listen,
        config_dir=args.config_dir,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        poll_seconds=args.poll_seconds,
        upstream_timeout=args.upstream_timeout,
    )
    try:
        import uvloop

        return uvloop.run(run_buyer(options))
    except StateError as err:
        print(
            f"kube402 buyer: --state-file {args.state_file}: {err}; fix or remove it "
            "(the vouchers listed there are spent)"
        )
        return 1
    except OSError as err:
        print(f"kube402 buyer: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
