"""svc_metrics: event store, KPI engine against the plans' targets, early warnings, dashboard (考核评估)."""
