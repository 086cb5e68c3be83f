"""Bad invocations of the CLI: each ends with the right exit code and one sentence naming the flag and rule
(or the cluster problem), never a traceback.

Flag mistakes are run against a kubeconfig whose server does not exist: a usage error (exit 2) instead of
"cannot reach" proves the check ran before anything was sent. The cluster problems are real: a closed port,
a second control plane without the CRDs, a service account without any RBAC grant, an offer that is not there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlane, ControlPlaneInfo
from kube402.kube import resources
from kube402.kube.client import Kube

from .cli_helpers import cli, cli_env

pytestmark = pytest.mark.e2e
W = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HTTP = ["sell", "http", "demo", "-n", "llm", "--upstream", "ollama", "--wallet", W, "--price", "0.001"]


def _with_server(kubeconfig: Path, server: str, target: Path, *, token: str | None = None) -> Path:
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = server
    if token is not None:
        doc["users"] = [{"name": "nobody", "user": {"token": token}}]
        doc["contexts"][0]["context"]["user"] = "nobody"
    target.write_text(yaml.safe_dump(doc))
    return target


@pytest.fixture(scope="module")
def nowhere(control_plane: ControlPlaneInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid kubeconfig whose API server address has nothing listening."""
    port = process.free_port()
    return _with_server(
        control_plane.kubeconfig,
        f"https://127.0.0.1:{port}",
        tmp_path_factory.mktemp("nowhere") / "kubeconfig",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ControlPlaneInfo]:
    """A second real control plane on which no CRD was ever installed."""
    cp = ControlPlane(tmp_path_factory.mktemp("bare"), owns_directory=False, install_crds=False)
    info = await cp.start()
    try:
        yield info
    finally:
        cp.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def nobody(
    kube: Kube, control_plane: ControlPlaneInfo, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig for a service account that exists and authenticates but has no RBAC grant at all."""
    ns = "cli-rbac"
    if await kube.get(resources.NAMESPACE, ns) is None:
        await kube.create(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
    sa = resources.Resource("", "v1", "ServiceAccount", "serviceaccounts")
    await kube.apply(
        sa, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": ns}}
    )
    answer: dict[str, Any] = await kube.raw(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/nobody/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    return _with_server(
        control_plane.kubeconfig,
        server,
        tmp_path_factory.mktemp("nobody") / "kubeconfig",
        token=answer["status"]["token"],
    )


USAGE = [
    pytest.param(
        [*HTTP[:-2], "--price", "0.0000001"],
        "--price '0.0000001': perRequest 0.0000001 has more than 6 decimal places",
        id="price-7-decimals",
    ),
    pytest.param(
        [*HTTP[:-2], "--price", "-0.001"],
        "--price '-0.001': perRequest '-0.001' is not a non-negative decimal",
        id="negative-price",
    ),
    pytest.param([*HTTP[:-2], "--price", "1e-3"], "--price '1e-3'", id="exponent-price"),
    pytest.param(
        [*HTTP[:-4], "--wallet", "0x1234", "--price", "0.001"],
        "--wallet '0x1234': a wallet must be 0x followed by 40 hexadecimal digits",
        id="bad-wallet",
    ),
    pytest.param([*HTTP, "--chain", "solana"], "--chain 'solana': unknown chain", id="unknown-chain"),
    pytest.param([*HTTP, "--port", "0"], "--port: upstream.port 0 is outside 1..65535", id="port-0"),
    pytest.param(
        [*HTTP, "--port", "70000"], "--port: upstream.port 70000 is outside 1..65535", id="port-too-big"
    ),
    pytest.param(
        [*HTTP, "--path", "services/demo"],
        "--path: path 'services/demo' must match ^/[a-zA-Z0-9/_.-]*$",
        id="path-without-slash",
    ),
    pytest.param(
        [*HTTP, "--path", "/.well-known/agent"],
        "--path: path '/.well-known/agent' must not be under /.well-known/",
        id="path-well-known",
    ),
    pytest.param(
        [*HTTP, "--health-path", "/a/../health"],
        "--health-path: upstream.healthPath '/a/../health' must start with / and not contain ..",
        id="dotdot-health-path",
    ),
    pytest.param(
        ["sell", "http", "Demo", *HTTP[3:]],
        "NAME 'Demo': a ServiceOffer name must be a DNS-1123 label",
        id="name-with-capitals",
    ),
    pytest.param(
        [*HTTP[:3], "-n", "Bad_NS", *HTTP[5:]],
        "--namespace 'Bad_NS': a namespace must be a DNS-1123 label",
        id="bad-namespace",
    ),
    pytest.param(
        [*HTTP, "--max-timeout", "5"],
        "--max-timeout: payment.maxTimeoutSeconds 5 is outside 30..86400",
        id="max-timeout",
    ),
    pytest.param(
        ["sell", "http", "demo", "-n", "llm", "--upstream", "ollama", "--price", "0.001"],
        "--wallet is required (or set X402_WALLET)",
        id="wallet-missing",
    ),
    pytest.param(
        ["sell", "http", "demo", "-n", "llm", "--wallet", W, "--price", "0.001"],
        "--upstream is required",
        id="upstream-missing",
    ),
    pytest.param(
        ["sell", "http", "demo", "-n", "llm", "--upstream", "ollama", "--wallet", W],
        "a price is required",
        id="price-missing",
    ),
    pytest.param([*HTTP, "--obol-token", "x"], "--obol-token is not supported", id="obol-token"),
    pytest.param(
        ["sell", "delete", "demo", "-n", "llm"],
        "refusing to delete ServiceOffer llm/demo without confirmation: pass --force",
        id="delete-unconfirmed",
    ),
    pytest.param(
        ["sell", "pricing", "--wallet", W, "--facilitator-url", "http://facilitator.example.com"],
        "--facilitator-url: facilitatorURL 'http://facilitator.example.com': plain http is only allowed "
        "for local hosts",
        id="facilitator-plain-http",
    ),
    pytest.param(["sell", "wait", "-n", "llm"], "pass exactly one of NAME or --all", id="wait-without-name"),
    pytest.param(
        ["sell", "local", "x", "--upstream", "ftp://h", "--price", "0.001", "--wallet", W],
        "--upstream 'ftp://h': must be an http:// or https:// URL",
        id="local-bad-upstream",
    ),
    pytest.param(
        [
            "sell",
            "local",
            "x",
            "--upstream",
            "http://127.0.0.1:1",
            "--price",
            "0.001",
            "--wallet",
            W,
            "--listen",
            "127.0.0.1:0",
        ],
        "--listen '127.0.0.1:0': expected HOST:PORT with a port in 1..65535",
        id="local-listen-port-0",
    ),
    pytest.param(
        ["sell", "http", "demo", "--type", "video", *HTTP[3:]],
        "argument --type: invalid choice: 'video'",
        id="bad-type",
    ),
]


@pytest.mark.parametrize(("args", "message"), USAGE)
async def test_usage_errors_name_the_flag_and_send_nothing(
    args: list[str], message: str, nowhere: Path, tmp_path: Path
) -> None:
    run = await cli(*args, env=cli_env(KUBECONFIG=str(nowhere)), cwd=tmp_path)
    assert run.code == 2, str(run)
    assert message in run.err, str(run)
    assert "Traceback" not in run.out + run.err
    assert "cannot reach" not in run.err, "nothing may be sent before the flags are checked"
    assert len(run.err.strip().splitlines()) == 1, "one sentence"


async def test_no_cluster_reachable_names_server_and_kubeconfig(nowhere: Path, tmp_path: Path) -> None:
    server = yaml.safe_load(await asyncio.to_thread(nowhere.read_text))["clusters"][0]["cluster"]["server"]
    for args in (HTTP, ["sell", "list"], ["sell", "status"], ["sell", "info"]):
        run = await cli(*args, "--kubeconfig", str(nowhere), env=cli_env(), cwd=tmp_path)
        assert run.code == 1, str(run)
        assert f"cannot reach the Kubernetes API server at {server} (kubeconfig {nowhere}" in run.err, str(
            run
        )
        assert "Traceback" not in run.out + run.err


async def test_missing_kubeconfig_for_every_command(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.kubeconfig")
    for args in (["sell", "list", "--kubeconfig", missing], ["controller", "--kubeconfig", missing]):
        run = await cli(*args, env=cli_env(), cwd=tmp_path)
        assert run.code == 1, str(run)
        assert f"kubeconfig {missing}" in run.err and ("not found" in run.err or "does not exist" in run.err)
        assert "Traceback" not in run.out + run.err


async def test_unknown_context(control_plane: ControlPlaneInfo, tmp_path: Path) -> None:
    run = await cli(
        "sell",
        "list",
        "--context",
        "nope",
        env=cli_env(KUBECONFIG=str(control_plane.kubeconfig)),
        cwd=tmp_path,
    )
    assert run.code == 1 and "--context nope: no such context in kubeconfig" in run.err, str(run)


async def test_crds_not_installed_says_how_to_install(bare_cluster: ControlPlaneInfo, tmp_path: Path) -> None:
    env = cli_env(KUBECONFIG=str(bare_cluster.kubeconfig))
    for args in (HTTP, ["sell", "list"], ["sell", "status", "demo", "-n", "llm"]):
        run = await cli(*args, env=env, cwd=tmp_path)
        assert run.code == 1, str(run)
        assert "the ServiceOffer CRD (serviceoffers.obol.org) is not installed" in run.err, str(run)
        assert "kubectl apply -f deploy/crds/" in run.err
        assert "Traceback" not in run.out + run.err


async def test_rbac_denied_names_verb_and_resource(nobody: Path, tmp_path: Path) -> None:
    env = cli_env(KUBECONFIG=str(nobody))
    listed = await cli("sell", "list", env=env, cwd=tmp_path)
    assert listed.code == 1, str(listed)
    assert "permission denied (RBAC): cannot list serviceoffers.obol.org" in listed.err, str(listed)
    assert "system:serviceaccount:cli-rbac:nobody" in listed.err
    created = await cli(*HTTP, env=env, cwd=tmp_path)
    assert created.code == 1, str(created)
    assert "permission denied (RBAC): cannot get serviceoffers.obol.org in namespace llm" in created.err, str(
        created
    )
    priced = await cli("sell", "pricing", "--wallet", W, env=env, cwd=tmp_path)
    assert (
        priced.code == 1 and "permission denied (RBAC): cannot get configmaps in namespace x402" in priced.err
    ), str(priced)
    for run in (listed, created, priced):
        assert "Traceback" not in run.out + run.err


async def test_unknown_offer(control_plane: ControlPlaneInfo, tmp_path: Path) -> None:
    env = cli_env(KUBECONFIG=str(control_plane.kubeconfig))
    for args in (
        ["sell", "status", "no-such-offer", "-n", "default"],
        ["sell", "test", "no-such-offer"],
        ["sell", "stop", "no-such-offer"],
        ["sell", "resume", "no-such-offer"],
        ["sell", "delete", "no-such-offer", "--force"],
        ["sell", "wait", "no-such-offer"],
    ):
        run = await cli(*args, env=env, cwd=tmp_path)
        assert run.code == 1, str(run)
        assert "ServiceOffer default/no-such-offer not found" in run.err, str(run)
        assert "Traceback" not in run.out + run.err


async def test_register_without_a_key_or_uri_says_which_flag(tmp_path: Path) -> None:
    run = await cli("sell", "register", "--rpc-url", "http://127.0.0.1:9", env=cli_env(), cwd=tmp_path)
    assert run.code == 2, str(run)
    assert "--agent-uri or --endpoint is required" in run.err
    assert "Traceback" not in run.out + run.err
    run = await cli("sell", "register", "--endpoint", "http://seller.example", env=cli_env(), cwd=tmp_path)
    assert run.code == 2, str(run)
    assert "--rpc-url is required" in run.err
    assert "Traceback" not in run.out + run.err


async def test_bad_from_json(nowhere: Path, tmp_path: Path) -> None:
    bad = tmp_path / "offer.json"
    bad.write_text("[1, 2")
    run = await cli(
        "sell", "http", "--from-json", str(bad), env=cli_env(KUBECONFIG=str(nowhere)), cwd=tmp_path
    )
    assert run.code == 2 and "--from-json" in run.err and "Traceback" not in run.err, str(run)
    spec = {
        "upstream": {"service": "ollama", "port": 11434},
        "payment": {"network": "base-sepolia", "payTo": W, "price": {"perRequest": "0.0015"}},
    }
    good = tmp_path / "spec.json"
    good.write_text(json.dumps(spec))
    dry = await cli(
        "sell",
        "http",
        "x",
        "-n",
        "llm",
        "--from-json",
        "-",
        "--dry-run",
        env=cli_env(KUBECONFIG=str(nowhere)),
        cwd=tmp_path,
        stdin=good.read_bytes(),
    )
    assert dry.code == 0, str(dry)
    manifest = yaml.safe_load(dry.out)
    assert manifest["kind"] == "ServiceOffer" and manifest["spec"]["payment"]["price"] == {
        "perRequest": "0.0015"
    }
    assert manifest["spec"]["upstream"]["port"] == 11434  # flags left the file's port alone


async def test_missing_namespace(control_plane: ControlPlaneInfo, tmp_path: Path) -> None:
    env = cli_env(KUBECONFIG=str(control_plane.kubeconfig))
    run = await cli("sell", "http", "demo", "-n", "no-such-ns", *HTTP[5:], env=env, cwd=tmp_path)
    assert run.code == 1, str(run)
    assert "namespace no-such-ns does not exist (create it: kubectl create namespace no-such-ns)" in run.err
    assert "Traceback" not in run.out + run.err
