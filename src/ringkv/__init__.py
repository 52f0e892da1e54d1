"""ringkv: a distributed key-value store and cache (Dynamo / Riak / Cassandra family)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
