"""Settings package: ``base`` (development and embedded defaults) and ``production``."""
