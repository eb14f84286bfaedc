"""Reading the user's input: JSONL lines, OpenAI Batch API lines, folders of documents, attachments (no Redis)."""
