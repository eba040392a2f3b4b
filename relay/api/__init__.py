"""HTTP and WebSocket endpoints; each module owns one audience (CRMs, agents, operators)."""
