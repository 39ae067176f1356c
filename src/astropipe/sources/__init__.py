"""Network sources: one HTTP session with retries, shared by every live ingest."""
