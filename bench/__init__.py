"""Benchmarks of ERP Relay (see README.md). Not part of the installed packages."""
