"""Local checks of an EIP-3009 authorization before any facilitator call (SPEC 7.7 step 9).

Why this module exists: most junk and most stale or forged payments can be refused without a network
round trip. The checks mirror the reference facilitator (``validAfter <= now``, ``validBefore >= now + 6``)
plus kube402's loose ``maxValiditySeconds`` cap, and, for 65-byte EOA signatures, recover the signer of
the EIP-712 ``TransferWithAuthorization`` digest with libsecp256k1 (coincurve) and require it to be
``from``. Domain separators are precomputed per (chain, token, name, version); the digest is built here
directly rather than through a typed-data library, which keeps a check in the tens of microseconds.

Boundary: PURE. ``now`` is injected; no clock, no network, no chain. Signatures of any other length
(EIP-1271 smart wallets, ERC-6492 wrappers) are left to the facilitator, which is authoritative anyway.
"""

from __future__ import annotations

import functools
from typing import Final

import coincurve
from eth_hash.auto import keccak

from kube402.x402 import codes, headers, requirements

__all__ = [
    "DEFAULT_MAX_VALIDITY_SECONDS",
    "DOMAIN_TYPEHASH",
    "MIN_VALID_BEFORE_MARGIN_SECONDS",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "check",
    "domain_separator",
    "recover_signer",
    "transfer_digest",
]

DEFAULT_MAX_VALIDITY_SECONDS: Final = 30 * 24 * 3600
"""SPEC 7.3 ``maxValiditySeconds``: the longest accepted ``validBefore - now``."""
MIN_VALID_BEFORE_MARGIN_SECONDS: Final = 6
"""The reference facilitator rejects ``validBefore < now + 6``; refusing earlier saves a round trip."""

DOMAIN_TYPEHASH: Final = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: Final = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)

_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = _SECP256K1_N // 2
_EOA_SIGNATURE_BYTES: Final = 65
_NONCE_BYTES: Final = 32
_ZERO12: Final = bytes(12)


def _address_word(address: str) -> bytes:
    return _ZERO12 + bytes.fromhex(address[2:])


@functools.lru_cache(maxsize=256)
def domain_separator(chain_id: int, verifying_contract: str, name: str, version: str) -> bytes:
    """``hashStruct(EIP712Domain)`` for a token; memoized, since a verifier sees only a handful of domains."""
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(name.encode("utf-8"))
        + keccak(version.encode("utf-8"))
        + chain_id.to_bytes(32, "big")
        + _address_word(verifying_contract)
    )


def transfer_digest(authorization: headers.Authorization, *, separator: bytes) -> bytes:
    """The EIP-712 digest a payer signs: ``keccak(0x1901 ‖ domainSeparator ‖ hashStruct(authorization))``."""
    struct_hash = keccak(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + _address_word(authorization.from_address)
        + _address_word(authorization.to)
        + authorization.value.to_bytes(32, "big")
        + authorization.valid_after.to_bytes(32, "big")
        + authorization.valid_before.to_bytes(32, "big")
        + authorization.nonce
    )
    return keccak(b"\x19\x01" + separator + struct_hash)


def recover_signer(digest: bytes, signature: bytes) -> str | None:
    """The lower-case ``0x`` address that produced a 65-byte ``r‖s‖v`` signature, or None.

    ``v`` may be 27/28 or 0/1; ``r`` must be in ``[1, n)`` and ``s`` in ``[1, n/2]`` (low-s: the token
    rejects malleable signatures, so a high-s one could never settle).
    """
    if len(signature) != _EOA_SIGNATURE_BYTES or len(digest) != 32:
        return None
    v = signature[64]
    recovery_id = v - 27 if v >= 27 else v
    if recovery_id not in (0, 1):
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < _SECP256K1_N and 0 < s <= _HALF_N):
        return None
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes((recovery_id,)), digest, hasher=None
        )
    except (ValueError, TypeError):
        return None
    return "0x" + keccak(public.format(compressed=False)[1:])[12:].hex()


def check(
    decoded: headers.DecodedPayment,
    requirement: requirements.Requirement,
    *,
    now: int,
    max_validity_seconds: int = DEFAULT_MAX_VALIDITY_SECONDS,
) -> codes.Code | None:
    """The first local reason to refuse ``decoded`` for ``requirement`` at unix time ``now``, or None."""
    auth = decoded.authorization
    if auth.valid_after > now:
        return codes.Code.VALID_AFTER
    if auth.valid_before < now + MIN_VALID_BEFORE_MARGIN_SECONDS:
        return codes.Code.VALID_BEFORE
    if auth.valid_before > now + max_validity_seconds:
        return codes.Code.AUTHORIZATION_WINDOW_TOO_LONG
    if len(auth.nonce) != _NONCE_BYTES:
        return codes.Code.INVALID_PAYMENT_HEADER
    if len(decoded.signature) == _EOA_SIGNATURE_BYTES:
        separator = domain_separator(
            requirement.chain.chain_id, requirement.asset, requirement.eip712_name, requirement.eip712_version
        )
        signer = recover_signer(transfer_digest(auth, separator=separator), decoded.signature)
        if signer is None or signer != auth.from_address.lower():
            return codes.Code.INVALID_SIGNATURE
    return None
