"""The request the verifier decides on, parsed once from either adapter (ForwardAuth or proxy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kube402.verifier.routes import split_target


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardedRequest:
    """Method, scheme, host and target of the client's request as the edge forwarded it.

    ``path`` has no query or fragment (``/`` when empty); ``query`` is the text after ``?`` without the
    fragment (empty when there is none).
    """

    method: str
    proto: str
    host: str
    path: str
    query: str

    @classmethod
    def parse(cls, header: Callable[[str], str | None], *, method: str, target: str) -> ForwardedRequest:
        """Build it from a request target and the ``X-Forwarded-Proto`` / ``-Host`` / ``Host`` headers."""
        _, _, query = target.split("#", 1)[0].partition("?")
        return cls(
            method=method.upper(),
            proto=header("x-forwarded-proto") or "http",
            host=header("x-forwarded-host") or header("host") or "localhost",
            path=split_target(target),
            query=query,
        )

    @property
    def resource_url(self) -> str:
        """The challenge's resource URL, always valid UTF-8 text.

        The parts come from attacker-reachable headers: lone surrogates or undecodable bytes become U+FFFD
        instead of failing the JSON encoder.
        """
        url = f"{self.proto}://{self.host}{self.path}"
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            url = url.encode("utf-8", "replace").decode("utf-8")
        return url
