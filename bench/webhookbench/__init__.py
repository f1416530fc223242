"""The webhook benchmark's parts (`bench/webhook.py` is its entry point).

- streams: the inputs (a fleet of N nodes, a realistic pod, the three request streams);
- servers: the servers under load (bare ASGI, ours, quiet, kopf, before), one process each;
- client: the load generator (asyncio, keep-alive TLS connections);
- throughput: every server loaded in turn with every stream, best of the rounds;
- report: the table of that, with the ratios to the bare app;
- decisions: decide() at 10 vs 5,000 nodes, in process;
- apiserver: pod creates through the real kube-apiserver, interleaved.
"""
