"""cliproxy: a single-file, standard-library-only proxy between the Amp CLI and model providers."""

__version__ = "0.1.0"
