"""HTTP routes: thin handlers that call the domain and return response models."""
