"""The plugin host: pluggy hook specs, registries of lazy contributions, discovery."""
