"""Experiment configs: base.py declares every key; one file per experiment changes what differs."""
