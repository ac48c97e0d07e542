"""Public notices (公示): deliberation results, policies, fund disclosures, service lists, staffing (issue 28)."""
