"""Node status: `vrstack-status`, and the services' reports to the analytics collector."""
