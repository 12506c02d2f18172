"""Data modules and the in-memory tensor batching they share."""
