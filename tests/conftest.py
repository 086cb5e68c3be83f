pytest_plugins = ["kube402.devenv.pytest_plugin"]


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")
