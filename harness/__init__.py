"""The CLI and everything around measurement: stages, benchmark, report. Uses cube/, never the reverse."""
