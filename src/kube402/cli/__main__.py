from kube402.cli.main import entry

entry()
