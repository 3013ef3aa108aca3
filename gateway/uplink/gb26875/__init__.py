"""GB/T 26875.3-2011 uplink to a district fire remote-monitoring centre (issue 11): frames, objects,
the mapping from our records, the TCP client and a simulated centre. See docs/gb26875.md."""
