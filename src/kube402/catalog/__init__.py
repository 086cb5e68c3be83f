"""``kube402 catalog``: serve the registration document and the catalog from their ConfigMaps (SPEC 10).

Where no busybox Deployment can run (the local stack, ``make demo``, tests), this process serves exactly the
ConfigMap contents the controller wrote, at the paths the Deployments of SPEC 4.6/4.7 would serve them.
"""
