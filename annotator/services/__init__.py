"""Business logic that writes (services): small typed functions named ``<entity>_<action>``."""
