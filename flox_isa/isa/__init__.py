"""The pure decision core: variant catalog, CPU features, selection, planning.

No I/O beyond parsing text handed in, no Kubernetes client: everything here is a
function of plain data, so it is tested without a cluster.
"""
