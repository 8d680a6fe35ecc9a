"""The prompt cache: keys (:mod:`.keys`), the SQLite store (:mod:`.store`, its SQL in
:mod:`.sqlite`) and the cache stage of the request path (:mod:`.stage`: recent answers,
bulk lookups, single flight, writes handed to the CacheWriter actor)."""
