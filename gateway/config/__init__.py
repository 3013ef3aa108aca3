"""Gateway configuration: TOML in, frozen typed objects out, every error reported at once."""

from gateway.config.load import load_config, load_credentials
from gateway.config.schema import Config, Credentials

__all__ = ["Config", "Credentials", "load_config", "load_credentials"]
