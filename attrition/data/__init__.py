"""Client CSV files: reading and checking them, the CSV text, Arrow, ingestion."""
