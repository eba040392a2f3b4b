"""The typed catalogue of ERP operations shared by relay and agent."""

from protocol.operations.catalogue import CATALOGUE, WRITE_OPERATIONS, Operation

__all__ = ["CATALOGUE", "WRITE_OPERATIONS", "Operation"]
