"""Reading and changing a recorded batch: its state and the list of batches, waiting, collecting its results
(streamed), and control (retry, cancel, resume, budget, delete)."""
