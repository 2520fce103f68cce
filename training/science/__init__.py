"""Experiments that decide the seeds' claims on CPU (issue 16): embeddings computed once through
the service's pipeline, adapters and partial fine-tunes trained with every scheme, paired by seed,
and the statistics that compare them. See README, "The seeds' claims, measured"."""
