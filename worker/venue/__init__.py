"""The Batch API venue: lines answered through provider batches (``/v1/batches``) on the same road as every line.

- ``lines``: pure: a line's request line for the provider's input file (the body the synchronous adapter builds),
  reading output and error lines, and the replay that hands a provider batch's answer to the ordinary extraction
  (validation, repairs, cache, pricing at the batch price, recording);
- ``route``: the job's side: stage the line, park until its answer comes, or go on synchronously
  (``schemas.venues.choose_venue``);
- ``provider``: the provider's Files and Batches endpoints, as the keeper uses them;
- ``keeper``: the background task on every worker that seals staged lines into parts, uploads and creates them
  (intent first), polls them, reads their files as streams and hands each line its answer or sends it on.
"""
