"""The control node: XMPP for agents, per-instance route tables, BGP (IPv4 L3VPN) to peers."""
