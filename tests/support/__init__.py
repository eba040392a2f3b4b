"""Test support: real servers on free ports, real agents, scripted connectors."""
