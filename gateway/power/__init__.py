"""Power supervision (issue 23): the gateway's own UPS read through NUT, power events to the outbox and
the GB/T 26875.3 type 21 bits, and a clean power-off on low battery. See docs/power.md."""
