"""``kube402 facilitator``: serve x402 ``/verify``, ``/settle`` and ``/supported`` for EVM ``exact``/EIP-3009.

The relayer key (it pays the gas) comes from ``--key-file``, ``$KUBE402_FACILITATOR_KEY_FILE`` or
``$KUBE402_FACILITATOR_KEY`` and is never printed. ``--rpc-url`` takes ``network=url`` (repeatable, one per
chain) or a bare URL for ``base-sepolia``; ``$KUBE402_FACILITATOR_RPC_URL`` (space-separated) is used when
the flag is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import os

__all__ = ["add_parser", "run"]

RPC_ENV = "KUBE402_FACILITATOR_RPC_URL"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kube402.chain.facilitator import config

    d = config.Settings(networks=(config.NetworkConfig("eip155:84532", 84532, "base-sepolia", "http://-"),))
    p = sub.add_parser("facilitator", help="run an x402 facilitator (EVM exact, EIP-3009) with a relayer key")
    p.add_argument(
        "--listen",
        default=d.listen,
        help="host:port to serve on (default %(default)s; :4040 = all interfaces)",
    )
    p.add_argument(
        "--rpc-url",
        action="append",
        default=None,
        metavar="[NETWORK=]URL",
        help="JSON-RPC URL per network, e.g. base-sepolia=http://127.0.0.1:8545 or "
        f"eip155:8453=https://…; a bare URL is for {config.DEFAULT_NETWORK}; repeat for more "
        f"chains (env ${RPC_ENV})",
    )
    p.add_argument(
        "--key-file",
        default=None,
        help=f"file holding the relayer's hex private key (env ${config.KEY_FILE_ENV}, "
        f"or the key itself in ${config.KEY_ENV})",
    )
    p.add_argument(
        "--confirmation-timeout",
        type=float,
        default=d.confirmation_timeout,
        help="seconds a settle waits for its receipt before answering settlement_pending "
        "(default %(default)s)",
    )
    p.add_argument(
        "--rpc-timeout",
        type=float,
        default=d.rpc_timeout,
        help="per JSON-RPC request timeout in seconds (default %(default)s)",
    )
    p.add_argument(
        "--gas-limit",
        type=int,
        default=d.gas_limit,
        help="gas limit of each settlement transaction (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="threads running verifications and settlements concurrently (default %(default)s)",
    )
    p.add_argument(
        "--auth-token-file",
        default=None,
        help=f"file holding the bearer token verifiers must send (env ${config.TOKEN_FILE_ENV}, or the "
        f"token itself in ${config.TOKEN_ENV}); without one the API is open (local use only)",
    )
    p.add_argument(
        "--max-gas-price-gwei",
        type=int,
        default=d.max_gas_price // 10**9 if d.max_gas_price else 0,
        help="broadcast nothing while the gas price is above this (default %(default)s; 0 = no cap)",
    )
    p.add_argument(
        "--replace-after",
        type=float,
        default=d.replace_after,
        help="seconds a settlement may stay unmined before a retry re-sends it with the same nonce and a "
        "higher fee (default %(default)s)",
    )
    p.add_argument(
        "--allow-smart-wallets",
        action="store_true",
        help="accept EIP-1271 / ERC-6492 payers (they can pass simulation and still revert on chain)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kube402.chain.facilitator import config, main

    specs = args.rpc_url or os.environ.get(RPC_ENV, "").split()
    try:
        if not specs:
            raise config.ConfigError(f"no RPC URL: pass --rpc-url [network=]url or set ${RPC_ENV}")
        settings = config.Settings(
            networks=config.networks_from(specs),
            listen=args.listen,
            confirmation_timeout=args.confirmation_timeout,
            rpc_timeout=args.rpc_timeout,
            gas_limit=args.gas_limit,
            workers=args.workers,
            auth_token=config.load_token(token_file=args.auth_token_file),
            max_gas_price=args.max_gas_price_gwei * 10**9 if args.max_gas_price_gwei > 0 else None,
            allow_smart_wallets=args.allow_smart_wallets,
            replace_after=args.replace_after,
        )
        config.listen_address(settings.listen)
        account = config.load_key(key_file=args.key_file)
    except config.ConfigError as err:
        print(f"kube402 facilitator: {err}")
        return 2
    return asyncio.run(main.run(settings, account=account))
