"""What is live: versions, stamps, the switch, rollback, repair, the archive."""
