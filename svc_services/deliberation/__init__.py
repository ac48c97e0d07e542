"""Resident deliberation (居民议事): topics, co-signs, discussion, meetings, votes, resolutions (issue 28, ADR 0018)."""
