"""Scheduled self-check and inspection records (issue 23): the daily check at a local time, `gateway test
fire` / `gateway test power`, and the journal an inspector reads with `gateway tests --since`."""
