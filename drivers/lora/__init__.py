"""LoRa through an Ebyte E22 UART module; registry spec in drivers.lora.spec."""
