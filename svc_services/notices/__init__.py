"""What svc_residents' notification engine is told about requests (the `notice.` feed, ADR 0017)."""
