"""What the JSON API keeps in the store: API keys (hashed), idempotency records, rate counts.

The channels processes share these through the store, as the dispatchers share theirs: a key
revoked, a request answered or a request counted in one process is seen by every other.
"""
