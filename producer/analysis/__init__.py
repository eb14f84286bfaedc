"""Result lines in, tables, JSON and HTML out: comparing two runs, and a batch's report. Pure of Redis: the batch
wing streams the lines in."""
