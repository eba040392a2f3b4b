"""The built-in demo ERP: a seeded database shaped like Subiekt GT, served by `DemoConnector`.

It gives every layer above the connector something real to run against without an office: the
agent in development, the end-to-end and fault tests, the benchmarks and the CRM examples.
"""

from agent.connectors.demo.connector import DemoConnector, DemoSession
from agent.connectors.demo.seed import create_demo_database

__all__ = ["DemoConnector", "DemoSession", "create_demo_database"]
