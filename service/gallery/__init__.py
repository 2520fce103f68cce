"""The gallery: people, reference crops, embeddings, API keys and audit rows in a SQL database."""
