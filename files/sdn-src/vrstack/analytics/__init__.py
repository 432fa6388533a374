"""The analytics collector: ingest of status, counters, flows and logs; storage; queries; alarms."""
