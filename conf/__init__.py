"""prograd_pl's Hydra configs, installed as the package ``prograd_pl.conf`` (found through ``pkg://``)."""
