"""liverburden: liver tumour burden and treatment response from abdominal CT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("liverburden")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Version of the layout of every JSON file the project writes.
SCHEMA_VERSION = "1.0"

__all__ = ["SCHEMA_VERSION", "__version__"]
