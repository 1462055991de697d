"""One error type per domain, each with a message a user can act on without a traceback."""


class StreamqcError(Exception):
    """Base of every error streamqc reports to its user as a one-line message."""


class ConfigError(StreamqcError):
    """A configuration file is unusable: the message names the file, line, key path and value."""


class InputError(StreamqcError):
    """A source cannot be opened or holds no usable media: the message names the source."""
