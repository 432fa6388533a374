"""The vrouter agent: control node sessions, datapath programming, port API, introspect."""
