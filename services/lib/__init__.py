"""Libraries shared by data-plane services (plain code, no processes, no sockets at import).

``ids`` (``b3:`` content ids), ``objstore`` (the on-disk object store: layout, temp writer,
verified reader) and ``protocol`` (the svc-storage / svc-index command protocol). A service may
import these; they never import a service.
"""
