"""LoRaWAN through an SX1302 packet forwarder (GWMP over UDP) and an embedded network server; registry spec in
drivers.lorawan.spec."""
