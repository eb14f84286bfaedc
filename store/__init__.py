"""The one owner of a batch's data in Redis: every key, hash field and Lua script, the codecs, arq's layout.

``producer`` and ``worker`` both use it and never spell a key or a field themselves; it builds on ``schemas`` (the
pure contract) and nothing else of ours. Modules, from the bottom up: ``keys`` (names and ids), ``fields`` and
``usage`` (what the batch record holds), ``scripts`` (how Lua is written and called), ``queue`` (arq's layout),
``codec`` (stored results), ``batches``, ``lines``, ``accounts``, ``results``, ``feed`` (a batch's data and its
scripts), ``cache`` and ``limits`` (shared across batches).
"""
