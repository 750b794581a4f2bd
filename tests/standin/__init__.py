"""The cloud API stand-in server (see :mod:`.server`)."""
