"""The one owner of a batch's data in Redis: every key, hash field and Lua script, the codecs, arq's layout.

``producer`` and ``worker`` both use it and never spell a key or a field themselves; it builds on ``schemas`` (the
pure contract) and nothing else of ours. Modules, from the bottom up: ``keys`` (names and ids), ``fields`` and
``usage`` (what the batch record holds), ``scripts`` (how Lua is written and called), ``redis_typing`` and
``connect`` (the client and what its errors mean), ``queue`` (arq's layout) and ``workers`` (live workers and the
leases on their jobs), ``codec`` (stored results), ``budget``, ``batches``, ``lines``, ``accounts``, ``results``,
``feed``, ``pause`` and ``blobs`` (a batch's data and its scripts), ``uploads`` (files at the provider, recorded before
they are made, outliving the batch's keys), ``cache`` and ``limits`` (shared across batches).
"""
