"""Talking to the vrouter datapath: the message codec, a client, CLI tools."""
