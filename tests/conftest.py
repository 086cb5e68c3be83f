import os

from hypothesis import settings

pytest_plugins = ["kube402.devenv.pytest_plugin"]

# CI runs the same examples every time (a red build is then reproducible); local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")
