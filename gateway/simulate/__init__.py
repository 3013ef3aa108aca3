"""The simulated courtyard: every driver's simulator together, a broker-side fault proxy, scenarios."""
