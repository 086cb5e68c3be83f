pytest_plugins = ["kube402.devenv.pytest_plugin"]
