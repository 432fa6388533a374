"""OpenStack integration: the Neutron ML2 mechanism driver and the os-vif plugin."""
