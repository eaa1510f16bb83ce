"""Access tests reuse the report tests' Node clients."""

from reports.conftest import node_clients

__all__ = ["node_clients"]
