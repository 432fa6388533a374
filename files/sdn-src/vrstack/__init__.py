"""vrstack: the SDN services that the vrstack.cloud collection installs on its nodes."""

__version__ = "0.1.0"
