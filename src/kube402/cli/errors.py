"""Errors a user meets, as one sentence each: the CLI never ends in a traceback.

Commands raise :class:`CliError` (or :class:`UsageError` for a bad flag) with the sentence to print;
:func:`explain` turns the exceptions that escape from the libraries underneath (kubeconfig loading,
API-server failures, unreadable files) into the same kind of sentence. ``kube402`` prints it on stderr
prefixed by the command name and exits 1 (failure) or 2 (usage).
"""

from __future__ import annotations

import os

import yaml
from lightkube.core.exceptions import ConfigError as KubeConfigError

from kube402.kube import errors as kube_errors

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CliError", "UsageError", "explain"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure the user can act on; ``str(err)`` is the sentence printed."""

    code = EXIT_FAILURE


class UsageError(CliError):
    """A flag or argument breaks a rule; nothing was sent anywhere."""

    code = EXIT_USAGE


def explain(err: BaseException) -> tuple[str, int] | None:
    """(sentence, exit code) for an exception a user can meet, or None for a genuine bug."""
    if isinstance(err, CliError):
        return str(err), err.code
    if isinstance(err, KubeConfigError):
        text = str(err)
        if "not found" in text and "Configuration file" in text:
            path = text.removeprefix("Configuration file ").removesuffix(" not found")
            return (
                f"kubeconfig {path} not found: pass --kubeconfig FILE or set KUBECONFIG "
                "(for the local stack run `kube402 dev up` first)",
                EXIT_FAILURE,
            )
        return f"kubeconfig problem: {text}", EXIT_FAILURE
    if isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"not valid YAML{where}: {getattr(err, 'problem', None) or err}", EXIT_FAILURE
    if isinstance(err, kube_errors.ApiError):
        return api_sentence(err), EXIT_FAILURE
    if isinstance(err, FileNotFoundError):
        return f"{err.filename or err}: no such file", EXIT_FAILURE
    if isinstance(err, PermissionError):
        return f"{err.filename or err}: permission denied", EXIT_FAILURE
    if isinstance(err, OSError):
        return f"{err.strerror or err}{f': {err.filename}' if err.filename else ''}", EXIT_FAILURE
    return None


def api_sentence(err: kube_errors.ApiError, *, what: str = "") -> str:
    """One sentence for an API-server failure; ``what`` names the operation (``list serviceoffers``)."""
    doing = f" to {what}" if what else ""
    if isinstance(err, kube_errors.Unavailable) and err.code == 0:
        return f"cannot reach the Kubernetes API server{doing}: {err.message}"
    if err.code == 401:
        return "the Kubernetes API server rejected the credentials of this kubeconfig (401 Unauthorized)"
    if err.code == 403:
        return f"permission denied{doing} (RBAC): {err.message}"
    if err.code == 404:
        return f"not found{doing}: {err.message or err.reason}"
    if err.code == 422:
        return f"the API server rejected the object{doing}: {err.message}"
    return f"the Kubernetes API server answered {err.code} {err.reason}{doing}: {err.message}"


def debug() -> bool:
    return os.environ.get("KUBE402_DEBUG", "") not in ("", "0")
