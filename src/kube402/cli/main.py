"""``kube402``: one console script for every process and for the seller/buyer CLI."""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence

from kube402 import __version__
from kube402.cli import logs

__all__ = ["entry", "main"]


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the flag and the rule (and where to read more), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        sell_cmd,
        verifier_cmd,
    )

    for module in (
        controller_cmd,
        verifier_cmd,
        facilitator_cmd,
        dev_cmd,
        sell_cmd,
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
    _running[0] = _command(args)
    logs.setup(args.log_level, json_logs=getattr(args, "json_logs", True))
    result: int = args.func(args)
    return result


_running = ["kube402"]


def _command(args: argparse.Namespace) -> str:
    words = ["kube402", getattr(args, "command", None) or ""]
    for sub in ("sell_command", "dev_command", "buy_command"):
        if getattr(args, sub, None):
            words.append(getattr(args, sub))
    return " ".join(w for w in words if w)


def entry() -> None:
    """Run a command; a failure a user can meet ends in one sentence on stderr, never a traceback."""
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    except Exception as err:  # the one place that turns every failure into a sentence
        from kube402.cli import errors

        explained = errors.explain(err)
        if explained is None:
            if errors.debug():
                raise
            explained = (
                f"internal error ({type(err).__name__}: {err}); rerun with KUBE402_DEBUG=1 for the traceback",
                errors.EXIT_FAILURE,
            )
        sentence, code = explained
        print(f"{_running[0]}: {sentence}", file=sys.stderr, flush=True)
    raise SystemExit(code)
