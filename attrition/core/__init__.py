"""The foundation: names, errors, configuration, logging, atomic files, records, processes (stdlib only)."""
