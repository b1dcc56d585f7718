"""Sharing records between logio nodes: the Redis client the cluster mode uses."""
