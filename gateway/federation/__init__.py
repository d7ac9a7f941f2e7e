"""The national check's side of the network (PROTOCOL §6, §7).

`client`: the signed aiohttp client a hub uses to reach the pseudonymiser and the
index. `pseudonymiser` and `index`: the services behind those nodes' routes.
`admin`: offline set-up of the national nodes (init-node, the OPRF key) and of a
hub's `[national]` section. Must not import `gateway.services` (the hub's use cases
reach these nodes through ports that `client` implements).
"""
