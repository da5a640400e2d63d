"""Operational pieces: logging, sd_notify, health check, deployment files."""
