"""The in-memory reference backends, the contract's executable specification
(``store_url = "memory://"``, unit tests, and the reference of ``tests/contract``):
``store.ReferenceStore`` and ``vectors.ReferenceVectorIndex`` (which needs numpy, so
neither is imported here)."""
