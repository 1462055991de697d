"""streamqc daemon side: configuration, decoding, alarm engine, sinks and the command line."""
