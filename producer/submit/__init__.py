"""Writing a batch into Redis: plan and submit, the line index, the feeder, resubmits, shadow batches, attachments
(stored or uploaded) and the estimate of what a batch will cost."""
