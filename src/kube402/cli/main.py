"""``kube402``: one console script for every process and for the seller/buyer CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kube402 import __version__
from kube402.cli import logs

__all__ = ["entry", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kube402", description="Sell HTTP services for x402 stablecoin micropayments on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"kube402 {__version__}")
    parser.add_argument("--log-level", default="info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from kube402.cli import (
        buy_cmd,
        buyer_cmd,
        catalog_cmd,
        controller_cmd,
        dev_cmd,
        facilitator_cmd,
        verifier_cmd,
    )

    for module in (
        controller_cmd,
        verifier_cmd,
        facilitator_cmd,
        dev_cmd,
        buyer_cmd,
        buy_cmd,
        catalog_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logs.setup(args.log_level, json_logs=getattr(args, "json_logs", True))
    result: int = args.func(args)
    return result


def entry() -> None:
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
