"""The results sink: result lines leave Redis as parts in a local folder or an object store."""
